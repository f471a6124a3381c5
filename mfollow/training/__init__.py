"""Training: stage 1 (image pairs), stage 2 (motion modules, hybrid batches), the tiny VAE and
SegDiT (paper §2.2 and Appendix A.1); see :mod:`mfollow.training.loop` and ``docs/training.md``.

``train`` is imported on first use: the settings and their checks load without torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mfollow.training.settings import STAGES, TrainSettings

if TYPE_CHECKING:
    from mfollow.training.loop import train

__all__ = ["STAGES", "TrainSettings", "train"]


def __getattr__(name: str) -> Any:
    if name == "train":
        from mfollow.training.loop import train

        return train
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
