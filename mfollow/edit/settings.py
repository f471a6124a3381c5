"""The settings of one edit run (:func:`mfollow.edit.run.run_edit`), resolved from an
:class:`mfollow.edit.request.EditRequest` and the model's preset."""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from mfollow.edit.choices import Fit, Noise, OutputSize
from mfollow.io.media import IMAGE_FPS
from mfollow.preprocess.pose.render import ColorOrder
from mfollow.sampling.state import SamplerSettings

# settings that do not change the sampler's state: a long run resumes across a change of them (run_key)
# (the memory plan's choices among them: they change the result by float rounding at most)
OUTPUT_ONLY = ("output_size", "composite", "composite_margin", "warp_person", "preview", "offload", "checkpointing",
               "decode_chunk")  # fmt: skip


@dataclass(frozen=True)
class PreviewSettings:
    """``--preview-every K`` (:mod:`mfollow.edit.preview`)."""

    every: int  # steps between previews
    folder: Path  # the project's preview/ folder


@dataclass(frozen=True)
class EditSettings:
    sampler: SamplerSettings = field(default_factory=SamplerSettings)
    seed: int = 0
    noise: Noise = "keyed"  # keyed by (seed, frame), or the release's stream (one window)
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
    offload: bool = False  # only the models a phase needs on the device (ModelBundle.place)
    decode_chunk: int = 4  # frames the VAE decodes at once
    camera: bool = False  # masked K/V injection from the reconstruction (large camera motion)
    output_size: OutputSize = "source"  # write at the source's size or the model's
    composite: bool = True  # the source's own pixels outside the people (mfollow.edit.compositing)
    composite_margin: int | None = None  # band width in working pixels (None: 1/64 of the short side)
    warp_person: bool = False  # the source person's own pixels moved into the edit pose (mfollow.preprocess.pose.warp)
    preview: PreviewSettings | None = None  # clean-frame estimates every K steps (mfollow.edit.preview)
