"""Editing a video end to end: inputs -> conditioning -> two-branch sampling -> decode -> mp4.

Inputs (:class:`EditInputs`): the source (a video, a still image, or a folder of frames), poses
of the source and of the edit (our keypoint JSON, or folders of pose images), and person masks
M_r (source) and M_e (source person in the edit pose) as folders of 8-bit PNGs. The official case
layout (``source_images/``, ``source_poses/``, ``target_aligned_poses/``, ``source_masks/``,
``predicted_masks/``) maps onto them (:func:`case_inputs`).

Length policy (``fit``): the output has the source's frames and timestamps; the edit poses and
masks are ``trim``-med to the shorter of the two, ``loop``-ed, or the last one ``hold``-ed to cover
the source. A still image stands for every source frame over the target's length and timing.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from mfollow.errors import MediaError, ProjectError, UsageError
from mfollow.models.bundle import ModelBundle
from mfollow.pose.keypoints import PoseSequence
from mfollow.pose.render import ColorOrder, render_sequence
from mfollow.sampling.sampler import Conditioning, SamplerSettings, SamplerState, initial_noise, sample, schedule
from mfollow.sampling.windows import Window, layout

Fit = Literal["trim", "loop", "hold"]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass(frozen=True)
class EditInputs:
    source: Path
    source_poses: Path
    edit_poses: Path
    source_masks: Path
    edit_masks: Path
    target: Path | None = None  # the motion video: timing for a still-image source


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
    image_fps: Fraction = Fraction(8)  # timing of a folder of frames (the official cases: 8 fps)
    device: str = "cpu"
    dtype: str = "float32"
    checkpointing: bool = True  # recompute activations in the guided backward pass: less memory
    camera: bool = False  # masked K/V injection from the reconstruction (large camera motion)


def case_inputs(case: Path, target: Path | None = None) -> EditInputs:
    """The official case-folder layout as :class:`EditInputs`."""
    names = ("source_images", "source_poses", "target_aligned_poses", "source_masks", "predicted_masks")
    missing = [n for n in names if not (case / n).is_dir()]
    if missing:
        raise MediaError(f"{case}: not an official case folder (missing {', '.join(missing)})")
    return EditInputs(*(case / n for n in names), target=target)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------- loading
@dataclass
class Clip:
    """Everything at working size: frames (N, H, W, 3) uint8, pose images, masks (N, H, W) bool,
    and the output timing."""

    frames: np.ndarray
    source_poses: np.ndarray
    edit_poses: np.ndarray
    source_masks: np.ndarray
    edit_masks: np.ndarray
    timestamps: list[int]
    time_base: Fraction
    audio_from: Path | None
    audio_window: tuple[float, float] | None


def _image_files(folder: Path) -> list[Path]:
    def order(p: Path) -> tuple[int, str]:  # frame_2 before frame_10
        digits = "".join(ch for ch in p.stem if ch.isdigit())
        return (int(digits) if digits else -1, p.name)

    files = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=order)
    if not files:
        raise MediaError(f"{folder}: holds no images")
    return files


def _load_images(folder: Path, size: tuple[int, int], resample: int, mode: str = "RGB") -> np.ndarray:
    out = []
    for p in _image_files(folder):
        try:
            with Image.open(p) as im:
                out.append(np.asarray(im.convert(mode).resize(size, resample)))
        except OSError as exc:
            raise MediaError(f"{p}: not a readable image") from exc
    return np.stack(out)


def _crop_to(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Scale an image to cover ``size`` (w, h) and crop the centre (the video policy)."""
    from mfollow.video import FramePolicy, working_geometry

    h, w = frame.shape[:2]
    geo = working_geometry(w, h, FramePolicy(size=size, multiple=1))
    scaled = np.asarray(Image.fromarray(frame).resize((geo.scaled_w, geo.scaled_h), Image.Resampling.BICUBIC))
    return scaled[geo.crop_y : geo.crop_y + geo.height, geo.crop_x : geo.crop_x + geo.width]


