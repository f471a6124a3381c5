"""The ComfyUI nodes (docs/comfyui.md): load a model, poses from frames, align, masks, edit, edit-long.

Each node turns ComfyUI's IMAGE and MASK tensors into the frame and mask folders the library reads
(:mod:`mfollow.comfy.media`), under a content-keyed cache folder, and calls the library's own
stages and :class:`mfollow.edit.pipeline.MotionFollowerPipeline`: the defaults are
:class:`mfollow.edit.request.EditRequest`'s and the checks are its :meth:`check` (before the
graph runs, as ComfyUI's ``VALIDATE_INPUTS``) and the pipeline's preflight. An mfollow error stops
the graph with its one line (ComfyUI's ``ExecutionBlocker``), never a traceback; the denoising
steps drive ComfyUI's progress bar, and an interrupt stops sampling at the next step (a
long edit resumes from its checkpoint when queued again).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args

from mfollow.comfy.media import (
    content_key,
    frames_of,
    image_tensor,
    mask_tensor,
    masks_of,
    store_frames,
    store_masks,
)
from mfollow.edit.choices import Device, Dtype, EditMaskChoice
from mfollow.edit.request import EditRequest
from mfollow.preprocess.pose.backends import PoseChoice
from mfollow.runtime.errors import MfollowError
from mfollow.sampling import BlendScheme, GuidanceMode

CATEGORY = "mfollow"
MODEL = "MFOLLOW_MODEL"  # a loaded MotionFollowerPipeline
POSES = "MFOLLOW_POSES"  # a video's poses (:class:`Poses`)
CACHE_ENV = "MFOLLOW_COMFY_CACHE"  # where the nodes keep their folders (default: ComfyUI's user folder)
DEFAULT = EditRequest()  # every default an edit node shows is the request's
MODEL_DEFAULT = "auto"  # sd15 when installed, else the bundled tiny model (MotionFollowerPipeline.from_pretrained)
FROM_MODEL = "the model's default"
log = logging.getLogger("mfollow.comfy")


@dataclass(frozen=True)
class Poses:
    """A video's poses as the nodes pass them: the keypoint file, the frames it was made from, and
    the project that holds it. Edit poses (from :class:`Align`) also carry the target's frames and
    the alignment settings, which the masks' stage needs."""

    poses: Path  # keypoint JSON (mfollow.preprocess.pose.keypoints.PoseSequence)
    frames: Path  # the source video's frames (a PNG folder)
    project: Path  # the project folder whose stages made ``poses``
    target_frames: Path | None = None  # edit poses: the target's frames
    align: dict[str, Any] = field(default_factory=dict)  # edit poses: the align stage's settings


