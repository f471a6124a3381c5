"""The U-Net passes of one window that both samplers share: a prediction, and the editing branch's
prediction with classifier-free guidance and, on guided steps, the consistency-guidance gradient
(Eqs. 2-7). Shapes are (B, C, F, h, w), batch 1."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mfollow.sampling.guidance import consistency_losses, guidance_gradient
from mfollow.sampling.state import Conditioning, SamplerSettings

Losses = tuple[float, float]  # (L_fg, L_bg) of a guided pass


@dataclass(frozen=True)
class Prediction:
    """One U-Net pass: v (float32, (B, C, F, h, w)) and the decoder features (the model's dtype)."""

    sample: torch.Tensor
    features: dict[str, torch.Tensor]


def predict(
    unet: Any,
    z: torch.Tensor,
    t: int,
    context: torch.Tensor,
    pose: torch.Tensor,
    c: Conditioning,
    *,
    sample_grad: bool = True,
) -> Prediction:
    """One U-Net pass on float32 latents ``z`` (B, C, F, h, w): the model runs in its own dtype
    (float32, or bfloat16/float16 under mixed precision: the cast is where a guided pass's gradient
    goes back to float32), and v comes back in float32, so that the DDIM updates and the guidance
    (whose losses are float32 too) keep full precision. ``sample_grad=False``: under autograd only
    the features are differentiable (the U-Net's layers after its last tap keep no activations)."""
    dtype = getattr(unet, "dtype", z.dtype)  # diffusers' ModelMixin.dtype; a bare module runs on z's
    out = unet(z.to(dtype), t, context, pose_features=pose, appearance=c.appearance, sample_grad=sample_grad)
    return Prediction(out.sample.float(), out.features)


def features_of(out: Prediction) -> list[torch.Tensor]:
    """A pass's decoder features in layer order (the F of Eqs. 2-6)."""
    return [out.features[k] for k in sorted(out.features)]


def paired_predictions(
    unet: Any, z_r: torch.Tensor, z_e: torch.Tensor, t: int, c: Conditioning
) -> tuple[Prediction, torch.Tensor]:
    """The reconstruction pass (source poses, the CLIP context) and the editing branch's
    unconditional pass (edit poses, the zero context) as one U-Net call of batch 2, without grad:
    what :func:`predict` gives for each, up to float rounding, in one pass over the weights.
    ``z_r``, ``z_e``: (1, C, F, h, w). Returns the reconstruction's prediction (v and features,
    batch 1) and the unconditional v (1, C, F, h, w)."""
    z = torch.cat([z_r, z_e])  # 2 x (1, C, F, h, w) -> (2, C, F, h, w): batch 0 the reconstruction
    context = torch.cat([c.context, torch.zeros_like(c.context)])  # 2 x (1, F, D) -> (2, F, D)
    pose = torch.cat([c.pose_r, c.pose_e])  # 2 x (1, C0, F, h, w) -> (2, C0, F, h, w)
    with torch.no_grad():
        out = predict(unet, z, t, context, pose, c)  # ReCtr's features are shared by the batch
    # (2, C, F, h', w') -> the reconstruction's (1, C, F, h', w'), copied: F_r is held through the
    # guided pass, and a view would keep the unconditional half's features alive with it
    features = {k: f[:1].clone() for k, f in out.features.items()}
    return Prediction(out.sample[:1], features), out.sample[1:]


def edit_prediction(
    unet: Any,
    z_e: torch.Tensor,
    t: int,
    c: Conditioning,
    s: SamplerSettings,
    F_r: list[torch.Tensor],
    guided: bool,
    v_u: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, Losses | None]:
    """The editing branch at one step: the CFG-combined v (cfg != 1: v_u + cfg (v - v_u), with the
    zero CLIP context as the unconditional one; ``v_u`` when already predicted, by
    :func:`paired_predictions`) and, when ``guided``, the Eq. 7 gradient
    dL_fg/dz_e M_e + dL_bg/dz_e (1 - M_e) of the losses between its features F_e and the
    reconstruction's ``F_r`` (Eqs. 2-6), with the losses."""
    z_in = z_e.detach().requires_grad_(guided)
    gradient, losses = None, None
    with torch.set_grad_enabled(guided):
        # v is not differentiated (Eq. 7 takes the losses' gradient only): no graph after the taps
        out_e = predict(unet, z_in, t, c.context, c.pose_e, c, sample_grad=False)
        if guided:
            L_fg, L_bg = consistency_losses(
                features_of(out_e), F_r, c.M_e, c.M_r, variant=s.guidance, weights=s.weights
            )  # Eqs. 2-6
            gradient = guidance_gradient(z_in, L_fg, L_bg, c.M_e_latent).detach()  # Eq. 7
            losses = (float(L_fg.detach()), float(L_bg.detach()))
    v = out_e.sample.detach()
    if s.cfg != 1.0:
        if v_u is None:
            with torch.no_grad():
                v_u = predict(unet, z_e, t, torch.zeros_like(c.context), c.pose_e, c).sample
        v = v_u + s.cfg * (v - v_u)
    return v, gradient, losses
