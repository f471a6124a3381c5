"""What the samplers take and give: their settings, a window's conditioning and the resumable
state of the two branches (shapes (B, C, F, H, W), batch 1)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from mfollow.runtime.errors import MfollowError
from mfollow.sampling import OVERLAP, WINDOW, BlendScheme, GuidanceMode
from mfollow.sampling.guidance import GuidanceWeights


class SamplingError(MfollowError):
    """Sampling produced NaN or infinite values (exit 1: the run is stopped, nothing written)."""


@dataclass(frozen=True)
class SamplerSettings:
    steps: int = 25
    cfg: float = 3.5  # classifier-free guidance on the CLIP context (1 = off)
    guidance: GuidanceMode = "paper"
    guidance_scale: float = 1.0  # overall step size of the consistency guidance (the paper gives none)
    weights: GuidanceWeights = field(default_factory=GuidanceWeights)
    window: int = WINDOW
    overlap: int = OVERLAP
    blend: BlendScheme = "tent"
    seed: int = 0  # the official sampler's SDE noise: drawn from (seed, frame, step)
    camera_start: float = 0.4  # camera mode acts from this fraction of the steps (release: 20 of 50)
    # the reconstruction pass and the unconditional (CFG) pass as one U-Net call of batch 2
    # (``paper``; equal up to float rounding; the memory planner turns it off where it does not fit)
    batch_passes: bool = True


@dataclass
class Conditioning:
    """What one window needs (all for its frames, batch 1):

    ``context`` (1, N, D) CLIP embeddings; ``pose_r`` / ``pose_e`` (1, C0, N, h, w) PoCtr features
    of the source and edit poses; ``appearance`` ReCtr features; ``M_e`` / ``M_r`` (1, 1, N, H, W)
    pixel masks; ``M_e_latent`` (1, 1, N, h, w).
    """

    context: torch.Tensor
    pose_r: torch.Tensor
    pose_e: torch.Tensor
    appearance: list[torch.Tensor]
    M_e: torch.Tensor
    M_r: torch.Tensor
    M_e_latent: torch.Tensor


@dataclass
class SamplerState:
    """Everything needed to continue sampling: the two latents and the next step index."""

    z_e: torch.Tensor  # (1, C, F, h, w) the editing branch
    z_r: torch.Tensor  # (1, C, F, h, w) the reconstruction branch
    step: int = 0
