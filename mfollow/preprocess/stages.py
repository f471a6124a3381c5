"""The preprocessing stages, cached in a project directory (docs/method.md, §1; docs/preprocessing.md).

- ``pose-source`` / ``pose-target``: the poses of each video (``file``: our keypoint JSON or an
  OpenPose output folder; ``dwpose`` or ``mediapipe``: estimated), as ``poses.json``, with an
  optional rendered preview video;
- ``align``: the target's poses moved onto the source person (:mod:`mfollow.preprocess.pose.align`):
  ``edit_poses.json`` and ``transform.json``;
- ``mask``: ``source_masks/`` (M_r: from files, or segmented by mediapipe) and ``edit_masks/``
  (M_e: ``warp`` of the target's masks, ``hull`` of the edit poses, ``segdit``, or files), 8-bit PNGs.

Each stage is a pure function of its inputs, parameters and code version: a rerun with the same key
is a cache hit; any change makes it (and everything after it) stale.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from mfollow.preprocess import EditMaskSource, Role
from mfollow.preprocess.masks.files import mask_name, read_masks, write_mask
from mfollow.preprocess.pose import PoseSource
from mfollow.preprocess.pose.align import AlignSettings, Transform, align
from mfollow.preprocess.pose.camera_track import CameraTrack, estimate_track
from mfollow.preprocess.pose.keypoints import PoseSequence
from mfollow.preprocess.project import STAGE_CODE_VERSIONS, Project, StageRef, StageSpec
from mfollow.runtime.errors import MediaError, UsageError


def _run(proj: Project, spec: StageSpec, build: Any, force: bool) -> dict[str, Any]:
    """Run ``build(folder)`` into the stage unless it is fresh; report the cache decision."""
    key = proj.key(spec)
    hit = proj.is_fresh(spec.name, key) and not force
    if not hit:
        with proj.stage_writer(spec, key) as out:
            build(out)
    else:
        proj.save()  # keep refreshed fingerprints
    return {
        "stage": spec.name,
        "cache": "hit" if hit else "miss",
        "key": key,
        "outputs": {k: str(v) for k, v in proj.outputs(spec.name).items()},
    }


def pose_stage(
    root: Path,
    video: Path,
    role: Role,
    keypoints: Path | None = None,
    *,
    backend: PoseSource = "file",
    weights: Path | None = None,
    person: str | int = "largest",
    preview: bool = False,
    smooth: bool = False,
    force: bool = False,
) -> dict[str, Any]:
    """Poses of ``video`` (a video, a folder of frames or an image: :mod:`mfollow.io.media`): from a
    keypoint file or OpenPose folder (``file``), or estimated by DWPose or mediapipe (frames without
    a person are filled and listed in ``missing_frames``)."""
    from mfollow.io.media import media_info

    info = media_info(video)
    inputs: dict[str, Any] = {"video": video}
    hashes: dict[str, str] = {}
    folder: Path | None = None
    if backend == "file":
        if keypoints is None or not keypoints.exists():
            raise MediaError(f"{keypoints}: no such pose file or folder")
        inputs["keypoints"] = keypoints
    elif backend == "dwpose":
        from mfollow.weights.registry import get_component, resolve

        folder = resolve("dwpose", weights)  # missing -> exit 3 with the command to run
        hashes = {f.path: f.sha256 or "" for f in get_component("dwpose").files}
    else:
        hashes = {"mediapipe": _mediapipe_version()}
    name = f"pose-{role}"
    params = {"backend": backend, "person": person, "preview": preview, "smooth": smooth}
    spec = StageSpec(name, STAGE_CODE_VERSIONS[name], inputs, params, hashes)

    def build(out: Path) -> None:
        if backend == "file":
            from mfollow.preprocess.pose.files import read_keypoints

            poses = read_keypoints(keypoints, info.display_width, info.display_height, person)  # type: ignore[arg-type]
            if len(poses) != info.frame_count:
                raise MediaError(f"{keypoints}: poses for {len(poses)} frames, the video has {info.frame_count}")
        else:
            if backend == "dwpose":
                from mfollow.preprocess.pose.dwpose import DWPose, estimate_video

                assert folder is not None
                model = DWPose(folder / "yolox_l.onnx", folder / "dw-ll_ucoco_384.onnx")
                poses, missing = estimate_video(video, model, person)
            else:
                from mfollow.preprocess.pose import mediapipe_backend

                poses, missing = mediapipe_backend.estimate_video(video)
            (out / "missing_frames.json").write_text(json.dumps(missing) + "\n")
        if smooth:  # One-Euro, at the video's average frame rate
            from mfollow.preprocess.pose.smooth import smooth_poses

            poses = smooth_poses(poses, float(info.average_fps))  # type: ignore[arg-type]
        poses.save(out / "poses.json")  # type: ignore[union-attr]
        if preview:
            from mfollow.io.video import write_video
            from mfollow.preprocess.pose.render import render_sequence

            frames = render_sequence(poses, info.display_width, info.display_height, colors="standard")  # type: ignore[arg-type]
            write_video(out / "preview.mp4", frames, info.timestamps, info.time_base)

    with Project.open(root) as proj:
        report = _run(proj, spec, build, force)
        if "missing_frames.json" in report["outputs"]:
            report["missing_frames"] = json.loads(Path(report["outputs"]["missing_frames.json"]).read_text())
        return report


def align_stage(root: Path, settings: AlignSettings | None = None, *, force: bool = False) -> dict[str, Any]:
    """The edit poses: the target's poses aligned to the source person."""
    settings = settings or AlignSettings()
    inputs: dict[str, Any] = {"source": StageRef("pose-source"), "target": StageRef("pose-target")}
    with Project.open(root) as proj:
        video = _recorded_source(proj.manifest) if settings.follow_camera else None
        if video is not None:
            inputs["source_video"] = video  # the camera is measured on its background
        spec = StageSpec("align", STAGE_CODE_VERSIONS["align"], inputs, asdict(settings))

        def build(out: Path) -> None:
            source = PoseSequence.load(proj.output("pose-source", "poses.json"))
            target = PoseSequence.load(proj.output("pose-target", "poses.json"))
            camera = None
            if video is not None:
                from mfollow.io.media import media_frames

                camera = estimate_track(media_frames(video), source.box)
                if len(camera) != len(source):
                    raise MediaError(f"{video}: {len(camera)} frames for {len(source)} source poses")
                (out / "camera.json").write_text(json.dumps(camera.to_json()) + "\n")
            edit, transform = align(source, target, settings, camera)
            edit.save(out / "edit_poses.json")
            (out / "transform.json").write_text(json.dumps(transform.to_json(), indent=2) + "\n")

        return _run(proj, spec, build, force)


