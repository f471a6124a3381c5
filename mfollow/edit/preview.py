"""Previews while sampling (``--preview-every K``): every K steps, the current estimate of the
clean frames, decoded for the middle frame of each window, written into the project's
``preview/latest/`` (PNG, plus ``preview.json``: the step), where ``mfollow report`` shows it.

The estimate comes from two consecutive states of the deterministic DDIM update: with
z_t = sqrt(a_t) x0 + sqrt(1 - a_t) eps and z_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev) eps
(the same x0 and eps: Algorithm 1 keeps x0 consistent with the guided eps),

    x0 = (sqrt(1 - a_t) z_prev - sqrt(1 - a_prev) z_t) / (sqrt(a_prev) sqrt(1 - a_t) - sqrt(a_t) sqrt(1 - a_prev)),

so the sampler needs no change and nothing is computed when K is unset. (Under ``--guidance
official`` the guided v moves x0 alone, and this is an estimate.)
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from mfollow.edit.settings import PreviewSettings

if TYPE_CHECKING:
    from mfollow.models.bundle import ModelBundle

PREVIEW_DIR = "preview"


def clean_estimate(z_t: torch.Tensor, z_prev: torch.Tensor, a_t: float, a_prev: float) -> torch.Tensor:
    """x0 (1, C, F, h, w) from the states before and after one DDIM step (module docstring)."""
    if a_prev >= 1.0:  # the last step lands on x0 itself
        return z_prev
    s_t, s_p = (1 - a_t) ** 0.5, (1 - a_prev) ** 0.5
    return (s_t * z_prev.double() - s_p * z_t.double()).div(a_prev**0.5 * s_t - a_t**0.5 * s_p).to(z_prev.dtype)


def write_preview(
    bundle: ModelBundle, x0: torch.Tensor, frames: list[int], settings: PreviewSettings, step: int, steps: int
) -> Path:
    """Decode ``frames`` of ``x0`` and make them ``preview/latest/`` (replaced whole)."""
    from mfollow.edit.output import decode

    staging = settings.folder / f".staging-{secrets.token_hex(4)}"
    staging.mkdir(parents=True)
    images = decode(bundle, x0[:, :, frames])  # (n, H, W, 3) uint8
    for index, image in zip(frames, images, strict=True):
        Image.fromarray(np.ascontiguousarray(image)).save(staging / f"frame_{index:05d}.png")
    (staging / "preview.json").write_text(json.dumps({"step": step, "steps": steps, "frames": frames}) + "\n")
    latest = settings.folder / "latest"
    old = settings.folder / f".old-{secrets.token_hex(4)}"
    if latest.exists():
        os.replace(latest, old)
    os.replace(staging, latest)
    shutil.rmtree(old, ignore_errors=True)
    return latest
