"""Deterministic GPU kernels for the edit.

On CUDA, some of PyTorch's default kernels accumulate with atomics in an order that changes from
run to run; the guidance gradient's backward pass goes through one of them (memory-efficient
attention). Measured on an H200 (docs/benchmarks.md): two identical 3-step edits of a 64x64 clip
differed by up to 33/255 per pixel with the defaults, and were bit-identical — as was an
interrupted and resumed one — with deterministic algorithms requested. The edit therefore runs
under :func:`deterministic_kernels`, which keeps the same-seed-same-output and bit-identical-resume
promises on a GPU as on the CPU.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def deterministic_kernels(device: torch.device) -> Iterator[None]:
    """On CUDA, ask PyTorch for deterministic kernels (``warn_only``: an op without one warns
    instead of failing); restores the previous setting afterwards. A no-op on other devices."""
    if device.type != "cuda":
        yield
        return
    # cuBLAS reads this when it first starts in the process (PyTorch's advice for determinism);
    # a value the user set is kept.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
