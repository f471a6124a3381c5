"""The two lightweight controllers of MotionFollower (paper §2.2; docs/method.md, §2).

- :class:`PoseController` (PoCtr): pose renders in [0, 1] -> features at latent size, added to the
  U-Net's ``conv_in`` output. Key names of the official ``poctr.pth``.
- :class:`AppearanceAdapter` (ReCtr): source frames in [-1, 1] -> PixelUnshuffle(8) -> a residual
  conv stack (T2I-Adapter "full" topology) giving one feature map per U-Net down block. Lives inside
  the U-Net as ``appearance_adapter`` (official key names).

Both run per frame and are computed once per sampling call (they do not depend on the noise or
the timestep), then reused across CFG halves and steps.
"""

from __future__ import annotations

import itertools

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn


def fold(x: torch.Tensor) -> torch.Tensor:
    """(B, C, F, H, W) -> (B*F, C, H, W), frames batch-major."""
    b, c, f, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * f, c, h, w)


def unfold(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(B*F, C, H, W) -> (B, C, F, H, W)."""
    bf, c, h, w = x.shape
    return x.reshape(bf // frames, frames, c, h, w).permute(0, 2, 1, 3, 4)


class PoseController(ModelMixin, ConfigMixin):
    """PoCtr: (B, 3, F, H, W) pose renders in [0, 1] -> (B, out_channels, F, H/8, W/8).

    conv_in 3->c0, then per stage a 3x3 conv and a stride-2 3x3 conv (SiLU after each), then a
    zero-initialised conv_out, so an untrained controller adds nothing.
    """

    @register_to_config
    def __init__(self, out_channels: int = 320, channels: tuple[int, ...] = (16, 32, 96, 256), in_channels: int = 3):
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        blocks = []
        for a, b in itertools.pairwise(channels):
            blocks += [nn.Conv2d(a, a, 3, padding=1), nn.Conv2d(a, b, 3, padding=1, stride=2)]
        self.blocks = nn.ModuleList(blocks)
        self.conv_out = nn.Conv2d(channels[-1], out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, poses: torch.Tensor) -> torch.Tensor:
        frames = poses.shape[2]
        h = nn.functional.silu(self.conv_in(fold(poses)))
        for block in self.blocks:
            h = nn.functional.silu(block(h))
        return unfold(self.conv_out(h), frames)


class AdapterBlock(nn.Module):
    """One residual block of the appearance adapter (official ``body.k``)."""

    def __init__(self, c_in: int, c_out: int, down: bool, ksize: int) -> None:
        super().__init__()
        self.down = nn.AvgPool2d(2, 2) if down else None  # parameter-free, before the channel change
        self.in_conv = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None
        self.block1 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.block2 = nn.Conv2d(c_out, c_out, ksize, padding=ksize // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.down is not None:
            x = self.down(x)
        if self.in_conv is not None:
            x = self.in_conv(x)
        return self.block2(nn.functional.relu(self.block1(x))) + x


class AppearanceAdapter(nn.Module):
    """ReCtr: (B, in_channels, F, H, W) frames in [-1, 1] (and, with ``in_channels`` 6, their pose
    renders in [0, 1] after them) -> one (B*F, C_i, H/8/2^i, W/8/2^i) map per stage."""

    def __init__(
        self,
        channels: tuple[int, ...],
        blocks_per_stage: int = 2,
        unshuffle: int = 8,
        ksize: int = 1,
        in_channels: int = 3,
    ):
        super().__init__()
        self.unshuffle = nn.PixelUnshuffle(unshuffle)
        self.blocks_per_stage = blocks_per_stage
        self.conv_in = nn.Conv2d(in_channels * unshuffle * unshuffle, channels[0], 3, padding=1)
        body = []
        prev = channels[0]
        for stage, c in enumerate(channels):
            for j in range(blocks_per_stage):
                body.append(AdapterBlock(prev, c, down=stage > 0 and j == 0, ksize=ksize))
                prev = c
        self.body = nn.ModuleList(body)

    def forward(self, frames: torch.Tensor) -> list[torch.Tensor]:
        h = self.conv_in(self.unshuffle(fold(frames)))  # (B*F, c, H, W) -> (B*F, 64c, H/8, W/8) -> C0
        features = []
        for k, block in enumerate(self.body):
            h = block(h)
            if (k + 1) % self.blocks_per_stage == 0:
                features.append(h)
        return features
