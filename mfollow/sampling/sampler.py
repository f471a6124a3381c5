"""Choosing the sampler: ``settings.guidance`` "paper" or "none" runs Algorithm 1
(:func:`mfollow.sampling.paper.sample_paper`), "official" the release's loop
(:func:`mfollow.sampling.official.sample_official`); both over a :class:`mfollow.sampling.sweep.Sweep`
of the clip's windows."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from mfollow.sampling.camera import CameraState
from mfollow.sampling.official import sample_official
from mfollow.sampling.paper import sample_paper
from mfollow.sampling.state import Conditioning, SamplerSettings, SamplerState
from mfollow.sampling.sweep import Sweep
from mfollow.sampling.windows import Window

if TYPE_CHECKING:
    from mfollow.runtime.distributed import Group

SAMPLERS = {"paper": sample_paper, "none": sample_paper, "official": sample_official}


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
    generator: torch.Generator | None = None,
) -> SamplerState:
    """Run (or continue) the sampler of ``settings.guidance`` from ``state.step`` to the end.

    With a ``group`` of several ranks (:mod:`mfollow.runtime.distributed`), each rank runs a
    contiguous block of the windows and the result is the same bits for any number of ranks; the
    state is complete on rank 0 after the last step (and after every step with
    ``gather_each_step``, for its checkpoint). Raises :class:`mfollow.sampling.state.SamplingError`
    on NaN/inf, naming the step. ``generator``: the release's noise stream
    (:func:`mfollow.sampling.ddim.release_noise`), for ``official`` in one window."""
    sweep = Sweep(state.z_e.shape[2], settings, state.z_e.device, group, gather_each_step)
    run = SAMPLERS[settings.guidance]
    return run(
        unet, state, timesteps, alphas_cumprod, condition, settings, sweep, camera=camera, callback=callback,
        generator=generator,
    )  # fmt: skip