def _poses(path: Path, size: tuple[int, int], src_size: tuple[int, int], colors: ColorOrder) -> np.ndarray:
    """Pose images (N, H, W, 3) at working size from our JSON (mapped through the source crop) or
    from a folder of pose images (resized)."""
    if path.is_dir():
        return _load_images(path, size, Image.Resampling.BILINEAR)
    if not path.is_file():
        raise MediaError(f"{path}: no such pose file or folder")
    poses = PoseSequence.load(path)
    from mfollow.video import FramePolicy, working_geometry

    geo = working_geometry(src_size[0], src_size[1], FramePolicy(size=size, multiple=1))
    # normalised source coordinates -> normalised working coordinates (scale, then crop offset)
    sx, sy = geo.scaled_w / size[0], geo.scaled_h / size[1]
    ox, oy = geo.crop_x / size[0], geo.crop_y / size[1]

    def remap(a: np.ndarray) -> np.ndarray:
        out = a.copy()
        out[..., 0] = a[..., 0] * sx - ox
        out[..., 1] = a[..., 1] * sy - oy
        return out

    mapped = PoseSequence(
        size[0], size[1], remap(poses.body), remap(poses.feet), remap(poses.hands), poses.box,
        None if poses.face is None else remap(poses.face),
    )  # fmt: skip
    return np.stack(list(render_sequence(mapped, size[0], size[1], colors=colors)))


def _masks(path: Path, size: tuple[int, int]) -> np.ndarray:
    if not path.is_dir():
        raise MediaError(f"{path}: no such mask folder")
    return _load_images(path, size, Image.Resampling.NEAREST, mode="L") >= 128


def _fit(items: np.ndarray, n: int, fit: Fit, what: str, path: Path) -> np.ndarray:
    if len(items) >= n:
        return items[:n]
    if fit == "loop":
        return items[np.arange(n) % len(items)]
    if fit == "hold":
        return items[np.minimum(np.arange(n), len(items) - 1)]
    raise MediaError(f"{path}: {len(items)} {what} for {n} frames", hint="use --fit loop or --fit hold")


def load_clip(inputs: EditInputs, s: EditSettings) -> Clip:
    """Read and align every input at the working size (see the module docstring)."""
    from mfollow.video import FramePolicy, probe, read_frames, working_geometry

    src = inputs.source
    if not src.exists():
        raise MediaError(f"{src}: no such file or folder")
    policy = FramePolicy(short_side=s.short_side)
    offset = 0
    audio_from: Path | None = None
    audio_window = None
    if src.is_dir() or src.suffix.lower() in IMAGE_SUFFIXES:
        still = src.is_file()
        raw = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in ([src] if still else _image_files(src))])
        h0, w0 = raw.shape[1:3]
        geo = working_geometry(w0, h0, policy)
        size = (geo.width, geo.height)
        frames = np.stack([_crop_to(f, size) for f in raw])
        timing = probe(inputs.target) if inputs.target is not None else None
        if still:  # the image stands for every frame of the target's length
            edit_len = len(_poses(inputs.edit_poses, size, (w0, h0), s.colors))
            n = timing.frame_count if timing is not None else edit_len
            frames = np.repeat(frames, n, axis=0)
        if timing is not None:
            timestamps, time_base = list(timing.timestamps[: len(frames)]), timing.time_base
        else:
            timestamps, time_base = list(range(len(frames))), 1 / s.image_fps
        if len(timestamps) < len(frames):
            raise MediaError(f"{inputs.target}: {len(timestamps)} frames, fewer than the source's {len(frames)}")
    else:
        info = probe(src)
        stop = info.frame_count if s.frames is None else min(info.frame_count, s.start + s.frames)
        if s.start >= info.frame_count:
            raise UsageError(f"--start {s.start} is past the end of {src} ({info.frame_count} frames)")
        frames = read_frames(src, s.start, stop, policy)
        w0, h0 = info.display_width, info.display_height
        size = (frames.shape[2], frames.shape[1])
        ts = info.timestamps[s.start : stop]
        timestamps, time_base = [t - ts[0] for t in ts], info.time_base
        audio_from = src
        end = float(info.timestamps[stop] * info.time_base) if stop < info.frame_count else info.duration
        audio_window = (float(ts[0] * info.time_base), end)
        offset = s.start  # source poses and masks describe the whole source video
    n = len(frames)
    src_poses = _poses(inputs.source_poses, size, (w0, h0), s.colors)
    src_masks = _masks(inputs.source_masks, size)
    src_poses, src_masks = src_poses[offset:], src_masks[offset:]
    edit_poses = _poses(inputs.edit_poses, size, (w0, h0), s.colors)
    edit_masks = _masks(inputs.edit_masks, size)
    if s.fit == "trim":
        n = min(n, len(edit_poses), len(edit_masks))
    one = len(src_poses) == 1 and len(src_masks) == 1  # a still image's single pose and mask
    clip = Clip(
        frames=frames[:n],
        source_poses=_fit(src_poses, n, "hold" if one else "trim", "source poses", inputs.source_poses),
        edit_poses=_fit(edit_poses, n, s.fit, "edit poses", inputs.edit_poses),
        source_masks=_fit(src_masks, n, "hold" if one else "trim", "source masks", inputs.source_masks),
        edit_masks=_fit(edit_masks, n, s.fit, "edit masks", inputs.edit_masks),
        timestamps=timestamps[:n],
        time_base=time_base,
        audio_from=audio_from,
        audio_window=audio_window,
    )
    if s.max_frames is not None and n > s.max_frames:
        raise UsageError(
            f"{src}: {n} frames is more than one window ({s.max_frames})",
            hint="use 'mfollow long', or pick a range with --start/--frames",
        )
    for name in ("source_poses", "edit_poses", "source_masks", "edit_masks"):
        got = getattr(clip, name).shape[1:3]
        if got != frames.shape[1:3]:
            raise MediaError(
                f"{name.replace('_', ' ')}: size {got[::-1]} differs from the frames' {frames.shape[2:0:-1]}"
            )
    return clip


