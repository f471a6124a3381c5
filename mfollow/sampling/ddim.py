"""DDIM arithmetic on v predictions (zero-terminal-SNR, trailing spacing) and the keyed noise.

The model predicts v; conversions are explicit: x0 = sqrt(abar) z - sqrt(1 - abar) v and
eps = sqrt(abar) v + sqrt(1 - abar) z. The paper's equations are in eps form (Eq. 13) and are
converted, never mixed. Noise comes from (seed, frame index), so results do not depend on the
window layout or on how many processes share the windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch


def schedule(config: dict[str, Any], steps: int) -> tuple[list[int], torch.Tensor]:
    """Timesteps (trailing spacing, from the bundle's scheduler config) and alphas_cumprod."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(config)
    scheduler.set_timesteps(steps)
    return [int(t) for t in scheduler.timesteps], scheduler.alphas_cumprod.to(torch.float64)


def alphas_at(alphas_cumprod: torch.Tensor, timesteps: list[int], i: int) -> tuple[float, float]:
    """(abar_t, abar_prev) of step ``i``; the last step lands on abar = 1 (x0)."""
    a_t = float(alphas_cumprod[timesteps[i]])
    a_prev = float(alphas_cumprod[timesteps[i + 1]]) if i + 1 < len(timesteps) else 1.0
    return a_t, a_prev


def _keyed_randn(shape: Sequence[int], *key: int) -> torch.Tensor:
    """float32 standard normal noise from a generator seeded by ``key`` alone."""
    g = torch.Generator().manual_seed(int(np.random.SeedSequence(list(key)).generate_state(1)[0]))
    return torch.randn(tuple(shape), generator=g, dtype=torch.float32)


def initial_noise(seed: int, frames: int, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(1, C, F, h, w) noise; frame k comes from its own generator seeded by (seed, k)."""
    out = [_keyed_randn(shape, seed, k) for k in range(frames)]
    return torch.stack(out, dim=1)[None].to(dtype)  # F x (C, h, w) -> (1, C, F, h, w)


def release_noise(seed: int, shape: Sequence[int]) -> tuple[torch.Tensor, torch.Generator]:
    """The initial latent (1, C, F, h, w) as the release draws it: a CPU generator seeded with
    ``seed`` (the release re-seeds the global one, the same stream), float16; and that generator,
    from which the release then draws its SDE steps' noise in order (:func:`release_step_noise`)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float16), generator


def release_step_noise(generator: torch.Generator, shape: Sequence[int]) -> torch.Tensor:
    """The next SDE noise (1, C, F, h, w) of the release's stream: float16 from the CPU generator."""
    return torch.randn(tuple(shape), generator=generator, dtype=torch.float16)


def step_noise(seed: int, step: int, first_frame: int, shape: Sequence[int]) -> torch.Tensor:
    """(1, C, n, h, w) noise for one step; frame k's comes from (seed, step, k) alone."""
    _, ch, n, h, w = shape
    out = [_keyed_randn((ch, h, w), seed, 1 + step, k) for k in range(first_frame, first_frame + n)]
    return torch.stack(out, dim=1)[None]  # n x (C, h, w) -> (1, C, n, h, w)


def v_to_x0_eps(z: torch.Tensor, v: torch.Tensor, a: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A v prediction at noise level abar = ``a`` as (x0, eps): x0 = sqrt(a) z - sqrt(1 - a) v,
    eps = sqrt(a) v + sqrt(1 - a) z."""
    sa, s1a = a**0.5, (1 - a) ** 0.5
    return sa * z - s1a * v, sa * v + s1a * z


def renoise(x_prev: torch.Tensor, v: torch.Tensor, a_prev: float, a_t: float) -> torch.Tensor:
    """Deterministic one-step DDIM re-noising from t_prev back to t (the release's "replay")."""
    dtype = torch.promote_types(x_prev.dtype, torch.float32)
    x0, eps = v_to_x0_eps(x_prev.to(dtype), v.to(dtype), a_prev)
    return (a_t**0.5 * x0 + (1 - a_t) ** 0.5 * eps).to(x_prev.dtype)


def ddim_step(
    z: torch.Tensor, v: torch.Tensor, a_t: float, a_prev: float, gradient: torch.Tensor | None
) -> torch.Tensor:
    """Deterministic DDIM (eta 0) from a v prediction, with Eq. 13's guided eps when a gradient is
    given (descent on the losses). Arithmetic in float32 at least."""
    dtype = torch.promote_types(z.dtype, torch.float32)
    z32 = z.to(dtype)
    x0, eps = v_to_x0_eps(z32, v.to(dtype), a_t)
    sa, s1a = a_t**0.5, (1 - a_t) ** 0.5
    if gradient is not None:
        eps = eps + s1a * gradient.to(dtype)  # Eq. 13 with grad log q = -dL/dz
        x0 = (z32 - s1a * eps) / sa  # Algorithm 1: x0 consistent with the guided eps
    return (a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps).to(z.dtype)
