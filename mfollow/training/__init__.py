"""Training: stage 1 (image pairs), stage 2 (motion modules, hybrid batches), the tiny VAE and
SegDiT (paper §2.2 and Appendix A.1); see :mod:`mfollow.training.loop` and ``docs/training.md``."""

from mfollow.training.loop import STAGES, TrainSettings, train

__all__ = ["STAGES", "TrainSettings", "train"]
