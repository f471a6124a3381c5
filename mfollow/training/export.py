"""Exporting what a run trained: a model bundle or a SegDiT folder, replaced atomically."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from mfollow.training import data


def _swap_in(staging: Path, final: Path) -> Path:
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    staging.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def export_bundle(bundle: Any, folder: Path) -> Path:
    staging = folder.with_name(folder.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    bundle.save_pretrained(staging)
    return _swap_in(staging, folder)


def export_segdit(model: Any, folder: Path) -> Path:
    staging = folder.with_name(folder.name + ".new")
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(str(staging), safe_serialization=True)
    return _swap_in(staging, folder)


@torch.no_grad()
def fit_latent_scale(vae: Any, items: list[data.Item], seed: int, device: str, frames: int = 256) -> float:
    """Set the VAE's ``scaling_factor`` to 1 / std of its latents over ``frames`` training frames
    (as Stable Diffusion's 0.18215 was chosen), so the diffusion sees unit-variance latents.
    Returns the factor set."""
    rng = data.batch_rng(seed, 65535, 0, 99)  # a batch key of its own (purpose 99 is no micro-batch)
    batch = data.frame_batch(items, rng, frames)["frame"]
    x = torch.from_numpy(batch).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # (B, H, W, 3) -> (B, 3, H, W) in [-1, 1]
    was_training = vae.training
    vae.eval()
    z = torch.cat([vae.encode(c.to(device)).latent_dist.mean.cpu() for c in x.split(32)])
    vae.train(was_training)
    scale = round(float(1.0 / z.float().std()), 6)
    vae.register_to_config(scaling_factor=scale)
    return scale
