"""Training objectives as pure functions of explicit modules, tensors and generators.

- :func:`diffusion_loss` — the v-prediction loss of the scheduler in use (paper §2.2, both stages):
  z_t = sqrt(abar_t) z_0 + sqrt(1 - abar_t) eps,  v = sqrt(abar_t) eps - sqrt(1 - abar_t) z_0,
  L = || v_theta(z_t, t, c_ref, c_pose) - v ||^2;
- :func:`vae_loss` — the tiny autoencoder's reconstruction loss (L1 + a small KL term);
- :func:`mask_loss` — SegDiT's Eq. 8 (MSE against the ground-truth mask).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

#: Probability of an unconditional example (CLIP context zeroed) for classifier-free guidance.
CONTEXT_DROP = 0.1
KL_WEIGHT = 1e-6


def alphas_cumprod(scheduler_config: dict[str, Any]) -> torch.Tensor:
    """abar_t (T,) of the bundle's DDIM scheduler (zero-terminal-SNR rescaling included)."""
    from diffusers import DDIMScheduler

    return DDIMScheduler(**scheduler_config).alphas_cumprod.to(torch.float64)


def diffusion_loss(
    unet: Any,
    poctr: Any,
    z0: torch.Tensor,
    reference: torch.Tensor,
    pose: torch.Tensor,
    context: torch.Tensor,
    abar: torch.Tensor,
    generator: torch.Generator,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """v-prediction MSE for one batch; with ``weight``, the weighted mean
    sum(w * (v_theta - v)^2) / sum(w) over every latent value.

    Args:
        z0: (B, C, F, h, w) clean latents of the target frames (already scaled).
        reference: (B, 3, F, H, W) reference frames in [-1, 1] (the ReCtr input).
        pose: (B, 3, F, H, W) target pose renders in [0, 1] (the PoCtr input).
        context: (B, F, D) CLIP image embeddings of the reference frames.
        abar: (T,) cumulative alphas; t is drawn uniformly from [0, T).
        generator: a CPU generator; draws t, the noise and the context dropout (drawn on the CPU
            and moved, so a batch's draws do not depend on the device that trains).
        weight: (B, 1, F, h, w) per-latent-pixel weights (broadcast over channels), or None.
    """
    b = z0.shape[0]
    dev = z0.device
    t = torch.randint(0, len(abar), (b,), generator=generator).to(dev)
    eps = torch.randn(z0.shape, generator=generator, dtype=z0.dtype).to(dev)
    keep = (torch.rand((b,), generator=generator) >= CONTEXT_DROP).to(dev, context.dtype)
    a = abar.to(dev)[t].to(z0.dtype).view(b, 1, 1, 1, 1)  # (B,) -> (B, 1, 1, 1, 1): broadcast over C, F, h, w
    zt = a.sqrt() * z0 + (1 - a).sqrt() * eps
    v = a.sqrt() * eps - (1 - a).sqrt() * z0
    ctx = context * keep.view(b, 1, 1)  # (B,) -> (B, 1, 1): zero the whole context of dropped rows
    pred = unet(zt, t, ctx, pose_features=poctr(pose), appearance=unet.appearance_features(reference)).sample
    if weight is None:
        return F.mse_loss(pred.float(), v.float())
    w = weight.float().expand_as(pred)  # (B, 1, F, h, w) -> (B, C, F, h, w)
    return (w * (pred.float() - v.float()) ** 2).sum() / w.sum()


def vae_loss(
    vae: Any,
    frames: torch.Tensor,
    generator: torch.Generator,
    *,
    weight: torch.Tensor | None = None,
) -> torch.Tensor:
    """frames (B, 3, H, W) in [-1, 1]: mean |D(E(x)) - x| + KL_WEIGHT * KL(q(z|x) || N(0, I)).
    ``generator`` (CPU) draws the posterior sample, moved to the frames' device.

    ``weight`` (B, 1, H, W) makes the L1 a weighted mean (sum w |D(E(x)) - x| / sum w, over the
    channels too)."""
    posterior = vae.encode(frames).latent_dist
    z = posterior.sample(generator=generator)
    recon = vae.decode(z).sample
    err = (recon - frames).abs()
    if weight is None:
        l1 = err.mean()
    else:
        w = weight.to(err.dtype).expand_as(err)  # (B, 1, H, W) -> (B, 3, H, W)
        l1 = (w * err).sum() / w.sum()
    return l1 + KL_WEIGHT * posterior.kl().mean()


def mask_loss(segdit: Any, frames: torch.Tensor, poses: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Eq. 8 on a batch: frames (B, 3, H, W) in [-1, 1], poses (B, 3, H, W) in [0, 1], masks (B, H, W)."""
    from mfollow.preprocess.masks.segdit import loss_mse

    return loss_mse(segdit(frames, poses)[:, 0], masks.to(frames.dtype))
