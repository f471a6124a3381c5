"""The settings of a training run, and their checks (cheap: no torch, no data), so that a bad
option or ``--init`` folder is reported before the training loop (:mod:`mfollow.training.loop`)
and its libraries load."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from mfollow.models.meta import read_meta
from mfollow.models.presets import get_preset
from mfollow.runtime.errors import UsageError, WeightsError
from mfollow.training.data import EDIT_TARGET_RATE

Stage = Literal["vae", "image", "video", "mask"]
STAGES: tuple[str, ...] = ("vae", "image", "video", "mask")
LR_SCHEDULES = ("constant", "cosine")
#: Settings that may differ when a run is resumed.
RESUMABLE_CHANGES = ("steps", "checkpoint_every")


@dataclass(frozen=True)
class TrainSettings:
    stage: Stage
    preset: str = "tiny"
    steps: int = 1000
    batch: int = 8
    grad_accum: int = 1
    lr: float = 1e-5  # the paper's learning rate
    lr_schedule: str = "constant"  # or "cosine": from lr down to 0 over the run's --steps
    size: int = 128  # square frames (pixels)
    clip_length: int = 8  # frames per clip (stage video)
    checkpoint_every: int = 100
    seed: int = 0
    data: str = "synth"  # "synth" or a folder of prepared videos
    synth_pairs: int = 64  # synthetic data: how many puppet pairs
    synth_frames: int = 48  # ... of how many frames
    init: str | None = None  # a bundle folder (vae/image/video) or SegDiT folder (mask)
    vae: str | None = None  # image/video: take the autoencoder (and its latent scale) from this bundle
    segdit_size: str = "tiny"
    device: str = "cpu"
    checkpointing: bool = False  # activation checkpointing in the U-Net (less memory)
    edit_rate: float = EDIT_TARGET_RATE  # synthetic data: probability of a ground-truth-edit target
    region_weight: float = 0.0  # extra loss weight on the persons (image/video: M_r ∪ M_e; vae: the frame's mask)

    def check(self) -> None:
        if self.stage not in STAGES:
            raise UsageError(f"unknown stage {self.stage!r}; choose from {', '.join(STAGES)}")
        for name in ("steps", "batch", "grad_accum", "checkpoint_every", "synth_pairs", "clip_length"):
            if getattr(self, name) < 1:
                raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
        if self.size < 32 or self.size % 32:
            raise UsageError(f"--size {self.size} is not a positive multiple of 32")
        if self.lr <= 0:
            raise UsageError("--lr must be positive")
        if not 0.0 <= self.edit_rate <= 1.0:
            raise UsageError(f"--edit-rate {self.edit_rate} is not between 0 and 1")
        if self.region_weight < 0:
            raise UsageError("--region-weight must be 0 or more")
        if self.region_weight and self.stage not in ("image", "video", "vae"):
            raise UsageError(f"--region-weight applies to --stage image, video or vae, not {self.stage}")

        if self.lr_schedule not in LR_SCHEDULES:
            raise UsageError(f"unknown --lr-schedule {self.lr_schedule!r}; choose from {', '.join(LR_SCHEDULES)}")
        if self.vae is not None and self.stage not in ("image", "video"):
            raise UsageError(f"--vae applies to --stage image or video, not {self.stage}")
        if self.stage == "video" and self.synth_frames < self.clip_length:
            raise UsageError("--synth-frames must be at least --clip-length")
        get_preset(self.preset)  # an unknown preset is a usage error
        if self.data != "synth" and not Path(self.data).is_dir():
            raise UsageError(f"{self.data}: training data folder not found")
        self.check_init()

    def check_init(self) -> None:
        """``--init`` and ``--vae`` name what the stage can start from (cheap: their metadata only),
        so that a wrong folder is reported before any data is rendered."""
        if self.stage == "mask":
            if self.init and not (Path(self.init) / "config.json").is_file():
                raise WeightsError(f"{self.init}: not a SegDiT folder (no config.json)")
            return

        for option, folder in (("--init", self.init), ("--vae", self.vae)):
            if folder is None:
                continue
            preset = read_meta(Path(folder)).get("preset")  # not a bundle -> WeightsError (exit 3)
            if preset != self.preset:
                raise UsageError(f"{option} {folder}: a '{preset}' bundle, but --preset {self.preset} was asked for")
