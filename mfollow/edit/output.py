"""The edit's output: decode the latents, paste the source person moved into the edit pose
(``--warp-person``), restore the source's size, composite over the source's own pixels outside the
people, and encode with the source's timestamps and audio; a few frames at a time."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from mfollow.edit.compositing import composite, default_margin, feathered_alpha, person_alpha
from mfollow.edit.inputs import ClipSource, pose_points
from mfollow.edit.settings import EditSettings
from mfollow.io.frame_folder import FrameFolderWriter, is_frame_folder
from mfollow.io.video import VideoWriter
from mfollow.io.video.read import Geometry, restore_frame
from mfollow.io.video.write import average_rate
from mfollow.models.bundle import ModelBundle
from mfollow.preprocess.pose.warp import warp_person


def decode(bundle: ModelBundle, z: torch.Tensor, chunk: int = 4) -> np.ndarray:
    """(1, C, F, h, w) latents -> (F, H, W, 3) uint8 frames through the VAE, a few at a time."""
    vae, scale = bundle.vae, bundle.latent_scale
    out = []
    with torch.no_grad():
        for i in range(0, z.shape[2], chunk):
            part = z[0, :, i : i + chunk].permute(1, 0, 2, 3)  # (C, n, h, w) -> (n, C, h, w)
            p = next(vae.parameters())  # the VAE's device: the run's, or the CPU while offloaded
            img = vae.decode(part.to(p.device, p.dtype) / scale).sample
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

    src_kp, edit_kp = pose_points(clip.source_poses, start, stop), pose_points(clip.edit_poses, start, stop)
    assert src_kp is not None and edit_kp is not None
    out = np.empty_like(frames)
    for i in range(stop - start):
        person, moved = warp_person(sources[i], M_r[i], src_kp, edit_kp, i)
        out[i] = composite(person, frames[i], feathered_alpha(moved & M_e[i]))
    return out


def write_output(
    bundle: ModelBundle, clip: ClipSource, z_e: torch.Tensor, s: EditSettings, output: Path
) -> tuple[tuple[int, int], int | None, Fraction | None]:
    """Decode the edit latents ``z_e`` (1, C, N, h, w) a few frames at a time, paste the moved
    source person (``s.warp_person``), restore the source's size (``s.output_size``), composite
    over the source's own pixels (``s.composite``) and encode ``output`` with the source's
    timestamps and audio. Returns the written (width, height), the compositing margin (None: not
    composited) and the average frame rate. ``output`` is an .mp4, or a folder of PNG frames
    (a name without a suffix: :mod:`mfollow.io.frame_folder`)."""
    n, (w, h) = clip.n, clip.size
    rate = average_rate(clip.timestamps, clip.time_base)
    geo = clip.geometry
    restore = s.output_size == "source"
    margin = None
    if s.composite:
        margin = default_margin(min(w, h)) if s.composite_margin is None else s.composite_margin
    out_w, out_h = (geo.src_w, geo.src_h) if restore else (w, h)
    writer_type = FrameFolderWriter if is_frame_folder(output) else VideoWriter  # PNG frames, or H.264
    with writer_type(
        output, out_w, out_h, time_base=clip.time_base, audio_from=clip.audio_from, audio_window=clip.audio_window,
        rate_hint=rate,
    ) as writer:  # fmt: skip
        for start in range(0, n, s.decode_chunk):  # decode and encode a few frames at a time
            stop = min(n, start + s.decode_chunk)
            frames = decode(bundle, z_e[:, :, start:stop], chunk=s.decode_chunk)
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
    return (out_w, out_h), margin, rate
