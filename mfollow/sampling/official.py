"""The released code's sampler (``--guidance official``), beside the paper's with the same
signature: its schedule of guided steps, replays and masked SDE noise, and its update, in which
the guided v moves x0 alone (docs/method.md, §6).

At step i of n (fractions of the release's 50 steps): guidance on steps 0-9 and the even steps
10-28; the even steps 22-28 taken three times, re-noised from t_prev back to t in between
(a "replay"); on steps 11-19 noise of strength 0.4 added inside the edit mask M_e only. The
guidance G = 0.04 * d(4000 L)/dz (:data:`OFFICIAL_SCALE` = 160 times the Eq. 7 gradient) is added
to v.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from mfollow.sampling import camera as camera_mode
from mfollow.sampling.ddim import alphas_at, ddim_step, release_step_noise, renoise, step_noise, v_to_x0_eps
from mfollow.sampling.passes import Losses, edit_prediction, features_of, predict
from mfollow.sampling.state import Conditioning, SamplerSettings, SamplerState
from mfollow.sampling.sweep import Sweep
from mfollow.sampling.windows import Window

OFFICIAL_SCALE = 160.0  # G = 0.04 * d(4000 L)/dz
OFFICIAL_SDE_STRENGTH = 0.4


@dataclass(frozen=True)
class StepPlan:
    """What the release does at step i of n (fractions of its 50 steps)."""

    guided: bool
    replays: int  # how many times the step is taken (re-noising in between)
    sde: bool

    @classmethod
    def official(cls, i: int, n: int) -> StepPlan:
        f = i / n  # at 50 steps: guided 0-9 and even 10-28; replay x3 at even 22-28; SDE 11-19
        guided = f < 0.2 or (f < 0.6 and i % 2 == 0)
        replays = 3 if (0.4 < f < 0.6 and i % 2 == 0) else 1
        return cls(guided, replays, 0.2 < f < 0.4)


@dataclass(frozen=True)
class OfficialStep:
    """Step ``index`` of the release's loop at timestep ``t`` (``t_prev``: the next one, None at the
    last step), its abar_t and abar_prev, whether it is guided here, and its plan."""

    index: int
    t: int
    t_prev: int | None
    a_t: float
    a_prev: float
    guided: bool
    plan: StepPlan


def sample_official(
    unet: Any,
    state: SamplerState,
    timesteps: list[int],
    alphas_cumprod: torch.Tensor,
    condition: Callable[[Window], Conditioning],
    settings: SamplerSettings,
    sweep: Sweep,
    *,
    camera: camera_mode.CameraState | None = None,
    callback: Callable[[dict[str, Any]], None] | None = None,
    generator: torch.Generator | None = None,
) -> SamplerState:
    """The release's loop from ``state.step`` to the end; arguments as
    :func:`mfollow.sampling.paper.sample_paper`. The SDE steps' noise is keyed by (seed, step,
    frame), or, with a ``generator`` (:func:`mfollow.sampling.ddim.release_noise`; one window),
    drawn from it in step order as the release does.

    Unlike Algorithm 1, guidance also acts at step 0, where abar_t = 0 under the zero-terminal-SNR
    schedule: the release's v-form update is defined there (x0 = -(v + G), eps = z)."""
    n = len(timesteps)
    for i in range(state.step, n):
        t = timesteps[i]
        a_t, a_prev = alphas_at(alphas_cumprod, timesteps, i)
        plan = StepPlan.official(i, n)
        guided = plan.guided and settings.guidance_scale != 0  # at step 0 (abar_t = 0) too
        st = OfficialStep(i, t, timesteps[i + 1] if i + 1 < n else None, a_t, a_prev, guided, plan)
        cam = camera if camera is not None and i >= settings.camera_start * n else None
        losses: list[Losses] = []

        def window_step(window: Window, z_e: torch.Tensor, z_r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            z_e_prev, z_r_prev, loss = official_window_step(
                unet, z_e, z_r, st, condition(window), settings, cam, first_frame=window.start, generator=generator
            )
            if loss is not None:
                losses.append(loss)
            return z_e_prev, z_r_prev

        state = sweep.step(state, window_step, f"at step {i + 1}/{n} (t={t})", last=i + 1 == n)
        if callback is not None:
            callback({"step": i + 1, "steps": n, "t": t, "state": state, "losses": losses})
    return state


def official_window_step(
    unet: Any,
    z_e: torch.Tensor,
    z_r: torch.Tensor,
    st: OfficialStep,
    c: Conditioning,
    s: SamplerSettings,
    camera: camera_mode.CameraState | None = None,
    *,
    first_frame: int = 0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, Losses | None]:
    """One step of both branches on one window (its first frame ``first_frame`` keys the SDE
    noise, or ``generator`` gives it); returns the next z_e, z_r (1, C, n, h, w) and the last
    guided pass's losses."""
    with camera_mode.window(camera, c.M_e, c.M_r):  # the reconstruction saves K/V, the editing reads them
        with torch.no_grad():
            out_r = predict(unet, z_r, st.t, c.context, c.pose_r, c)
        camera_mode.switch(camera, "inject")
        z_r_prev = ddim_step(z_r, out_r.sample, st.a_t, st.a_prev, None)
        F_r = [f.detach() for f in features_of(out_r)]
        losses = None
        x = z_e
        for r in range(st.plan.replays):
            v, gradient, loss = edit_prediction(unet, x, st.t, c, s, F_r, st.guided)
            losses = loss if loss is not None else losses
            x_prev = official_update(x, v, gradient, st, c, s, first_frame, generator)
            if r + 1 < st.plan.replays and st.t_prev is not None:  # replay: re-noise t_prev -> t
                camera_mode.switch(camera, "off")  # the release's replay pass never injects
                with torch.no_grad():
                    v_back = predict(unet, x_prev, st.t_prev, c.context, c.pose_e, c).sample
                camera_mode.switch(camera, "inject")
                x = renoise(x_prev, v_back, st.a_prev, st.a_t)
    return x_prev, z_r_prev, losses


def official_update(
    x: torch.Tensor,
    v: torch.Tensor,
    gradient: torch.Tensor | None,
    st: OfficialStep,
    c: Conditioning,
    s: SamplerSettings,
    first_frame: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The release's update: the guided v only moves x0, the direction uses the unguided v; on SDE
    steps noise of strength 0.4 is added inside the edit mask only (keyed by (seed, step, frame),
    or the next draw of ``generator``)."""
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
    if generator is None:
        noise = step_noise(s.seed, st.index, first_frame, x.shape).to(x.device, dtype)
    else:
        noise = release_step_noise(generator, x.shape).to(x.device, dtype)
    x_sto = st.a_prev**0.5 * x0 + max(0.0, 1 - st.a_prev - sigma**2) ** 0.5 * eps + sigma * noise
    m = c.M_e_latent.to(dtype)
    return (m * x_sto + (1 - m) * x_det).to(x.dtype)