def mask_stage(
    root: Path,
    *,
    source_masks: Path | None = None,
    source_video: Path | None = None,
    edit_backend: EditMaskSource = "hull",
    target_masks: Path | None = None,
    target_video: Path | None = None,
    edit_masks: Path | None = None,
    preview: bool = False,
    weights_dir: Path | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """M_r from files, or segmented from ``source_video`` by mediapipe; M_e by ``warp`` (the
    target's masks, or ``target_video`` segmented by mediapipe, moved by the alignment; the hull in
    a frame where the target's mask is empty), ``hull`` or ``file``."""
    if source_masks is None and source_video is None:
        raise UsageError("M_r needs --source-masks, or --source-backend mediapipe with the source video")
    for folder in (source_masks, target_masks, edit_masks):
        if folder is not None and not folder.is_dir():
            raise MediaError(f"{folder}: no such mask folder")
    if edit_backend == "warp" and target_masks is None and target_video is None:
        raise UsageError("--edit-backend warp needs --target-masks (the target person's masks)")
    if edit_backend == "file" and edit_masks is None:
        raise UsageError("--edit-backend file needs --edit-masks")
    inputs: dict[str, Any] = {"align": StageRef("align"), "source": StageRef("pose-source")}
    weights: dict[str, str] = {}
    if source_masks is not None:
        inputs["source_masks"] = source_masks
    else:
        inputs["source_video"] = source_video
        weights["mediapipe"] = _mediapipe_version()
    if edit_backend == "warp" and target_masks is not None:
        inputs["target_masks"] = target_masks
    elif edit_backend == "warp":
        inputs["target_video"] = target_video
        weights["mediapipe"] = _mediapipe_version()
    if edit_backend == "file":
        inputs["edit_masks"] = edit_masks
    segdit_dir = None
    recorded_video = _source_video(root) if edit_backend == "segdit" or preview else None
    if edit_backend == "segdit":
        from mfollow.weights.registry import resolve

        segdit_dir = resolve("segdit", weights_dir)  # missing -> exit 3 with how to get it
        inputs["segdit"] = segdit_dir / "diffusion_pytorch_model.safetensors"
        inputs["source_video_segdit"] = recorded_video
    params = {
        "source_backend": "file" if source_masks is not None else "mediapipe",
        "edit_backend": edit_backend,
        "preview": preview,
    }
    spec = StageSpec("mask", STAGE_CODE_VERSIONS["mask"], inputs, params, weights)
    with Project.open(root) as proj:

        def build(out: Path) -> None:
            source = PoseSequence.load(proj.output("pose-source", "poses.json"))
            edit = PoseSequence.load(proj.output("align", "edit_poses.json"))
            if source_masks is not None:
                m_r = _masks_at(read_masks(source_masks), source.width, source.height, source_masks)
            else:
                from mfollow.preprocess.pose.mediapipe_backend import segment_video

                m_r = segment_video(source_video)  # type: ignore[arg-type]
            if len(m_r) != len(source):
                raise MediaError(f"{source_masks}: {len(m_r)} masks for {len(source)} source frames")
            if edit_backend == "hull":
                from mfollow.preprocess.masks.fallbacks import hull_masks, limb_widths

                m_e = hull_masks(edit, limb_widths(source, m_r))
            elif edit_backend == "segdit":
                from mfollow.preprocess.masks.segdit import SegDiT, segment_video

                model = SegDiT.from_pretrained(str(segdit_dir)).eval()
                m_e = segment_video(model, recorded_video, edit)  # type: ignore[arg-type]
            elif edit_backend == "warp":
                from mfollow.preprocess.masks.fallbacks import warp_masks

                t = Transform(**json.loads(proj.output("align", "transform.json").read_text()))
                target = PoseSequence.load(proj.output("pose-target", "poses.json"))
                if target_masks is not None:
                    m_t = _masks_at(read_masks(target_masks), target.width, target.height, target_masks)
                else:
                    from mfollow.preprocess.pose.mediapipe_backend import segment_video

                    m_t = segment_video(target_video)  # type: ignore[arg-type]
                m_e = warp_masks(m_t, t, source.width, source.height, _camera(proj))
                empty = ~m_e.reshape(len(m_e), -1).any(axis=1)  # no target person found in the frame
                if empty.any():
                    from mfollow.preprocess.masks.fallbacks import hull_masks, limb_widths

                    m_e[empty] = hull_masks(edit, limb_widths(source, m_r))[: len(m_e)][empty]
            else:
                m_e = _masks_at(read_masks(edit_masks), source.width, source.height, edit_masks)  # type: ignore[arg-type]
            for folder, masks in (("source_masks", m_r), ("edit_masks", m_e)):
                (out / folder).mkdir()
                for i, m in enumerate(masks):
                    write_mask(out / folder / mask_name(i), m)
            if preview:
                write_overlay(recorded_video, m_r, m_e, out / "preview.mp4")  # type: ignore[arg-type]

        return _run(proj, spec, build, force)


def _masks_at(masks: np.ndarray, width: int, height: int, folder: Path | None) -> np.ndarray:
    if masks.shape[1:] != (height, width):
        raise MediaError(f"{folder}: masks are {masks.shape[2]}x{masks.shape[1]}, the video is {width}x{height}")
    return masks


def project_inputs(root: Path) -> dict[str, Path] | None:
    """The edit's poses and masks from a project whose stages are all fresh, else None."""
    if not (root / "mfollow.json").is_file():
        return None
    proj = Project.read(root)
    states = {s.name: s for s in proj.status()}
    needed = ("pose-source", "align", "mask")
    if any(states.get(n) is None or states[n].state != "fresh" for n in needed):
        return None
    return {
        "source_poses": proj.output("pose-source", "poses.json"),
        "edit_poses": proj.output("align", "edit_poses.json"),
        "source_masks": proj.stage_dir("mask") / "source_masks",
        "edit_masks": proj.stage_dir("mask") / "edit_masks",
    }


def _mediapipe_version() -> str:
    """The mediapipe release (its bundled models are the "weights" of those backends)."""
    from mfollow.preprocess.pose.mediapipe_backend import _import

    return str(_import().__version__)


def write_overlay(video: Path, m_r: np.ndarray, m_e: np.ndarray, out: Path) -> None:
    """The source video with M_r tinted red and M_e tinted green, at the video's timing."""
    from mfollow.io.media import media_frames, media_info
    from mfollow.io.video import write_video

    info = media_info(video)

    def frames() -> Any:
        for frame, r, e in zip(media_frames(video, info), m_r, m_e, strict=False):
            tinted = frame.astype(np.float32)
            tinted[r] = 0.5 * tinted[r] + 0.5 * np.array([255, 0, 0])
            tinted[e] = 0.5 * tinted[e] + 0.5 * np.array([0, 255, 0])
            yield tinted.astype(np.uint8)

    write_video(out, frames(), info.timestamps[: min(len(m_r), info.frame_count)], info.time_base)


def _camera(proj: Project) -> CameraTrack | None:
    """The source camera the align stage followed (None when it did not)."""
    path = proj.outputs("align").get("camera.json")
    return None if path is None else CameraTrack.from_json(json.loads(path.read_text()))


def _source_video(root: Path) -> Path:
    """The source video recorded by the project's pose-source stage."""
    video = _recorded_source(Project.read(root).manifest)
    if video is None:
        raise UsageError(f"{root}: run 'mfollow pose SRC -p {root}' first")
    return video


def _recorded_source(manifest: dict[str, Any]) -> Path | None:
    """The source video of a project manifest's pose-source stage (None before that stage)."""
    rec = manifest["stages"].get("pose-source")
    return None if rec is None else Path(rec["document"]["inputs"]["video"]["path"])
