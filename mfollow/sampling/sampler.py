"""The lockstep two-branch DDIM sampler with consistency guidance (design §4; paper Algorithm 1).

The reconstruction branch (source poses) and the editing branch (edit poses) start from the same
noise and advance together. At every step, for every window of frames:

1. reconstruction pass (no grad): its prediction updates z_r and its taps give F_r;
2. editing pass (grad w.r.t. z_e on guided steps): prediction and taps F_e;
3. unconditional editing pass (zero CLIP context) for classifier-free guidance, when cfg != 1;
4. guidance g = dL_fg/dz_e * M_e + dL_bg/dz_e * (1 - M_e) (Eq. 7), then Eq. 13 in eps form,
   eps_hat = eps + sqrt(1 - abar_t) * scale * g (descent on the losses), and the DDIM update.

The model predicts v (zero-terminal-SNR, trailing spacing); conversions are explicit:
x0 = sqrt(abar) z - sqrt(1 - abar) v and eps = sqrt(abar) v + sqrt(1 - abar) z. Where abar_t is 0
(the first step of a zero-SNR schedule) eps form is singular and the latent is pure noise, so
guidance is skipped there. Windows are blended per frame (see :mod:`windows`). Noise comes from
(seed, frame index), so results do not depend on the window layout. No printing: progress and
state go out through ``callback``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch

from mfollow.errors import MfollowError
from mfollow.sampling.guidance import GuidanceWeights, consistency_losses, guidance_gradient
from mfollow.sampling.windows import BlendScheme, Window, blend_weights, layout

GuidanceMode = Literal["paper", "official", "none"]


class SamplingError(MfollowError):
    """Sampling produced NaN or infinite values (exit 1: the run is stopped, nothing written)."""


@dataclass(frozen=True)
class SamplerSettings:
    steps: int = 25
    cfg: float = 3.5  # classifier-free guidance on the CLIP context (1 = off)
    guidance: GuidanceMode = "paper"
    guidance_scale: float = 1.0  # overall step size of the consistency guidance (the paper gives none)
    weights: GuidanceWeights = field(default_factory=GuidanceWeights)
    window: int = 24
    overlap: int = 8
    blend: BlendScheme = "tent"


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

    z_e: torch.Tensor  # (1, 4, F, h, w)
    z_r: torch.Tensor
    step: int = 0


def schedule(config: dict[str, Any], steps: int) -> tuple[list[int], torch.Tensor]:
    """Timesteps (trailing spacing, from the bundle's scheduler config) and alphas_cumprod."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(config)
    scheduler.set_timesteps(steps)
    return [int(t) for t in scheduler.timesteps], scheduler.alphas_cumprod.to(torch.float64)


def initial_noise(seed: int, frames: int, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(1, C, F, h, w) noise; frame k comes from its own generator seeded by (seed, k)."""
    out = []
    for k in range(frames):
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, k]).generate_state(1)[0]))
        out.append(torch.randn(tuple(shape), generator=g, dtype=torch.float32))
    return torch.stack(out, dim=1)[None].to(dtype)  # (C, F, h, w) -> (1, C, F, h, w)


def _predict(unet: Any, z: torch.Tensor, t: int, ctx: torch.Tensor, pose: torch.Tensor, app: list[torch.Tensor]) -> Any:
    return unet(z, t, ctx, pose_features=pose, appearance=app)


def sample(
    unet: Any,
    state: SamplerState,
    timesteps: list[int],
    alphas_cumprod: torch.Tensor,
    condition: Callable[[Window], Conditioning],
    settings: SamplerSettings,
    *,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> SamplerState:
    """Run (or continue) the sampler from ``state.step`` to the end; returns the final state.

    ``condition(window)`` supplies a window's :class:`Conditioning` (it may cache). ``callback``
    receives ``{"step", "steps", "t", "state", "losses"}`` after every step (the state can be saved
    for resuming). Raises :class:`SamplingError` on NaN/inf, naming the step.
    """
    frames = state.z_e.shape[2]
    windows = layout(frames, settings.window, settings.overlap)
    weights = [
        torch.from_numpy(w).to(torch.float32) for w in blend_weights(windows, frames, settings.blend, settings.overlap)
    ]
    for i in range(state.step, len(timesteps)):
        t = timesteps[i]
        a_t = float(alphas_cumprod[t])
        a_prev = float(alphas_cumprod[timesteps[i + 1]]) if i + 1 < len(timesteps) else 1.0
        guided = settings.guidance != "none" and settings.guidance_scale != 0 and a_t > 1e-6
        new_e = torch.zeros_like(state.z_e)
        new_r = torch.zeros_like(state.z_r)
        losses: list[tuple[float, float]] = []
        for window, w in zip(windows, weights, strict=True):
            c = condition(window)
            sl = slice(window.start, window.stop)
            z_e, z_r = state.z_e[:, :, sl], state.z_r[:, :, sl]
            ze_next, zr_next, loss = _window_step(unet, z_e, z_r, t, a_t, a_prev, c, settings, guided)
            shape = (1, 1, len(window), 1, 1)
            new_e[:, :, sl] += ze_next * w.view(shape).to(ze_next.dtype)
            new_r[:, :, sl] += zr_next * w.view(shape).to(zr_next.dtype)
            if loss is not None:
                losses.append(loss)
        if not (torch.isfinite(new_e).all() and torch.isfinite(new_r).all()):
            raise SamplingError(f"sampling produced NaN or infinite values at step {i + 1}/{len(timesteps)} (t={t})")
        state = SamplerState(new_e, new_r, i + 1)
        if callback is not None:
            callback({"step": i + 1, "steps": len(timesteps), "t": t, "state": state, "losses": losses})
    return state


def _window_step(
    unet: Any,
    z_e: torch.Tensor,
    z_r: torch.Tensor,
    t: int,
    a_t: float,
    a_prev: float,
    c: Conditioning,
    s: SamplerSettings,
    guided: bool,
) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float] | None]:
    """One DDIM step of both branches on one window; returns next z_e, z_r and the losses."""
    with torch.no_grad():
        out_r = _predict(unet, z_r, t, c.context, c.pose_r, c.appearance)
    z_in = z_e.detach().requires_grad_(guided)
    with torch.set_grad_enabled(guided):
        out_e = _predict(unet, z_in, t, c.context, c.pose_e, c.appearance)
        gradient, loss = None, None
        if guided:
            L_fg, L_bg = consistency_losses(
                [out_e.features[k] for k in sorted(out_e.features)],
                [out_r.features[k].detach() for k in sorted(out_r.features)],
                c.M_e,
                c.M_r,
                variant=s.guidance,
                weights=s.weights,
            )
            gradient = guidance_gradient(z_in, L_fg, L_bg, c.M_e_latent).detach()
            loss = (float(L_fg.detach()), float(L_bg.detach()))
    v_e = out_e.sample.detach()
    if s.cfg != 1.0:
        with torch.no_grad():
            v_u = _predict(unet, z_e, t, torch.zeros_like(c.context), c.pose_e, c.appearance).sample
        v_e = v_u + s.cfg * (v_e - v_u)
    z_e_next = ddim_step(z_e, v_e, a_t, a_prev, None if gradient is None else s.guidance_scale * gradient)
    z_r_next = ddim_step(z_r, out_r.sample, a_t, a_prev, None)
    return z_e_next, z_r_next, loss


def ddim_step(
    z: torch.Tensor, v: torch.Tensor, a_t: float, a_prev: float, gradient: torch.Tensor | None
) -> torch.Tensor:
    """Deterministic DDIM (eta 0) from a v prediction, with Eq. 13's guided eps when a gradient is
    given (descent on the losses). Arithmetic in float32 at least."""
    dtype = torch.promote_types(z.dtype, torch.float32)
    z32, v32 = z.to(dtype), v.to(dtype)
    sa, s1a = a_t**0.5, (1 - a_t) ** 0.5
    x0 = sa * z32 - s1a * v32
    eps = sa * v32 + s1a * z32
    if gradient is not None:
        eps = eps + s1a * gradient.to(dtype)  # Eq. 13 with grad log q = -dL/dz
        x0 = (z32 - s1a * eps) / sa  # Algorithm 1: x0 consistent with the guided eps
    return (a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps).to(z.dtype)
