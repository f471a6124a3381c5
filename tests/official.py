"""Writing a state dict under the official release's naming and file split, as the authors ship
it: the fixture the import and inspection tests read."""

from __future__ import annotations

from pathlib import Path

import torch

from mfollow.models.checkpoint import StateDict


def write_official(unet: StateDict, poctr: StateDict, directory: Path, *, with_pe: bool = True) -> None:
    """Export under the official naming and file split: motion modules (with their position
    tables) to ``motion_module.pth``, everything else of the U-Net to ``denoising_unet.pth``, the
    PoCtr to ``poctr.pth``."""
    from mfollow.models.motion import sinusoidal_table

    directory.mkdir(parents=True, exist_ok=True)
    motion = {k: v for k, v in unet.items() if ".motion_modules." in k}
    spatial = {k: v for k, v in unet.items() if ".motion_modules." not in k}
    if with_pe:
        blocks = {k.rsplit(".to_q.weight", 1)[0] for k in motion if k.endswith(".to_q.weight")}
        for block in sorted(blocks):
            dim = motion[f"{block}.to_q.weight"].shape[0]
            motion[f"{block}.pos_encoder.pe"] = sinusoidal_table(32, dim)
    torch.save(spatial, directory / "denoising_unet.pth")
    torch.save(motion, directory / "motion_module.pth")
    torch.save(dict(poctr), directory / "poctr.pth")
