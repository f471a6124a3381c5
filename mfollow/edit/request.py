"""One edit as a typed request: :class:`EditRequest` holds every option of ``mfollow edit`` /
``mfollow long`` with the CLI's defaults (the CLI, the Python API and batch jobs all build one)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from mfollow.edit.choices import Device, Dtype, EditMaskChoice, Fit, Noise, OutputSize
from mfollow.preprocess.pose import ColorOrder
from mfollow.preprocess.pose.backends import PoseChoice
from mfollow.sampling import OVERLAP, WINDOW, BlendScheme, GuidanceMode

if TYPE_CHECKING:
    from mfollow.edit.inputs import EditInputs
    from mfollow.edit.plan import MemoryPlan
    from mfollow.edit.settings import EditSettings
    from mfollow.models.presets import Preset

EDIT_MAX_FRAMES = WINDOW  # `edit` works in one window of at most this many frames
OFFICIAL_STEPS = 50  # the release's schedule is written in step indices of a 50-step run


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
    pose_backend: PoseChoice = "auto"
    edit_mask_backend: EditMaskChoice = "auto"
    steps: int | None = None  # None: the preset's
    cfg: float | None = None  # None: the preset's
    guidance: GuidanceMode = "paper"
    guidance_scale: float | None = None  # None: the preset's
    seed: int = 0  # the release's default is 42
    noise: Noise = "keyed"  # release: drawn as the release does (one window)
    size: int | None = None  # working short side; None: the preset's
    start: int = 0
    frames: int | None = None
    max_frames: int = EDIT_MAX_FRAMES  # `edit` only
    fit: Fit = "trim"
    pose_colors: ColorOrder = "official"
    camera: bool = False
    output_size: OutputSize = "source"
    composite: bool = True
    composite_margin: int | None = None
    # the source person's own pixels moved into the edit pose (mfollow.preprocess.pose.warp); None: the preset's
    # default where both poses are keypoints (off with pose images, which carry none)
    warp_person: bool | None = None
    preview_every: int | None = None
    long: bool = False  # overlapping windows over any length (resumable)
    window: int = WINDOW
    overlap: int = OVERLAP
    blend: BlendScheme = "tent"
    restart: bool = False  # long: discard a checkpoint
    device: Device = "cpu"
    offload: bool = False  # only the models a phase needs on the device, the others on the CPU
    dtype: Dtype = "auto"  # the networks' precision; latents, guidance and DDIM stay float32
    max_memory: str | None = None  # the memory the edit may use ("12GiB"); None: what the device has free

    def settings(
        self, spec: Preset, inputs: EditInputs, device: str, preview: Path | None, plan: MemoryPlan
    ) -> EditSettings:
        """The run's settings: the one place where the model preset's defaults fill what the
        request leaves open (steps, CFG, guidance step size, working size, --warp-person).
        ``preview``: the folder of ``--preview-every``'s estimates (None: none); ``plan``: the
        memory planner's choices (:func:`mfollow.edit.preflight.check_memory`)."""
        from mfollow.edit.settings import EditSettings, PreviewSettings
        from mfollow.runtime.devices import auto_dtype
        from mfollow.sampling.state import SamplerSettings

        sampler = SamplerSettings(
            steps=self.sampling_steps(spec),
            cfg=spec.cfg if self.cfg is None else self.cfg,
            guidance=self.guidance,
            guidance_scale=spec.default_guidance_scale(self.guidance)
            if self.guidance_scale is None
            else self.guidance_scale,
            window=self.window,
            overlap=self.overlap,
            blend=self.blend,
            batch_passes=plan.batch_passes,
        )
        # --warp-person as given, else the preset's default where both poses are keypoint files
        # (a folder of pose images carries no keypoints to move the person along)
        warp = self.warp_person
        if warp is None:
            warp = spec.warp_person and not any(Path(p).is_dir() for p in (inputs.source_poses, inputs.edit_poses))
        return EditSettings(
            sampler=sampler, seed=self.seed, noise=self.noise, short_side=self.size or spec.working_size,
            start=self.start, frames=self.frames, max_frames=None if self.long else self.max_frames, fit=self.fit,
            colors=self.pose_colors, device=device, dtype=auto_dtype(device) if self.dtype == "auto" else self.dtype,
            camera=self.camera, offload=plan.offload, checkpointing=plan.checkpointing, decode_chunk=plan.decode_chunk,
            output_size=self.output_size, composite=self.composite, composite_margin=self.composite_margin,
            warp_person=warp, preview=None if preview is None or self.preview_every is None
            else PreviewSettings(self.preview_every, preview),
        )  # fmt: skip

    def check(self) -> None:
        """Every field's type, range and choice, and the combinations one option alone cannot
        check: the one validation of an edit, which the CLI, jobs files and the Python API share.

        Raises:
            UsageError: naming the option (its command-line spelling) and what is wrong.
        """
        from mfollow.runtime.errors import UsageError

        for f in fields(self):
            value, name = getattr(self, f.name), option_name(f.name)
            if f.name in PATH_ALL:
                if value is not None and not isinstance(value, Path):
                    raise UsageError(f"{name}: a path is needed, not {value!r}")
            elif f.name in INTEGERS:
                low = INTEGERS[f.name]
                if value is None and f.name in OPTIONAL:
                    continue
                if not isinstance(value, int) or isinstance(value, bool):
                    raise UsageError(f"{name}: a whole number is needed, not {value!r}")
                if value < low:
                    raise UsageError(f"{name} {value}: must be at least {low}")
            elif f.name in NUMBERS:
                if value is None:
                    continue
                if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
                    raise UsageError(f"{name}: a finite number is needed, not {value!r}")
                if value < 0:
                    raise UsageError(f"{name} {value}: must not be negative")
            elif f.name in CHOICES:
                allowed = get_args(CHOICES[f.name])
                if value not in allowed:
                    raise UsageError(f"{name} {value!r}: choose from {', '.join(allowed)}")
            elif f.name in FLAGS and not isinstance(value, bool) and not (value is None and f.name == "warp_person"):
                raise UsageError(f"{name}: true or false is needed, not {value!r}")
        if self.max_memory is not None:
            from mfollow.edit.plan import parse_size

            if not isinstance(self.max_memory, str):
                raise UsageError(f"--max-memory: a size such as 12GiB is needed, not {self.max_memory!r}")
            parse_size(self.max_memory)
        if self.seed >= 2**63:
            raise UsageError(f"--seed {self.seed}: must be below 2**63")
        if self.size is not None and self.size % 64:
            raise UsageError(f"--size {self.size} is not a multiple of 64")
        if self.long and self.overlap >= self.window:
            raise UsageError(f"--overlap {self.overlap} must be smaller than --window {self.window}")
        if self.noise == "release" and self.long:
            raise UsageError(
                "--noise release draws the release's noise for one window; long's windows need keyed noise",
                hint="use 'mfollow edit' (one window), or drop --noise release",
            )

    def sampling_steps(self, spec: Preset) -> int:
        """``steps`` as given, else 50 under ``official`` (the release's schedule is written for
        50 steps; other counts scale it by fractions), else the preset's."""
        if self.steps is None and self.guidance == "official":
            return OFFICIAL_STEPS
        return spec.sampling_steps(self.steps)

    @property
    def staged(self) -> bool:
        """Poses come from the project's stages (not given, no case folder)."""
        return self.case is None and self.source_poses is None and self.edit_poses is None