# ------------------------------------------------------------------------ ComfyUI's services
def cache_root() -> Path:
    """``$MFOLLOW_COMFY_CACHE``, else ``ComfyUI/user/mfollow-cache`` (kept across restarts, unlike
    ComfyUI's temp folder, so that a long edit resumes), else the user's cache folder."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    try:
        import folder_paths  # type: ignore[import-not-found]  # ComfyUI's

        return Path(folder_paths.get_user_directory()) / "mfollow-cache"
    except ImportError:
        from platformdirs import user_cache_dir

        return Path(user_cache_dir("mfollow")) / "comfy"


def progress_bar() -> Callable[[int, int], None] | None:
    """ComfyUI's progress bar for the running node, which also stops at the next denoising step
    when the user interrupts (ComfyUI's ``InterruptProcessingException``); None outside ComfyUI."""
    try:
        import comfy.model_management  # type: ignore[import-not-found]
        import comfy.utils  # type: ignore[import-not-found]
    except ImportError:
        return None
    bar = comfy.utils.ProgressBar(1)

    def step(done: int, total: int) -> None:
        bar.update_absolute(done, total)
        comfy.model_management.throw_exception_if_processing_interrupted()

    return step


def reported(node: Callable[..., tuple[Any, ...]]) -> Callable[..., tuple[Any, ...]]:
    """Run a node; an mfollow error becomes ComfyUI's ``ExecutionBlocker`` carrying its one line
    (shown by ComfyUI without a traceback) on every output. Outside ComfyUI it is raised."""

    @functools.wraps(node)
    def run(self: Any, **inputs: Any) -> tuple[Any, ...]:
        try:
            return node(self, **inputs)
        except MfollowError as exc:
            try:
                from comfy_execution.graph_utils import ExecutionBlocker  # type: ignore[import-not-found]
            except ImportError:
                raise exc from None
            message = f"mfollow {type(self).__name__}: {exc}"
            log.error(message)
            return tuple(ExecutionBlocker(message) for _ in self.RETURN_TYPES)

    return run


def _choices(literal: Any) -> list[str]:
    return list(get_args(literal))


def _render(poses: Path) -> Any:
    """Rendered skeletons (the standard OpenPose colours) as an IMAGE, to look at the poses."""
    import numpy as np

    from mfollow.preprocess.pose.keypoints import PoseSequence
    from mfollow.preprocess.pose.render import render_sequence

    seq = PoseSequence.load(poses)
    return image_tensor(np.stack(list(render_sequence(seq, seq.width, seq.height, colors="standard"))))


# ------------------------------------------------------------------------------------ nodes
class LoadModel:
    """``MotionFollowerPipeline.from_pretrained``: a preset, a bundle folder or a Hub ``org/name``."""

    CATEGORY, FUNCTION = CATEGORY, "load"
    RETURN_TYPES, RETURN_NAMES = (MODEL,), ("model",)
    DESCRIPTION = "Load a MotionFollower model: auto, tiny, sd15, a bundle folder, or a Hub repository org/name."

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "model": ("STRING", {"default": MODEL_DEFAULT, "tooltip": cls.DESCRIPTION}),
                "device": (_choices(Device), {"default": DEFAULT.device}),
                "dtype": (_choices(Dtype), {"default": DEFAULT.dtype}),
            }
        }

    @classmethod
    def VALIDATE_INPUTS(cls, device: str = DEFAULT.device, dtype: str = DEFAULT.dtype, **_: Any) -> bool | str:
        return _checked(lambda: EditRequest(device=device, dtype=dtype).check())  # type: ignore[arg-type]

    @reported
    def load(self, model: str, device: str, dtype: str) -> tuple[Any]:
        from mfollow.edit.pipeline import MotionFollowerPipeline

        name = None if model.strip() in ("", MODEL_DEFAULT) else model.strip()
        return (MotionFollowerPipeline.from_pretrained(name, device=device, dtype=dtype),)


class EstimatePoses:
    """The pose stage on a video's frames (DWPose or mediapipe, as ``mfollow pose``)."""

    CATEGORY, FUNCTION = CATEGORY, "estimate"
    RETURN_TYPES, RETURN_NAMES = (POSES, "IMAGE"), ("poses", "skeletons")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "images": ("IMAGE",),
                "backend": (_choices(PoseChoice), {"default": DEFAULT.pose_backend}),
            }
        }

    @reported
    def estimate(self, images: Any, backend: str) -> tuple[Poses, Any]:
        from mfollow.preprocess.pose.backends import choose_pose_backend
        from mfollow.preprocess.stages import pose_stage

        root = cache_root()
        frames = store_frames(frames_of(images), root)
        chosen = choose_pose_backend(backend)  # type: ignore[arg-type]
        project = root / "poses" / f"{frames.name}-{chosen.backend}"
        made = pose_stage(project, frames, "source", backend=chosen.backend)
        poses = Path(made["outputs"]["poses.json"])
        return Poses(poses, frames, project), _render(poses)


class Align:
    """The align stage: the target's poses moved onto the source person, with the settings the
    model's preset asks for (as an edit does)."""

    CATEGORY, FUNCTION = CATEGORY, "align"
    RETURN_TYPES, RETURN_NAMES = (POSES, "IMAGE"), ("edit_poses", "skeletons")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"model": (MODEL,), "source_poses": (POSES,), "target_poses": (POSES,)}}

    @reported
    def align(self, model: Any, source_poses: Poses, target_poses: Poses) -> tuple[Poses, Any]:
        from mfollow.models.presets import get_preset
        from mfollow.preprocess.pose.align import AlignSettings
        from mfollow.preprocess.stages import align_stage, pose_stage

        settings = get_preset(model.bundle.preset).align
        key = content_key(source_poses.poses, target_poses.poses, source_poses.frames, target_poses.frames, settings)
        project = cache_root() / "pairs" / key
        pose_stage(project, source_poses.frames, "source", source_poses.poses, backend="file")
        pose_stage(project, target_poses.frames, "target", target_poses.poses, backend="file")
        made = align_stage(project, AlignSettings(**settings))
        edit = Poses(
            Path(made["outputs"]["edit_poses.json"]), source_poses.frames, project, target_poses.frames, settings
        )
        return edit, _render(edit.poses)


