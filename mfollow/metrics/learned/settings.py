"""What ``mfollow eval`` computes beyond L1/PSNR/SSIM, and each metric's lineage (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mfollow.runtime.errors import UsageError

#: The smallest frame side each LPIPS trunk accepts (alex: two 3x3/2 pools after an 11x11/4
#: convolution; vgg: four 2x2 pools before its fifth layer).
LPIPS_MIN_SIDE = {"alex": 31, "vgg": 16}
CLIP = 16  # FVD frames per clip, as StyleGAN-V and common_metrics_on_video_quality use
STRIDE = 8  # a clip starts every STRIDE frames (half-overlapping clips)

LINEAGE = {
    "lpips": "LPIPS v0.1 ({net}; lpips package weights, inputs in [-1,1], spatial mean, mean over frames)",
    "fid": "FID, pytorch-fid Inception-v3 2015-12-05 pool3 (bilinear 299x299), frames of result vs reference",
    "fvd": "FVD, StyleGAN-V I3D TorchScript (rescale+resize inside), {clip}-frame clips every {stride} frames",
}


@dataclass(frozen=True)
class LearnedSettings:
    lpips: Literal["alex", "vgg"] | None = None
    fid: bool = False
    fvd: bool = False
    fvd_clip: int = CLIP
    fvd_stride: int = STRIDE
    batch: int = 8
    device: str = "cpu"

    @property
    def any(self) -> bool:
        return bool(self.lpips or self.fid or self.fvd)

    def clips(self, frames: int) -> int:
        """How many FVD clips ``frames`` frames give."""
        return 0 if frames < self.fvd_clip else (frames - self.fvd_clip) // self.fvd_stride + 1

    def check(self, frames: int, width: int, height: int) -> None:
        """Refuse, before any work, what cannot be computed on ``frames`` frame pairs of that size."""
        if self.fvd_clip < 1 or self.fvd_stride < 1 or self.batch < 1:
            raise UsageError("--fvd-clip, --fvd-stride and the batch must be at least 1")
        if self.lpips and min(width, height) < LPIPS_MIN_SIDE[self.lpips]:
            raise UsageError(
                f"LPIPS ({self.lpips}) needs frames of at least {LPIPS_MIN_SIDE[self.lpips]} pixels a side"
            )
        if self.fid and frames < 2:
            raise UsageError(f"FID needs at least 2 frames, the videos have {frames}")
        if self.fvd and self.clips(frames) < 2:
            raise UsageError(
                f"FVD needs at least 2 clips of {self.fvd_clip} frames every {self.fvd_stride}: "
                f"{self.fvd_clip + self.fvd_stride} frames, the videos have {frames}",
                hint="lower --fvd-stride or --fvd-clip",
            )

    def lineage(self) -> dict[str, str]:
        out = {}
        if self.lpips:
            out["lpips"] = LINEAGE["lpips"].format(net=self.lpips)
        if self.fid:
            out["fid"] = LINEAGE["fid"]
        if self.fvd:
            out["fvd"] = LINEAGE["fvd"].format(clip=self.fvd_clip, stride=self.fvd_stride)
        return out
