"""One edit as a typed request: :class:`EditRequest` holds every option of ``mfollow edit`` /
``mfollow long`` with the CLI's defaults (the CLI, the Python API and batch jobs all build one)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

EDIT_MAX_FRAMES = 24  # `edit` works in one window of at most this many frames


@dataclass(frozen=True)
class EditRequest:
    """One edit, as the CLI's options describe it (the defaults are the CLI's)."""

    source: Path | None = None  # a video, a still image or a folder of frames (None with ``case``)
    target: Path | None = None  # the motion video
    output: Path | None = None  # the .mp4 to write
    source_poses: Path | None = None
    edit_poses: Path | None = None
    source_masks: Path | None = None
    edit_masks: Path | None = None
    target_masks: Path | None = None  # for edit_mask_backend "warp"
    case: Path | None = None  # an official case folder
    project: Path | None = None  # default: OUTPUT.mfollow when one is needed
    weights: Path | None = None  # the folder searched first for DWPose and SegDiT (and, in the CLI, the model)
    pose_backend: str = "auto"
    edit_mask_backend: str = "auto"
    steps: int | None = None  # None: the preset's
    cfg: float | None = None  # None: the preset's
    guidance: str = "paper"
    guidance_scale: float | None = None  # None: the preset's
    seed: int = 0
    size: int | None = None  # working short side; None: the preset's
    start: int = 0
    frames: int | None = None
    max_frames: int = EDIT_MAX_FRAMES  # `edit` only
    fit: str = "trim"
    pose_colors: str = "official"
    camera: bool = False
    output_size: str = "source"
    composite: bool = True
    composite_margin: int | None = None
    # the source person's own pixels moved into the edit pose (mfollow.preprocess.pose.warp); None: the preset's
    # default where both poses are keypoints (off with pose images, which carry none)
    warp_person: bool | None = None
    preview_every: int | None = None
    long: bool = False  # overlapping windows over any length (resumable)
    window: int = 24
    overlap: int = 8
    blend: str = "tent"
    restart: bool = False  # long: discard a checkpoint
    device: str = "cpu"
    dtype: str = "float32"

    @property
    def staged(self) -> bool:
        """Poses come from the project's stages (not given, no case folder)."""
        return self.case is None and self.source_poses is None and self.edit_poses is None


PATH_FIELDS = ("source_poses", "edit_poses", "source_masks", "edit_masks")
PATH_OPTIONS = (*PATH_FIELDS, "target_masks", "case", "project", "weights")
