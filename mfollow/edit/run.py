"""Editing a video end to end: inputs -> conditioning -> two-branch sampling -> output.

Inputs are read lazily per window (:mod:`mfollow.edit.inputs`); each window's conditioning
(:mod:`mfollow.edit.conditioning`) is computed once and kept in memory for a single window or
written to a temporary folder when there are several; the output (:mod:`mfollow.edit.output`)
decodes and encodes a few frames at a time. Peak memory therefore depends on the window size, not
on the video's length (docs/editing.md, "Long videos").
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mfollow.edit.conditioning import WindowConditioner
from mfollow.edit.inputs import ClipSource, EditInputs, open_clip, pose_points
from mfollow.edit.output import write_output
from mfollow.edit.preview import clean_estimate, write_preview
from mfollow.edit.resume import StateStore
from mfollow.edit.settings import EditSettings
from mfollow.io.frame_folder import is_frame_folder
from mfollow.io.video.write import even_size
from mfollow.models.bundle import ModelBundle
from mfollow.preprocess.project import SPILL_PREFIX
from mfollow.runtime.determinism import deterministic_kernels
from mfollow.runtime.errors import UsageError
from mfollow.sampling import camera as camera_mode
from mfollow.sampling.ddim import initial_noise, release_noise, schedule
from mfollow.sampling.sampler import sample
from mfollow.sampling.spread import share
from mfollow.sampling.state import SamplerState
from mfollow.sampling.windows import layout

if TYPE_CHECKING:
    from mfollow.runtime.distributed import Group


def run_edit(
    bundle: ModelBundle,
    inputs: EditInputs,
    s: EditSettings,
    output: Path,
    *,
    store: StateStore | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    clip: ClipSource | None = None,
    work_dir: Path | None = None,
    group: Group | None = None,
    deterministic: bool = True,
) -> dict[str, Any]:
    """Edit and write ``output``; returns a JSON-ready report. With a ``store``, the sampler state
    is saved after every step and a compatible saved state is resumed. ``clip``: the inputs
    already opened by :func:`mfollow.edit.inputs.open_clip` with ``s``. ``work_dir``: where the
    conditioning of several windows is spilled (a project's ``long/``, so that ``mfollow clean``
    removes what a killed run left; stale spills there are removed first); default: the system's
    temporary folder. On CUDA the edit runs with deterministic kernels (:mod:`mfollow.runtime.determinism`).

    With a ``group`` of several ranks (``torchrun``), every rank calls this with the same
    arguments; each samples its share of the windows (:mod:`mfollow.sampling.spread`); rank 0
    alone holds the ``store`` (its checkpoint, read and broadcast on resume), decodes and writes
    ``output``; the other ranks return ``{"rank": r}``. ``deterministic=False`` keeps PyTorch's
    default kernels (what ``benchmarks/determinism.py`` compares against)."""
    # the guidance differentiates through the U-Net: autograd must be on even where the caller
    # runs under torch.inference_mode() (as ComfyUI runs its nodes)
    with torch.inference_mode(False), torch.enable_grad():
        if not deterministic:
            return _run_edit(bundle, inputs, s, output, store, progress, clip, work_dir, group)
        with deterministic_kernels(torch.device(s.device)):
            return _run_edit(bundle, inputs, s, output, store, progress, clip, work_dir, group)


def _spill_folder(work_dir: Path | None, group: Group | None) -> tempfile.TemporaryDirectory[str]:
    """A fresh ``SPILL_PREFIX*`` folder in ``work_dir`` (older ones there removed by rank 0 first:
    the caller holds the project's lock, so no live run owns them), or in the system's temporary
    folder."""
    if work_dir is None:
        return tempfile.TemporaryDirectory(prefix=SPILL_PREFIX)
    main = group is None or group.main
    if main:
        work_dir.mkdir(parents=True, exist_ok=True)
        for stale in work_dir.glob(f"{SPILL_PREFIX}*"):
            shutil.rmtree(stale, ignore_errors=True)
    if group is not None and group.world > 1:
        group.agree(lambda: None)  # no rank makes its folder before the stale ones are gone
    return tempfile.TemporaryDirectory(prefix=f"{SPILL_PREFIX}{'' if main else f'r{group.rank}-'}", dir=work_dir)  # type: ignore[union-attr]


def _run_edit(
    bundle: ModelBundle,
    inputs: EditInputs,
    s: EditSettings,
    output: Path,
    store: StateStore | None,
    progress: Callable[[dict[str, Any]], None] | None,
    clip: ClipSource | None,
    work_dir: Path | None,
    group: Group | None,
) -> dict[str, Any]:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    clip = clip or open_clip(inputs, s)
    if s.warp_person and (pose_points(clip.source_poses, 0, 1) is None or pose_points(clip.edit_poses, 0, 1) is None):
        raise UsageError("warp_person moves the person along keypoints; these poses are pose images")
    device, dtype = torch.device(s.device), getattr(torch, s.dtype)

    def phase(names: tuple[str, ...]) -> None:
        """With ``--offload``, only ``names`` on the device (ModelBundle.place): the CLIP encoder for
        the context, PoCtr and the U-Net's ReCtr for the conditioning, the U-Net while sampling,
        the VAE to decode."""
        if s.offload:
            bundle.place(names, device, dtype)

    if s.offload:
        phase(())  # everything on the CPU until a phase needs it
    else:
        bundle.to(device, dtype)
    guided = s.sampler.guidance != "none"
    if s.checkpointing and guided:
        bundle.unet.enable_gradient_checkpointing()
    else:
        bundle.unet.disable_gradient_checkpointing()
    n, (w, h) = clip.n, clip.size
    windows = layout(n, s.sampler.window, s.sampler.overlap)
    if s.noise == "release" and (len(windows) > 1 or store is not None):
        raise UsageError("noise 'release' is the release's one stream for one window; this run has windows")
    timesteps, abar = schedule(bundle.scheduler_config, s.sampler.steps)
    spread = group is not None and group.world > 1
    checkpointed = False  # whether rank 0 needs the whole state after every step (for its store)
    if spread:  # rank 0 reads the checkpoint (errors on every rank), every rank gets it
        state, checkpointed = group.on_main(  # type: ignore[union-attr]
            lambda: (None if store is None else store.load(), store is not None)
        )
    else:
        state = store.load() if store is not None else None
    resumed_from = 0 if state is None else state.step
    if state is not None:  # the file holds CPU tensors
        state = SamplerState(state.z_e.to(device, torch.float32), state.z_r.to(device, torch.float32), state.step)
    generator = None  # the release's noise stream (noise "release"), drawn in step order
    if state is None:
        k, channels = bundle.vae_factor, bundle.unet.config.in_channels
        if s.noise == "release":
            z, generator = release_noise(s.seed, (1, channels, n, h // k, w // k))
        else:
            z = initial_noise(s.seed, n, (channels, h // k, w // k))
        z = z.to(device, torch.float32)  # latents are float32 whatever the models' dtype (passes.predict)
        state = SamplerState(z.clone(), z.clone(), 0)
    world, rank = (group.world, group.rank) if group is not None else (1, 0)
    mine = share(len(windows), world)[rank]

    before = {"state": state}  # the state the step started from (for the preview's x0)
    middles = [(windows[k].start + windows[k].stop - 1) // 2 for k in range(len(windows))]

    def step_done(event: dict[str, Any]) -> None:
        if store is not None:
            store.save(event["state"])
        done, total = event["step"], event["steps"]
        if s.preview is not None and (group is None or group.main) and (done % s.preview.every == 0 or done == total):
            a_t = float(abar[timesteps[done - 1]])
            a_prev = float(abar[timesteps[done]]) if done < total else 1.0
            x0 = clean_estimate(before["state"].z_e, event["state"].z_e, a_t, a_prev)
            write_preview(bundle, x0, sorted(set(middles)), s.preview, done, total)
        before["state"] = event["state"]
        if progress is not None:
            progress(event)

    with _spill_folder(work_dir if len(windows) > 1 else None, group) as spill:
        conditioner = WindowConditioner(bundle, clip, device, dtype, None if len(windows) == 1 else Path(spill))
        phase(("image_encoder",))
        for k in mine:  # this process's windows' CLIP context, before the clock starts
            conditioner.context(windows[k])
        if s.offload:  # PoCtr and ReCtr once, before sampling, so that only the U-Net stays
            phase(("poctr", "unet"))
            for k in mine:
                conditioner(windows[k])
        phase(("unet",))
        timings["prepare"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        cam = camera_mode.install(bundle.unet) if s.camera else None
        try:
            state = sample(
                bundle.unet, state, timesteps, abar, conditioner, replace(s.sampler, seed=s.seed),
                callback=step_done, camera=cam, group=group, gather_each_step=checkpointed, generator=generator,
            )  # fmt: skip
        finally:
            if cam is not None:
                camera_mode.uninstall(bundle.unet)
        timings["sample"] = time.perf_counter() - t0
    if group is not None and not group.main:  # rank 0 decodes and writes
        return {"rank": group.rank, "windows": list(mine)}
    t0 = time.perf_counter()
    phase(("vae",))
    (out_w, out_h), margin, rate = write_output(bundle, clip, state.z_e, s, output)
    timings["decode_write"] = time.perf_counter() - t0
    if store is not None:
        store.clear()
    return {
        "output": str(output),
        "frames": n,
        "source_frames": clip.source_frames,  # more than ``frames``: --fit trim dropped the rest
        # H.264 needs even sides: an odd one is padded by one (PNG frames keep theirs)
        "size": [out_w, out_h] if is_frame_folder(output) else list(even_size(out_w, out_h)),
        "working_size": [w, h],
        "time_base": str(clip.time_base),
        "fps": None if rate is None else round(float(rate), 6),
        "seed": s.seed,
        "preset": bundle.preset,
        "dtype": s.dtype,  # the networks' (--dtype auto resolved); latents and guidance are float32
        "steps": s.sampler.steps,
        "cfg": s.sampler.cfg,
        "guidance": s.sampler.guidance,
        "guidance_scale": s.sampler.guidance_scale,
        "camera": s.camera,
        "composite_margin": margin,  # None: not composited
        "warp_person": s.warp_person,
        "resumed_from_step": resumed_from,
        "windows": [[win.start, win.stop] for win in windows],
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "world_size": world,
    }