class PersonMasks:
    """The mask stage: M_r (the source person; segmented, or a MASK you give, e.g. from SAM) and
    M_e (the edited person: the target's mask moved by the alignment, the edit pose's hull, or
    SegDiT; ``auto`` as an edit chooses)."""

    CATEGORY, FUNCTION = CATEGORY, "masks"
    RETURN_TYPES, RETURN_NAMES = ("MASK", "MASK"), ("M_r", "M_e")

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "edit_poses": (POSES,),
                "edit_backend": (_choices(EditMaskChoice), {"default": DEFAULT.edit_mask_backend}),
            },
            "optional": {"source_mask": ("MASK",), "target_mask": ("MASK",)},
        }

    @reported
    def masks(
        self, edit_poses: Poses, edit_backend: str, source_mask: Any = None, target_mask: Any = None
    ) -> tuple[Any, Any]:
        from mfollow.edit.prepare import StagePlan, prepare_stages
        from mfollow.io.folders import frame_files
        from mfollow.preprocess.masks.files import read_masks

        root = cache_root()
        n_source = len(frame_files(edit_poses.frames))
        given = {}
        if source_mask is not None:
            given["source_masks"] = store_masks(masks_of(source_mask, n_source, "source_mask (M_r)"), root)
        if target_mask is not None:
            assert edit_poses.target_frames is not None
            n_target = len(frame_files(edit_poses.target_frames))
            given["target_masks"] = store_masks(masks_of(target_mask, n_target, "target_mask"), root)
        plan = StagePlan(align=edit_poses.align, edit_mask_backend=edit_backend, **given)  # type: ignore[arg-type]
        staged, _ = prepare_stages(edit_poses.project, edit_poses.frames, edit_poses.target_frames, plan, log.info)
        return mask_tensor(read_masks(staged["source_masks"])), mask_tensor(read_masks(staged["edit_masks"]))


# The edit nodes' options: (EditRequest field, ComfyUI input). "Unset" values (0 or -1) stand for
# the model preset's default, which the request resolves (EditRequest.settings).
UNSET = {"steps": 0, "size": 0, "cfg": -1.0, "guidance_scale": -1.0}
WARP = {"auto": None, "on": True, "off": False}


def _edit_inputs(long: bool) -> dict[str, Any]:
    shown = {
        # no "control after generate": a fixed seed gives the same frames, and lets edit long resume
        "seed": ("INT", {"default": DEFAULT.seed, "min": 0, "max": 2**63 - 1, "control_after_generate": False}),
        "steps": ("INT", {"default": UNSET["steps"], "min": 0, "tooltip": f"0: {FROM_MODEL}"}),
        "guidance": (_choices(GuidanceMode), {"default": DEFAULT.guidance}),
        "guidance_scale": ("FLOAT", {"default": UNSET["guidance_scale"], "min": -1.0, "step": 1.0,
                                     "tooltip": f"the score guidance's step size; -1: {FROM_MODEL}"}),
        "cfg": ("FLOAT", {"default": UNSET["cfg"], "min": -1.0, "step": 0.1, "tooltip": f"-1: {FROM_MODEL}"}),
        "size": ("INT", {"default": UNSET["size"], "min": 0, "step": 64,
                         "tooltip": f"the working short side; 0: {FROM_MODEL}"}),
        "warp_person": (list(WARP), {"default": "auto"}),
        "composite": ("BOOLEAN", {"default": DEFAULT.composite}),
        "offload": ("BOOLEAN", {"default": DEFAULT.offload,
                                "tooltip": "only the models a phase needs on the GPU: less memory, a little slower"}),
    }  # fmt: skip
    if long:
        shown |= {
            "window": ("INT", {"default": DEFAULT.window, "min": 1}),
            "overlap": ("INT", {"default": DEFAULT.overlap, "min": 0}),
            "blend": (_choices(BlendScheme), {"default": DEFAULT.blend}),
            "cache_dir": ("STRING", {"default": "", "tooltip": "where the checkpoint lives (empty: the node cache)"}),
        }
    return {
        "required": {
            "model": (MODEL,),
            "source": ("IMAGE",),
            "source_poses": (POSES,),
            "edit_poses": (POSES,),
            "M_r": ("MASK",),
            "M_e": ("MASK",),
            **shown,
        }
    }