# ---------------------------------------------------------------------------- conditioning
class WindowConditioner:
    """Builds (and caches, within a memory budget) each window's :class:`Conditioning`."""

    def __init__(
        self, bundle: ModelBundle, clip: Clip, device: torch.device, dtype: torch.dtype, budget_bytes: int = 2**31
    ):
        self.b, self.clip, self.device, self.dtype, self.budget = bundle, clip, device, dtype, budget_bytes
        self._context: torch.Tensor | None = None
        self._cache: dict[tuple[int, int], Conditioning] = {}
        self._bytes = 0

    def context(self) -> torch.Tensor:
        """(1, F, D) CLIP embeddings of every source frame (computed once)."""
        if self._context is None:
            chunks = [self.b.clip_context(self.clip.frames[i : i + 16]) for i in range(0, len(self.clip.frames), 16)]
            self._context = torch.cat(chunks)[None].to(self.device, self.dtype)
        return self._context

    def _video(self, arr: np.ndarray, lo: float, hi: float) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(arr)).to(self.device, torch.float32) / 255.0
        x = x.permute(3, 0, 1, 2)[None]  # (N, H, W, 3) -> (1, 3, N, H, W)
        return (lo + (hi - lo) * x).to(self.dtype)

    def __call__(self, w: Window) -> Conditioning:
        key = (w.start, w.stop)
        if key in self._cache:
            return self._cache[key]
        sl = slice(w.start, w.stop)
        c = self.clip
        with torch.no_grad():
            pose_r = self.b.poctr(self._video(c.source_poses[sl], 0.0, 1.0))
            pose_e = self.b.poctr(self._video(c.edit_poses[sl], 0.0, 1.0))
            app = self.b.unet.appearance_features(self._video(c.frames[sl], -1.0, 1.0))
        M_e = torch.from_numpy(c.edit_masks[sl]).to(self.device, torch.float32)[None, None]  # (1, 1, N, H, W)
        M_r = torch.from_numpy(c.source_masks[sl]).to(self.device, torch.float32)[None, None]
        latent = pose_e.shape[-2:]
        M_e_latent = torch.nn.functional.interpolate(M_e[0], size=tuple(latent), mode="nearest")[None]
        cond = Conditioning(self.context()[:, sl], pose_r, pose_e, app, M_e, M_r, M_e_latent)
        size = sum(t.numel() * t.element_size() for t in (pose_r, pose_e, *app))
        if self._bytes + size <= self.budget:
            self._cache[key] = cond
            self._bytes += size
        return cond


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
        except (OSError, ValueError, KeyError) as exc:
            raise ProjectError(f"{self.path}: unreadable checkpoint ({exc})", hint="pass --restart") from exc

    def save(self, state: SamplerState) -> None:
        from mfollow.models.checkpoint import save_state_dict

        save_state_dict({"z_e": state.z_e, "z_r": state.z_r}, self.path, {"key": self.key, "step": str(state.step)})

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def run_key(inputs: EditInputs, s: EditSettings, weights: str) -> str:
    """What a run depends on: input file contents, settings and the weights' identity."""
    from mfollow.project import sha256_file

    h = hashlib.sha256()
    for p in (inputs.source, inputs.source_poses, inputs.edit_poses, inputs.source_masks, inputs.edit_masks):
        files = sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else [p]
        for q in files:
            h.update(q.name.encode() + sha256_file(q).encode())
    h.update(repr(sorted(asdict(s).items())).encode())
    h.update(weights.encode())
    return h.hexdigest()


