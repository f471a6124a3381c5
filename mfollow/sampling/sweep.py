"""One step over every window of a clip: each window's next latents, weighted and blended per
frame in window order (:mod:`mfollow.sampling.windows`), in one process or spread over the ranks of
a process group (:mod:`mfollow.sampling.spread`: the same bits for any number of ranks).

The samplers give a step of one window; a :class:`Sweep` runs it over the windows. What is
distributed, gathered or checked for NaN lives here, not in the algorithms.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from mfollow.sampling.spread import Spread
from mfollow.sampling.state import SamplerSettings, SamplerState, SamplingError
from mfollow.sampling.windows import Window, blend_weights, layout

if TYPE_CHECKING:
    from mfollow.runtime.distributed import Group

#: One window's step: (window, z_e, z_r of its frames (1, C, n, h, w)) -> next (z_e, z_r).
WindowStep = Callable[[Window, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


class Sweep:
    """The windows of a clip of ``frames`` frames (``settings.window``/``overlap``/``blend``) and
    who runs them: every window in this process, or (``group`` of several ranks) this rank's
    contiguous block. With ``gather_each_step`` rank 0 holds the whole state after every step
    (for its checkpoint); otherwise only after the last."""

    def __init__(
        self,
        frames: int,
        settings: SamplerSettings,
        device: torch.device,
        group: Group | None = None,
        gather_each_step: bool = False,
    ) -> None:
        self.windows = layout(frames, settings.window, settings.overlap)
        self.weights = [
            torch.from_numpy(w).to(device, torch.float32)
            for w in blend_weights(self.windows, frames, settings.blend, settings.overlap)
        ]
        self.spread = None if group is None or group.world == 1 else Spread(self.windows, group)
        self.gather_each_step = gather_each_step

    def step(self, state: SamplerState, window_step: WindowStep, where: str, last: bool) -> SamplerState:
        """``state`` advanced by one step: every window's ``window_step``, blended; refused with
        :class:`SamplingError` (naming ``where``) on NaN or infinite values."""

        def contribution(k: int) -> tuple[torch.Tensor, torch.Tensor]:  # window k's weighted share
            window, w = self.windows[k], self.weights[k]
            sl = slice(window.start, window.stop)
            ze_next, zr_next = window_step(window, state.z_e[:, :, sl], state.z_r[:, :, sl])
            shape = (1, 1, len(window), 1, 1)  # (n,) weights over the window's frames
            return ze_next * w.view(shape).to(ze_next.dtype), zr_next * w.view(shape).to(zr_next.dtype)

        def check(z_e: torch.Tensor, z_r: torch.Tensor) -> None:
            if not (torch.isfinite(z_e).all() and torch.isfinite(z_r).all()):
                raise SamplingError(f"sampling produced NaN or infinite values {where}")

        if self.spread is None:
            new_e, new_r = torch.zeros_like(state.z_e), torch.zeros_like(state.z_r)
            for k, window in enumerate(self.windows):  # in window order: the blend's order of addition
                ce, cr = contribution(k)
                new_e[:, :, window.start : window.stop] += ce
                new_r[:, :, window.start : window.stop] += cr
            check(new_e, new_r)
        else:
            new_e, new_r = self.spread.step(state, contribution, check)
        out = SamplerState(new_e, new_r, state.step + 1)
        if self.spread is not None and (self.gather_each_step or last):
            out = self.spread.gather(out)
        return out
