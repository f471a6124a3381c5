"""How much memory a device has free, read without loading the networks: the preflight compares
it with an edit's estimate (:func:`mfollow.edit.preflight.check_memory`)."""

from __future__ import annotations

import os


def available_bytes(device: str) -> int | None:
    """Free memory on ``device``: the system's available memory for ``cpu`` (Linux's MemAvailable,
    else the physical total), the free memory of that CUDA device for ``cuda`` / ``cuda:N``; None where
    it cannot be read (then nothing is refused)."""
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    if device != "cpu":
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def human(n: float) -> str:
    """Bytes as a short figure with a binary unit (``1.5 GiB``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TiB"
