"""The paper's sampler: Algorithm 1, lockstep two-branch DDIM with consistency guidance.

The reconstruction branch (source poses) and the editing branch (edit poses) start from the same
noise and advance together. At every step t, for every window of frames:

1. reconstruction pass (no grad): its v updates z_r, its decoder features are F_r;
2. editing pass (grad w.r.t. z_e on guided steps): v and F_e; with CFG (cfg != 1) an
   unconditional pass (zero CLIP context) too, in one batch with the reconstruction pass
   (``settings.batch_passes``; not under camera mode);
3. guidance g = dL_fg/dz_e M_e + dL_bg/dz_e (1 - M_e) (Eqs. 2-7);
4. Eq. 13 in eps form, eps_hat = eps + sqrt(1 - abar_t) scale g (descent on the losses), x0 kept
   consistent with eps_hat, and the DDIM update of z_e.

Where abar_t = 0 (the first step of a zero-terminal-SNR schedule) the eps form is singular and the
latent is pure noise, so guidance is skipped there. No printing: progress and state go out through
``callback``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from mfollow.sampling import camera as camera_mode
from mfollow.sampling.ddim import alphas_at, ddim_step
from mfollow.sampling.passes import Losses, edit_prediction, features_of, paired_predictions, predict
from mfollow.sampling.state import Conditioning, SamplerSettings, SamplerState
from mfollow.sampling.sweep import Sweep
from mfollow.sampling.windows import Window

Callback = Callable[[dict[str, Any]], None]


def sample_paper(
    unet: Any,
    state: SamplerState,
    timesteps: list[int],
    alphas_cumprod: torch.Tensor,
    condition: Callable[[Window], Conditioning],
    settings: SamplerSettings,
    sweep: Sweep,
    *,
    camera: camera_mode.CameraState | None = None,
    callback: Callback | None = None,
    generator: torch.Generator | None = None,
) -> SamplerState:
    """Algorithm 1 from ``state.step`` to the end (``settings.guidance`` "paper", or "none": the
    ablation without guidance). ``state`` holds z_e and z_r (1, C, F, h, w); ``condition(window)``
    a window's :class:`Conditioning`; ``sweep`` runs a window's step over the clip's windows and
    blends them; ``camera`` (:func:`mfollow.sampling.camera.install`) injects the reconstruction's
    background keys and values from ``settings.camera_start`` on. ``callback`` receives
    ``{"step", "steps", "t", "state", "losses"}`` after every step. ``generator`` is not drawn
    from: after the initial latent Algorithm 1 is deterministic (the argument keeps the two samplers'
    signatures the same)."""
    n = len(timesteps)
    for i in range(state.step, n):
        t = timesteps[i]
        a_t, a_prev = alphas_at(alphas_cumprod, timesteps, i)
        guided = settings.guidance == "paper" and settings.guidance_scale != 0 and a_t > 1e-6
        cam = camera if camera is not None and i >= settings.camera_start * n else None
        # the reconstruction's and the unconditional pass batched: not under camera mode, where the
        # reconstruction's keys and values must be saved before the editing branch reads them
        paired = settings.batch_passes and settings.cfg != 1.0 and camera is None
        losses: list[Losses] = []

        def window_step(window: Window, z_e: torch.Tensor, z_r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            c = condition(window)
            with camera_mode.window(cam, c.M_e, c.M_r):  # the reconstruction saves K/V, the editing reads them
                v_u = None  # the unconditional pass, when it runs beside the reconstruction's
                if paired:  # 1. (and 2.'s unconditional pass) in one U-Net call of batch 2
                    out_r, v_u = paired_predictions(unet, z_r, z_e, t, c)
                else:
                    with torch.no_grad():  # 1. reconstruction branch: z_r -> z_r_prev, and F_r
                        out_r = predict(unet, z_r, t, c.context, c.pose_r, c)
                camera_mode.switch(cam, "inject")
                z_r_prev = ddim_step(z_r, out_r.sample, a_t, a_prev, None)
                F_r = [f.detach() for f in features_of(out_r)]
                # 2-3. editing branch: v (with CFG) and the guidance gradient of Eqs. 2-7
                v, g, loss = edit_prediction(unet, z_e, t, c, settings, F_r, guided, v_u)
            if loss is not None:
                losses.append(loss)
            # 4. Eq. 13 and the DDIM update of the editing branch
            z_e_prev = ddim_step(z_e, v, a_t, a_prev, None if g is None else settings.guidance_scale * g)
            return z_e_prev, z_r_prev

        state = sweep.step(state, window_step, f"at step {i + 1}/{n} (t={t})", last=i + 1 == n)
        if callback is not None:
            callback({"step": i + 1, "steps": n, "t": t, "state": state, "losses": losses})
    return state
