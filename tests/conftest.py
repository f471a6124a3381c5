"""Test-wide setup: offline hubs, no network, deterministic torch.

HF_HUB_OFFLINE must be set before anything imports huggingface_hub (it is read at import).
Every socket connection is refused loudly, so a test that touches the network fails.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.pop("MFOLLOW_DEBUG", None)

import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # two workers on two cores: one torch thread each (the CLIs that tests start through
    # tests/clirun.py get the same count; the golden CLI runs pin the two they were recorded with)
    import torch

    torch.set_num_threads(1)


class NetworkAccessError(RuntimeError):
    pass


def _refuse(*args: object, **kwargs: object) -> None:
    raise NetworkAccessError(f"a test tried to open a network connection: {args!r}")


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", _refuse)
    monkeypatch.setattr(socket, "create_connection", _refuse)


# ------------------------------------------------------------------------------ shared worlds
@pytest.fixture(scope="session")
def synth_world(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``synth_world(seed, frames, camera="pan", size=64)``: a folder with ``pair/`` (the synthetic
    pair of that seed, as ``mfollow synth`` writes it) and ``bundle/`` (a random-initialised tiny
    model bundle, seed 0), built once per set of arguments for the whole run. Tests read it; what
    they write goes to their own ``tmp_path``."""
    made: dict[tuple[int, int, str, int], Path] = {}

    def make(seed: int, frames: int, camera: str = "pan", size: int = 64) -> Path:
        key = (seed, frames, camera, size)
        if key not in made:
            from mfollow.models.bundle import ModelBundle
            from mfollow.synth import make_pair
            from mfollow.synth.files import write_pair

            root = tmp_path_factory.mktemp(f"world-{seed}-{frames}-{camera}-{size}")
            write_pair(make_pair(seed, frames=frames, size=size, camera=camera), root / "pair")  # type: ignore[arg-type]
            ModelBundle.random("tiny", seed=0).save_pretrained(root / "bundle")
            made[key] = root
        return made[key]

    return make


@pytest.fixture(scope="module")
def bundle() -> Any:
    """A random-initialised tiny model bundle (seed 0) in eval mode, one per test module."""
    from mfollow.models.bundle import ModelBundle

    return ModelBundle.random("tiny", seed=0).eval()


@pytest.fixture(scope="module")
def pair(synth_world: Callable[..., Path]) -> Path:
    """The synthetic pair of seed 2: 12 frames at 64x64, a panning camera."""
    return synth_world(2, 12) / "pair"
