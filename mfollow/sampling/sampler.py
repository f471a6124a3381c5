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

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from mfollow.runtime.errors import MfollowError
from mfollow.sampling.camera import CameraState
from mfollow.sampling.guidance import GuidanceWeights, consistency_losses, guidance_gradient
from mfollow.sampling.spread import Spread
from mfollow.sampling.windows import BlendScheme, Window, blend_weights, layout

if TYPE_CHECKING:
    from mfollow.runtime.distributed import Group

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
    seed: int = 0  # the official preset's SDE noise: drawn from (seed, frame, step)
    camera_start: float = 0.4  # camera mode acts from this fraction of the steps (release: 20 of 50)


#: The release's guidance constants (reference §5.4-5.5): G = 0.04 * d(4000 L)/dz added to v.
OFFICIAL_SCALE = 160.0
OFFICIAL_SDE_STRENGTH = 0.4


@dataclass(frozen=True)
class StepPlan:
    """What the ``official`` preset does at step i of n (reference §5.4, fractions of 50 steps)."""

    guided: bool
    replays: int  # how many times the step is taken (re-noising in between)
    sde: bool

    @classmethod
    def official(cls, i: int, n: int) -> StepPlan:
        f = i / n  # at 50 steps: guided 0-9 and even 10-28; replay x3 at even 22-28; SDE 11-19
        guided = f < 0.2 or (f < 0.6 and i % 2 == 0)
        replays = 3 if (0.4 < f < 0.6 and i % 2 == 0) else 1
        return cls(guided, replays, 0.2 < f < 0.4)


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

    z_e: torch.Tensor  # (1, C, F, h, w)
    z_r: torch.Tensor
    step: int = 0


def schedule(config: dict[str, Any], steps: int) -> tuple[list[int], torch.Tensor]:
    """Timesteps (trailing spacing, from the bundle's scheduler config) and alphas_cumprod."""
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler.from_config(config)
    scheduler.set_timesteps(steps)
    return [int(t) for t in scheduler.timesteps], scheduler.alphas_cumprod.to(torch.float64)


def _keyed_randn(shape: Sequence[int], *key: int) -> torch.Tensor:
    """float32 standard normal noise from a generator seeded by ``key`` alone."""
    g = torch.Generator().manual_seed(int(np.random.SeedSequence(list(key)).generate_state(1)[0]))
    return torch.randn(tuple(shape), generator=g, dtype=torch.float32)