def request_options(widgets: dict[str, Any], long: bool) -> dict[str, Any]:
    """The edit nodes' widget values as :class:`EditRequest` fields."""
    known = {f.name for f in fields(EditRequest)}
    options = {k: v for k, v in widgets.items() if k in known and k not in ("source", "output")}
    for k, unset in UNSET.items():
        if k in options and options[k] == unset:
            options[k] = None
    if "warp_person" in options:
        options["warp_person"] = WARP.get(options["warp_person"], options["warp_person"])
    return options | {"long": long}


def _checked(check: Callable[[], None]) -> bool | str:
    """ComfyUI's VALIDATE_INPUTS answer: True, or the check's one line (shown before anything runs)."""
    try:
        check()
    except MfollowError as exc:
        return str(exc)
    return True


class Edit:
    """One window (at most 24 frames): ``mfollow edit`` with the poses and masks given."""

    CATEGORY, FUNCTION = CATEGORY, "edit"
    RETURN_TYPES, RETURN_NAMES = ("IMAGE",), ("images",)
    LONG = False

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return _edit_inputs(cls.LONG)

    @classmethod
    def VALIDATE_INPUTS(cls, **widgets: Any) -> bool | str:
        return _checked(lambda: EditRequest(**request_options(widgets, cls.LONG)).check())

    @reported
    def edit(
        self, model: Any, source: Any, source_poses: Poses, edit_poses: Poses, M_r: Any, M_e: Any, **widgets: Any
    ) -> tuple[Any]:
        from mfollow.io.media import media_frames

        options = request_options(widgets, self.LONG)
        cache_dir = widgets.get("cache_dir")
        root = cache_root()
        frames = frames_of(source, "source")
        src = store_frames(frames, root)
        n_edit = len(_poses(edit_poses.poses))
        m_r = store_masks(masks_of(M_r, len(frames), "M_r"), root)
        m_e = store_masks(masks_of(M_e, n_edit, "M_e"), root)
        key = content_key(src.name, m_r.name, m_e.name, source_poses.poses, edit_poses.poses, model.weights_id, options)
        if self.LONG:  # the project (and its checkpoint) is the same for the same edit: it resumes
            options["project"] = (Path(cache_dir) if cache_dir else root / "long") / key
        output = root / "results" / key  # a folder of PNG frames: nothing lost to a video codec
        report = model(
            src, None, output, source_poses=source_poses.poses, edit_poses=edit_poses.poses, source_masks=m_r,
            edit_masks=m_e, note=log.warning, progress=progress_bar(), **options,
        )  # fmt: skip
        resumed = report.get("resumed_from_step")
        log.info(
            f"mfollow {type(self).__name__}: {report['frames']} frames, {report['steps']} steps"
            + ("" if not resumed else f", resumed from step {resumed}")
        )
        import numpy as np

        return (image_tensor(np.stack(list(media_frames(output)))),)


class EditLong(Edit):
    """Any length, in overlapping windows blended together; resumable: interrupted, it continues
    from its last step when queued again (``mfollow long``)."""

    FUNCTION = "edit"
    LONG = True


def _poses(path: Path) -> Any:
    from mfollow.preprocess.pose.keypoints import PoseSequence

    return PoseSequence.load(path)


NODES = {
    "MFollowLoadModel": (LoadModel, "MotionFollower: load model"),
    "MFollowPoses": (EstimatePoses, "MotionFollower: poses"),
    "MFollowAlign": (Align, "MotionFollower: align poses"),
    "MFollowMasks": (PersonMasks, "MotionFollower: person masks (M_r, M_e)"),
    "MFollowEdit": (Edit, "MotionFollower: edit (one window)"),
    "MFollowEditLong": (EditLong, "MotionFollower: edit long (windows, resumable)"),
}
NODE_CLASS_MAPPINGS = {name: cls for name, (cls, _) in NODES.items()}
NODE_DISPLAY_NAME_MAPPINGS = {name: title for name, (_, title) in NODES.items()}