def decode(bundle: ModelBundle, z: torch.Tensor, chunk: int = 4) -> np.ndarray:
    """(1, 4, F, h, w) latents -> (F, H, W, 3) uint8 frames through the VAE, a few at a time."""
    vae = bundle.vae
    scale = float(getattr(vae.config, "scaling_factor", 0.18215))
    out = []
    with torch.no_grad():
        for i in range(0, z.shape[2], chunk):
            part = z[0, :, i : i + chunk].permute(1, 0, 2, 3)  # (4, n, h, w) -> (n, 4, h, w)
            img = vae.decode(part.to(next(vae.parameters()).dtype) / scale).sample
            img = ((img.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)  # [-1, 1] -> 0..255
            out.append(img.permute(0, 2, 3, 1).cpu().numpy())  # (n, 3, H, W) -> (n, H, W, 3)
    return np.concatenate(out)


def run_edit(
    bundle: ModelBundle,
    inputs: EditInputs,
    s: EditSettings,
    output: Path,
    *,
    store: StateStore | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Edit and write ``output``; returns a JSON-ready report. With a ``store``, the sampler state
    is saved after every step and a compatible saved state is resumed."""
    from mfollow.video import VideoWriter

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    clip = load_clip(inputs, s)
    device, dtype = torch.device(s.device), getattr(torch, s.dtype)
    bundle.to(device, dtype)
    guided = s.sampler.guidance != "none"
    if s.checkpointing and guided:
        bundle.unet.enable_gradient_checkpointing()
    else:
        bundle.unet.disable_gradient_checkpointing()
    n, (h, w) = len(clip.frames), clip.frames.shape[1:3]
    timesteps, abar = schedule(bundle.scheduler_config, s.sampler.steps)
    state = store.load() if store is not None else None
    resumed_from = 0 if state is None else state.step
    if state is None:
        z = initial_noise(s.seed, n, (bundle.unet.config.in_channels, h // 8, w // 8)).to(device, dtype)
        state = SamplerState(z.clone(), z.clone(), 0)
    conditioner = WindowConditioner(bundle, clip, device, dtype)
    timings["prepare"] = time.perf_counter() - t0

    def step_done(event: dict[str, Any]) -> None:
        if store is not None:
            store.save(event["state"])
        if progress is not None:
            progress(event)

    t0 = time.perf_counter()
    from mfollow.sampling import camera as camera_mode

    cam = camera_mode.install(bundle.unet) if s.camera else None
    try:
        state = sample(
            bundle.unet, state, timesteps, abar, conditioner, replace(s.sampler, seed=s.seed),
            callback=step_done, camera=cam,
        )  # fmt: skip
    finally:
        if cam is not None:
            camera_mode.uninstall(bundle.unet)
    timings["sample"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    frames = decode(bundle, state.z_e)
    timings["decode"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rate = Fraction(n - 1) / ((clip.timestamps[-1] - clip.timestamps[0]) * clip.time_base) if n > 1 else None
    with VideoWriter(
        output, w, h, clip.time_base, audio_from=clip.audio_from, audio_window=clip.audio_window,
        rate_hint=None if rate is None else rate.limit_denominator(10_000),
    ) as writer:  # fmt: skip
        for frame, pts in zip(frames, clip.timestamps, strict=True):
            writer.write(frame, pts)
    timings["write"] = time.perf_counter() - t0
    if store is not None:
        store.clear()
    windows = layout(n, s.sampler.window, s.sampler.overlap)
    return {
        "output": str(output),
        "frames": n,
        "size": [w, h],
        "time_base": str(clip.time_base),
        "seed": s.seed,
        "preset": bundle.preset,
        "steps": s.sampler.steps,
        "guidance": s.sampler.guidance,
        "camera": s.camera,
        "resumed_from_step": resumed_from,
        "windows": [[win.start, win.stop] for win in windows],
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