def initial_noise(seed: int, frames: int, shape: Sequence[int], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(1, C, F, h, w) noise; frame k comes from its own generator seeded by (seed, k)."""
    out = [_keyed_randn(shape, seed, k) for k in range(frames)]
    return torch.stack(out, dim=1)[None].to(dtype)  # F x (C, h, w) -> (1, C, F, h, w)


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
    camera: CameraState | None = None,
    group: Group | None = None,
    gather_each_step: bool = False,
) -> SamplerState:
    """Run (or continue) the sampler from ``state.step`` to the end; returns the final state.

    ``condition(window)`` supplies a window's :class:`Conditioning` (it may cache). ``callback``
    receives ``{"step", "steps", "t", "state", "losses"}`` after every step (the state can be saved
    for resuming). ``camera`` (from :func:`camera.install`) turns on key/value injection from
    ``settings.camera_start`` on. Raises :class:`SamplingError` on NaN/inf, naming the step.

    With a ``group`` of several ranks (:mod:`mfollow.runtime.distributed`), each rank runs a contiguous
    block of the windows (:func:`mfollow.sampling.spread.share`) and only the contributions to
    frames that windows of several ranks cover are exchanged; every frame's blend adds its
    windows' contributions in window order, as one process does, so the result is the same bits
    for any number of ranks. The state is complete on rank 0 after the last step (and after every
    step with ``gather_each_step``, for its checkpoint); elsewhere only the rank's own frames are.
    """
    frames = state.z_e.shape[2]
    windows = layout(frames, settings.window, settings.overlap)
    weights = [
        torch.from_numpy(w).to(state.z_e.device, torch.float32)
        for w in blend_weights(windows, frames, settings.blend, settings.overlap)
    ]
    spread = None if group is None or group.world == 1 else Spread(windows, group)
    for i in range(state.step, len(timesteps)):
        t = timesteps[i]
        a_t = float(alphas_cumprod[t])
        a_prev = float(alphas_cumprod[timesteps[i + 1]]) if i + 1 < len(timesteps) else 1.0
        plan = (
            StepPlan.official(i, len(timesteps))
            if settings.guidance == "official"
            else StepPlan(settings.guidance != "none", 1, False)
        )
        guided = plan.guided and settings.guidance_scale != 0 and a_t > 1e-6
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else None
        losses: list[tuple[float, float]] = []
        cam = camera if camera is not None and i >= settings.camera_start * len(timesteps) else None
        step_at = functools.partial(_Step, i, t, t_prev, a_t, a_prev, guided, plan)
        contribution = functools.partial(
            _contribution, unet, windows, weights, condition, state, step_at, settings, cam, losses
        )
        check = functools.partial(_check_finite, f"at step {i + 1}/{len(timesteps)} (t={t})")
        if spread is None:
            new_e = torch.zeros_like(state.z_e)
            new_r = torch.zeros_like(state.z_r)
            for k, window in enumerate(windows):  # in window order: the blend's order of addition
                ce, cr = contribution(k)
                new_e[:, :, window.start : window.stop] += ce
                new_r[:, :, window.start : window.stop] += cr
            check(new_e, new_r)
        else:
            new_e, new_r = spread.step(state, contribution, check)
        state = SamplerState(new_e, new_r, i + 1)
        if spread is not None and (gather_each_step or i + 1 == len(timesteps)):
            state = spread.gather(state)
        if callback is not None:
            callback({"step": i + 1, "steps": len(timesteps), "t": t, "state": state, "losses": losses})
    return state


def _contribution(
    unet: Any,
    windows: list[Window],
    weights: list[torch.Tensor],
    condition: Callable[[Window], Conditioning],
    state: SamplerState,
    step_at: Callable[[int], _Step],
    settings: SamplerSettings,
    camera: CameraState | None,
    losses: list[tuple[float, float]],
    k: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Window k's weighted next latents (1, C, len, h, w) of both branches (its share of the
    blend); its losses are appended to ``losses``."""
    window, w = windows[k], weights[k]
    sl = slice(window.start, window.stop)
    ze_next, zr_next, loss = _window_step(
        unet, state.z_e[:, :, sl], state.z_r[:, :, sl], step_at(window.start), condition(window), settings, camera
    )
    if loss is not None:
        losses.append(loss)
    shape = (1, 1, len(window), 1, 1)
    return ze_next * w.view(shape).to(ze_next.dtype), zr_next * w.view(shape).to(zr_next.dtype)


def _check_finite(where: str, z_e: torch.Tensor, z_r: torch.Tensor) -> None:
    if not (torch.isfinite(z_e).all() and torch.isfinite(z_r).all()):
        raise SamplingError(f"sampling produced NaN or infinite values {where}")


@dataclass(frozen=True)
class _Step:
    index: int
    t: int
    t_prev: int | None
    a_t: float
    a_prev: float
    guided: bool
    plan: StepPlan
    first_frame: int  # absolute index of the window's first frame (for per-frame noise)


def _window_step(
    unet: Any,
    z_e: torch.Tensor,
    z_r: torch.Tensor,
    st: _Step,
    c: Conditioning,
    s: SamplerSettings,
    camera: CameraState | None = None,
) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float] | None]:
    """One step of both branches on one window; returns next z_e, z_r and the last losses."""
    if camera is not None:  # the reconstruction pass saves K/V, the editing passes inject them
        camera.store.clear()
        camera.mode, camera.M_e, camera.M_r = "save", c.M_e, c.M_r
    try:
        return _branches(unet, z_e, z_r, st, c, s, camera)
    finally:
        if camera is not None:
            camera.mode = "off"
            camera.store.clear()


