"""Editing a video end to end: inputs -> conditioning -> two-branch sampling -> decode -> mp4.

Inputs are read lazily per window (:mod:`mfollow.edit.inputs`); each window's conditioning (PoCtr,
ReCtr, masks) is computed once and kept in memory for a single window or written to a temporary
folder when there are several; decoding and encoding stream a few frames at a time. Peak memory
therefore depends on the window size, not on the video's length (design §5).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from mfollow.edit.compositing import composite, default_margin, feathered_alpha, person_alpha
from mfollow.edit.inputs import ClipSource, EditInputs, Fit, case_inputs, load_clip, open_clip, pose_points
from mfollow.edit.preview import PreviewSettings, clean_estimate, write_preview
from mfollow.io.media import IMAGE_FPS
from mfollow.io.video.read import Geometry
from mfollow.models.bundle import ModelBundle
from mfollow.preprocess.pose.render import ColorOrder
from mfollow.preprocess.project import SPILL_PREFIX
from mfollow.runtime.errors import MediaError, ProjectError, UsageError
from mfollow.sampling.sampler import Conditioning, SamplerSettings, SamplerState, initial_noise, sample, schedule
from mfollow.sampling.spread import share
from mfollow.sampling.windows import Window, layout

if TYPE_CHECKING:
    from mfollow.runtime.distributed import Group

DECODE_CHUNK = 4
CONTEXT_CHUNK = 16  # source frames per CLIP image-encoder batch
OUTPUT_ONLY = ("output_size", "composite", "composite_margin", "warp_person", "preview")  # not part of the sampling
__all__ = ["EditInputs", "EditSettings", "StateStore", "case_inputs", "load_clip", "run_edit", "run_key"]


@dataclass(frozen=True)
class EditSettings:
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    seed: int = 0
    short_side: int = 512  # working size: short side, long side to a multiple of 64 (crop)
    start: int = 0
    frames: int | None = None  # how many source frames (default: all from ``start``)
    max_frames: int | None = None  # refuse longer clips (``edit`` sets 24)
    fit: Fit = "trim"
    colors: ColorOrder = "official"
    image_fps: Fraction = IMAGE_FPS  # timing of a folder of frames without a target video
    device: str = "cpu"
    dtype: str = "float32"
    checkpointing: bool = True  # recompute activations in the guided backward pass: less memory
    camera: bool = False  # masked K/V injection from the reconstruction (large camera motion)
    output_size: Literal["source", "working"] = "source"  # write at the source's size or the model's
    composite: bool = True  # the source's own pixels outside the people (mfollow.edit.compositing)
    composite_margin: int | None = None  # band width in working pixels (None: 1/64 of the short side)
    warp_person: bool = False  # the source person's own pixels moved into the edit pose (mfollow.preprocess.pose.warp)
    preview: PreviewSettings | None = None  # clean-frame estimates every K steps (mfollow.edit.preview)


# ---------------------------------------------------------------------------- conditioning
class WindowConditioner:
    """Builds each window's :class:`Conditioning` once; keeps it in memory when there is a single
    window, otherwise writes it to ``spill_dir`` and reads it back on later steps."""

    def __init__(
        self, bundle: ModelBundle, clip: ClipSource, device: torch.device, dtype: torch.dtype, spill_dir: Path | None
    ) -> None:
        self.b, self.clip, self.device, self.dtype, self.spill = bundle, clip, device, dtype, spill_dir
        self._context: dict[int, torch.Tensor] = {}  # chunk index -> (n, D)
        self._memory: dict[tuple[int, int], Conditioning] = {}

    def context(self, w: Window) -> torch.Tensor:
        """(1, N, D) CLIP embeddings of the window's source frames. Computed once per chunk of 16
        frames on a fixed grid (frames 16k..16k+15), so a frame's embedding does not depend on
        which windows a process runs."""
        n = self.clip.n
        for k in range(w.start // CONTEXT_CHUNK, (w.stop - 1) // CONTEXT_CHUNK + 1):
            if k not in self._context:
                a, b = k * CONTEXT_CHUNK, min(n, (k + 1) * CONTEXT_CHUNK)
                self._context[k] = self.b.clip_context(self.clip.frames.get(a, b)).to(self.device, self.dtype)
        first = w.start // CONTEXT_CHUNK
        chunks = torch.cat([self._context[k] for k in range(first, (w.stop - 1) // CONTEXT_CHUNK + 1)])
        return chunks[w.start - first * CONTEXT_CHUNK : w.stop - first * CONTEXT_CHUNK][None]  # (N, D) -> (1, N, D)

    def _video(self, arr: np.ndarray, lo: float, hi: float) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(arr)).to(self.device, torch.float32) / 255.0
        x = x.permute(3, 0, 1, 2)[None]  # (N, H, W, 3) -> (1, 3, N, H, W)
        return (lo + (hi - lo) * x).to(self.dtype)

    def _build(self, w: Window) -> dict[str, torch.Tensor]:
        c, a, b = self.clip, w.start, w.stop
        with torch.no_grad():
            out = {"pose_e": self.b.poctr(self._video(c.edit_poses.get(a, b), 0.0, 1.0))}
            source_pose = self._video(c.source_poses.get(a, b), 0.0, 1.0)
            out["pose_r"] = self.b.poctr(source_pose)
            frames = self._video(c.frames.get(a, b), -1.0, 1.0)
            for k, f in enumerate(self.b.unet.appearance_features(frames, source_pose)):
                out[f"appearance.{k}"] = f
        out["M_e"] = torch.from_numpy(c.edit_masks.get(a, b)).to(self.device, torch.float32)[None, None]
        out["M_r"] = torch.from_numpy(c.source_masks.get(a, b)).to(self.device, torch.float32)[None, None]
        return out

    def _pack(self, w: Window, t: dict[str, torch.Tensor]) -> Conditioning:
        M_e = t["M_e"]  # (1, 1, N, H, W)
        latent = tuple(t["pose_e"].shape[-2:])
        M_e_latent = torch.nn.functional.interpolate(M_e[0], size=latent, mode="nearest")[None]
        appearance = [t[f"appearance.{k}"] for k in range(sum(key.startswith("appearance.") for key in t))]
        return Conditioning(self.context(w), t["pose_r"], t["pose_e"], appearance, M_e, t["M_r"], M_e_latent)

    def __call__(self, w: Window) -> Conditioning:
        key = (w.start, w.stop)
        if key in self._memory:
            return self._memory[key]
        if self.spill is None:
            self._memory[key] = self._pack(w, self._build(w))
            return self._memory[key]
        from safetensors.torch import load_file, save_file

        path = self.spill / f"{w.start}-{w.stop}.safetensors"
        if path.is_file():
            tensors = load_file(str(path), device=str(self.device))
        else:
            tensors = self._build(w)
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
        return self._pack(w, tensors)


# ------------------------------------------------------------------------------- the edit
class StateStore:
    """A sampler checkpoint file (safetensors) tagged with the run's key: resuming is only
    allowed for the same inputs and settings."""

    def __init__(self, path: Path, key: str) -> None:
        self.path, self.key = path, key

    def load(self) -> SamplerState | None:
        from safetensors import safe_open

        if not self.path.is_file():
            return None
        try:
            with safe_open(str(self.path), framework="pt") as fh:
                meta = fh.metadata() or {}
                if meta.get("key") != self.key:
                    raise ProjectError(
                        f"{self.path}: a checkpoint from different inputs or settings",
                        hint="run with the original settings to resume, or pass --restart",
                    )
                return SamplerState(fh.get_tensor("z_e"), fh.get_tensor("z_r"), int(meta["step"]))
        except ProjectError:
            raise
        except Exception as exc:  # OSError, a bad header (safetensors' SafetensorError), missing keys
            raise ProjectError(f"{self.path}: unreadable checkpoint ({exc})", hint="pass --restart") from exc

    def save(self, state: SamplerState) -> None:
        from mfollow.models.checkpoint import save_state_dict

        save_state_dict({"z_e": state.z_e, "z_r": state.z_r}, self.path, {"key": self.key, "step": str(state.step)})

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def run_key(inputs: EditInputs, s: EditSettings, weights: str) -> str:
    """What a run's sampler state depends on: input file (or folder) contents, settings and the
    weights' identity. Settings that only shape the written frames (:data:`OUTPUT_ONLY`) are left
    out, so an interrupted ``long`` can resume with, e.g., ``--no-composite``."""
    from mfollow.io.hashing import fingerprint

    h = hashlib.sha256()
    for p in (inputs.source, inputs.source_poses, inputs.edit_poses, inputs.source_masks, inputs.edit_masks):
        if not p.exists():
            raise MediaError(f"{p}: no such file or folder")
        h.update(fingerprint(p).sha256.encode())
    sampling = {k: v for k, v in asdict(s).items() if k not in OUTPUT_ONLY}
    h.update(repr(sorted(sampling.items())).encode())
    h.update(weights.encode())
    return h.hexdigest()


def decode(bundle: ModelBundle, z: torch.Tensor, chunk: int = 4) -> np.ndarray:
    """(1, C, F, h, w) latents -> (F, H, W, 3) uint8 frames through the VAE, a few at a time."""
    vae, scale = bundle.vae, bundle.latent_scale
    out = []
    with torch.no_grad():
        for i in range(0, z.shape[2], chunk):
            part = z[0, :, i : i + chunk].permute(1, 0, 2, 3)  # (C, n, h, w) -> (n, C, h, w)
            img = vae.decode(part.to(next(vae.parameters()).dtype) / scale).sample
            img = ((img.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # [-1, 1] -> 0..255
            out.append(img.permute(0, 2, 3, 1).cpu().numpy())  # (n, 3, H, W) -> (n, H, W, 3)
    return np.concatenate(out)


def _composited(frame: np.ndarray, source: np.ndarray, alpha: np.ndarray, geo: Geometry | None) -> np.ndarray:
    """One (H, W, 3) frame over its source frame with a working-size (h, w) alpha; with ``geo``
    (writing at the source's size) alpha goes there as 8-bit, 0 where the crop cut away."""
    from mfollow.io.video.read import restore_frame

    if geo is not None:
        alpha8 = np.rint(alpha * 255).astype(np.uint8)
        alpha = restore_frame(alpha8, np.zeros(source.shape[:2], np.uint8), geo)  # type: ignore[assignment]
    return composite(frame, source, alpha)


def _warped(
    clip: ClipSource, frames: np.ndarray, sources: np.ndarray, M_r: np.ndarray, M_e: np.ndarray, start: int, stop: int
) -> np.ndarray:
    """Decoded working-size (n, H, W, 3) frames ``start`` .. ``stop`` with the source person moved
    into the edit pose (:func:`mfollow.preprocess.pose.warp.warp_person` of ``sources`` (n, H, W, 3) and
    ``M_r`` (n, H, W), the same frames' source and mask) pasted over them within the edit person
    M_e (n, H, W), with a soft edge (:func:`mfollow.edit.compositing.feathered_alpha`). Both pose
    inputs are keypoints (checked before sampling)."""
    from mfollow.preprocess.pose.warp import warp_person

    src_kp, edit_kp = pose_points(clip.source_poses, start, stop), pose_points(clip.edit_poses, start, stop)
    assert src_kp is not None and edit_kp is not None
    out = np.empty_like(frames)
    for i in range(stop - start):
        person, moved = warp_person(sources[i], M_r[i], src_kp, edit_kp, i)
        out[i] = composite(person, frames[i], feathered_alpha(moved & M_e[i]))
    return out


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
    ``output``; the other ranks return ``{"rank": r}``."""
    from mfollow.runtime.determinism import deterministic_kernels

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
    from mfollow.io.video import VideoWriter
    from mfollow.io.video.read import restore_frame
    from mfollow.io.video.write import average_rate

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    clip = clip or open_clip(inputs, s)
    if s.warp_person and (pose_points(clip.source_poses, 0, 1) is None or pose_points(clip.edit_poses, 0, 1) is None):
        raise UsageError("warp_person moves the person along keypoints; these poses are pose images")
    device, dtype = torch.device(s.device), getattr(torch, s.dtype)
    bundle.to(device, dtype)
    guided = s.sampler.guidance != "none"
    if s.checkpointing and guided:
        bundle.unet.enable_gradient_checkpointing()
    else:
        bundle.unet.disable_gradient_checkpointing()
    n, (w, h) = clip.n, clip.size
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
        state = SamplerState(state.z_e.to(device, dtype), state.z_r.to(device, dtype), state.step)
    else:
        k = bundle.vae_factor
        z = initial_noise(s.seed, n, (bundle.unet.config.in_channels, h // k, w // k)).to(device, dtype)
        state = SamplerState(z.clone(), z.clone(), 0)
    windows = layout(n, s.sampler.window, s.sampler.overlap)
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

    from mfollow.sampling import camera as camera_mode

    with _spill_folder(work_dir if len(windows) > 1 else None, group) as spill:
        conditioner = WindowConditioner(bundle, clip, device, dtype, None if len(windows) == 1 else Path(spill))
        for k in mine:  # this process's windows' CLIP context, before the clock starts
            conditioner.context(windows[k])
        timings["prepare"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        cam = camera_mode.install(bundle.unet) if s.camera else None
        try:
            state = sample(
                bundle.unet, state, timesteps, abar, conditioner, replace(s.sampler, seed=s.seed),
                callback=step_done, camera=cam, group=group, gather_each_step=checkpointed,
            )  # fmt: skip
        finally:
            if cam is not None:
                camera_mode.uninstall(bundle.unet)
        timings["sample"] = time.perf_counter() - t0
    if group is not None and not group.main:  # rank 0 decodes and writes
        return {"rank": group.rank, "windows": list(mine)}
    t0 = time.perf_counter()
    rate = average_rate(clip.timestamps, clip.time_base)
    geo = clip.geometry
    restore = s.output_size == "source"
    margin = None
    if s.composite:
        margin = default_margin(min(w, h)) if s.composite_margin is None else s.composite_margin
    out_w, out_h = (geo.src_w, geo.src_h) if restore else (w, h)
    with VideoWriter(
        output, out_w, out_h, clip.time_base, audio_from=clip.audio_from, audio_window=clip.audio_window,
        rate_hint=rate,
    ) as writer:  # fmt: skip
        for start in range(0, n, DECODE_CHUNK):  # decode and encode a few frames at a time
            stop = min(n, start + DECODE_CHUNK)
            frames = decode(bundle, state.z_e[:, :, start:stop])
            # read once for the warp and the compositing (which needs the working frames only
            # when writing at the working size)
            M_r = clip.source_masks.get(start, stop) if s.warp_person or margin is not None else None
            M_e = clip.edit_masks.get(start, stop) if s.warp_person or margin is not None else None
            sources = clip.frames.get(start, stop) if s.warp_person or (margin is not None and not restore) else None
            if s.warp_person:  # the source person's own pixels, moved, over the model's drawing of them
                assert sources is not None and M_r is not None and M_e is not None
                frames = _warped(clip, frames, sources, M_r, M_e, start, stop)
            if restore:  # back at the source frames' size; margins cropped away stay the source's
                originals = clip.original.get(start, stop)
                frames = np.stack([restore_frame(f, o, geo) for f, o in zip(frames, originals, strict=True)])
            if margin is not None:  # the model's output on and around the people, the source elsewhere
                assert M_e is not None and M_r is not None
                alpha = person_alpha(M_e, M_r, margin)
                base, to = (originals, geo) if restore else (sources, None)
                frames = np.stack([_composited(f, b, a, to) for f, b, a in zip(frames, base, alpha, strict=True)])
            for frame, pts in zip(frames, clip.timestamps[start:stop], strict=True):
                writer.write(frame, pts)
    timings["decode_write"] = time.perf_counter() - t0
    if store is not None:
        store.clear()
    return {
        "output": str(output),
        "frames": n,
        "size": [out_w, out_h],
        "working_size": [w, h],
        "time_base": str(clip.time_base),
        "fps": None if rate is None else round(float(rate), 6),
        "seed": s.seed,
        "preset": bundle.preset,
        "steps": s.sampler.steps,
        "guidance": s.sampler.guidance,
        "camera": s.camera,
        "composite_margin": margin,  # None: not composited
        "warp_person": s.warp_person,
        "resumed_from_step": resumed_from,
        "windows": [[win.start, win.stop] for win in windows],
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "world_size": world,
    }
