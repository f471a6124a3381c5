"""The devices a command may run on: refused before any work when this machine lacks them."""

from __future__ import annotations

from mfollow.runtime.errors import UsageError


def check_device(device: str) -> None:
    """Refuse a device this machine does not have (usage error, before any work)."""
    if device == "cpu":
        return
    import sys
    from pathlib import Path

    if device == "cuda" and sys.platform.startswith("linux") and not any(Path("/dev").glob("nvidia*")):
        raise UsageError("--device cuda: no CUDA device is available")  # no driver: known without torch
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available")
    if device == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps: Apple's MPS is not available")


def auto_dtype(device: str) -> str:
    """``--dtype auto``: the networks' precision for ``device`` (``cuda``, ``cuda:1``, ``cpu``,
    ``mps``): bfloat16 on a CUDA device that computes in it (Ampere and later), float16 on an older
    one, float32 on the CPU (bfloat16 there timed from 0.59x to 1.13x float32's step on 2 cores,
    docs/benchmarks.md: not yet a safe default) and on MPS (not measured)."""
    if not device.startswith("cuda"):
        return "float32"
    import torch

    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