def _branches(
    unet: Any, z_e: torch.Tensor, z_r: torch.Tensor, st: _Step, c: Conditioning, s: SamplerSettings, camera: Any
) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float] | None]:
    with torch.no_grad():
        out_r = _predict(unet, z_r, st.t, c.context, c.pose_r, c.appearance)
    if camera is not None:
        camera.mode = "inject"
    z_r_next = ddim_step(z_r, out_r.sample, st.a_t, st.a_prev, None)
    features_r = [out_r.features[k].detach() for k in sorted(out_r.features)]
    loss = None
    x = z_e
    for r in range(st.plan.replays):
        v, gradient, loss = _edit_prediction(unet, x, st, c, s, features_r, loss)
        if s.guidance == "official":
            x_prev = _official_update(x, v, gradient, st, c, s)
        else:
            x_prev = ddim_step(x, v, st.a_t, st.a_prev, None if gradient is None else s.guidance_scale * gradient)
        if r + 1 < st.plan.replays and st.t_prev is not None:  # replay: re-noise t_prev -> t
            if camera is not None:
                camera.mode = "off"  # the release's replay pass never injects
            with torch.no_grad():
                v_back = _predict(unet, x_prev, st.t_prev, c.context, c.pose_e, c.appearance).sample
            if camera is not None:
                camera.mode = "inject"
            x = renoise(x_prev, v_back, st.a_prev, st.a_t)
    return x_prev, z_r_next, loss


def _edit_prediction(
    unet: Any,
    x: torch.Tensor,
    st: _Step,
    c: Conditioning,
    s: SamplerSettings,
    features_r: list[torch.Tensor],
    loss: tuple[float, float] | None,
) -> tuple[torch.Tensor, torch.Tensor | None, tuple[float, float] | None]:
    """The (CFG-combined) editing prediction v and, on guided steps, the Eq. 7 gradient."""
    z_in = x.detach().requires_grad_(st.guided)
    gradient = None
    with torch.set_grad_enabled(st.guided):
        out_e = _predict(unet, z_in, st.t, c.context, c.pose_e, c.appearance)
        if st.guided:
            L_fg, L_bg = consistency_losses(
                [out_e.features[k] for k in sorted(out_e.features)], features_r, c.M_e, c.M_r,
                variant=s.guidance, weights=s.weights,
            )  # fmt: skip
            gradient = guidance_gradient(z_in, L_fg, L_bg, c.M_e_latent).detach()
            loss = (float(L_fg.detach()), float(L_bg.detach()))
    v = out_e.sample.detach()
    if s.cfg != 1.0:
        with torch.no_grad():
            v_u = _predict(unet, x, st.t, torch.zeros_like(c.context), c.pose_e, c.appearance).sample
        v = v_u + s.cfg * (v - v_u)
    return v, gradient, loss


def _official_update(
    x: torch.Tensor, v: torch.Tensor, gradient: torch.Tensor | None, st: _Step, c: Conditioning, s: SamplerSettings
) -> torch.Tensor:
    """The release's step: the guided v only moves x0, the direction uses the unguided v; on SDE
    steps noise of strength 0.4 is added inside the edit mask only (reference §5.4)."""
    dtype = torch.promote_types(x.dtype, torch.float32)
    x32, v32 = x.to(dtype), v.to(dtype)
    v_g = v32 if gradient is None else v32 + OFFICIAL_SCALE * s.guidance_scale * gradient.to(dtype)
    x0, _ = v_to_x0_eps(x32, v_g, st.a_t)  # the guided v moves x0 only
    _, eps = v_to_x0_eps(x32, v32, st.a_t)
    x_det = st.a_prev**0.5 * x0 + (1 - st.a_prev) ** 0.5 * eps
    if not st.plan.sde or st.a_t >= 1 or st.a_prev >= 1:
        return x_det.to(x.dtype)
    var = (1 - st.a_prev) / (1 - st.a_t) * (1 - st.a_t / st.a_prev)
    sigma = OFFICIAL_SDE_STRENGTH * var**0.5
    noise = step_noise(s.seed, st.index, st.first_frame, x.shape).to(x.device, dtype)
    x_sto = st.a_prev**0.5 * x0 + max(0.0, 1 - st.a_prev - sigma**2) ** 0.5 * eps + sigma * noise
    m = c.M_e_latent.to(dtype)
    return (m * x_sto + (1 - m) * x_det).to(x.dtype)


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