PATH_FIELDS = ("source_poses", "edit_poses", "source_masks", "edit_masks")
PATH_OPTIONS = (*PATH_FIELDS, "target_masks", "case", "project", "weights")


# What :meth:`EditRequest.check` checks, field by field (each field in one table).
PATH_ALL = ("source", "target", "output", *PATH_OPTIONS)
INTEGERS = {"steps": 1, "seed": 0, "size": 64, "start": 0, "frames": 1, "max_frames": 1, "window": 1, "overlap": 0,
            "composite_margin": 0, "preview_every": 1}  # fmt: skip  # the least value of each
OPTIONAL = ("steps", "size", "frames", "composite_margin", "preview_every")  # None: the default
NUMBERS = ("cfg", "guidance_scale")  # finite, not negative; None: the preset's
CHOICES = {"pose_backend": PoseChoice, "edit_mask_backend": EditMaskChoice, "guidance": GuidanceMode, "fit": Fit,
           "pose_colors": ColorOrder, "output_size": OutputSize, "blend": BlendScheme, "noise": Noise,
           "device": Device, "dtype": Dtype}  # fmt: skip
FLAGS = ("camera", "composite", "warp_person", "long", "restart", "offload")
SPELLING = {"source": "SRC", "target": "TGT", "output": "--output", "guidance_scale": "--guidance-step"}


def option_name(field: str) -> str:
    """A request field as the command line spells it (``steps`` -> ``--steps``)."""
    return SPELLING.get(field, "--" + field.replace("_", "-"))
