"""SegDiT: the paper's lightweight person segmentation model (Appendix A.1, Fig. 5; Eq. 8).

Given a source frame and a pose render it predicts the source person's mask *in that pose*: with
the source pose that is M_r, with the edit pose it is M_e. The paper describes the outline only:
the frame and the pose concatenated on channels, convolution blocks for several levels of
features, a DiT over the deepest ones, a decoder whose blocks also take the features of the first
four convolution blocks (skip connections), a mask thresholded at the end, about 23.5 M parameters
(read as parameters: the paper sets it beside SAM-B's "91MB", and SAM-B has 91 M), trained with
MSE against masks. The concrete sizes below are ours, chosen to match that count at ``full``:

- encoder: 4 stages, each a stride-2 3x3 conv and a 3x3 conv (GroupNorm + SiLU after each):
  (B, 6, H, W) -> features at H/2, H/4, H/8, H/16;
- DiT: the H/16 map in 2x2 patches -> tokens of width ``dim`` with a fixed 2-D sinusoidal position
  code, ``depth`` pre-norm transformer blocks (no timestep: nothing to modulate), back to H/16;
- decoder: 4 stages, each upsampling x2 after concatenating the encoder stage of the same size,
  then two 3x3 convs; a 1x1 head and a sigmoid give the mask probability at H x W.

Input: frame in [-1, 1] and pose render in [0, 1], both (B, 3, H, W), H and W multiples of 32.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from torch import nn


def _block(c_in: int, c_out: int, stride: int, groups: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.GroupNorm(groups, c_out), nn.SiLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1), nn.GroupNorm(groups, c_out), nn.SiLU(),
    )  # fmt: skip


def sincos_2d(h: int, w: int, dim: int) -> torch.Tensor:
    """(h*w, dim) fixed 2-D sinusoidal position code (half the channels for y, half for x)."""
    quarter = dim // 4
    freq = torch.exp(-math.log(10000.0) * torch.arange(quarter, dtype=torch.float32) / quarter)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    parts = []
    for coord in (ys.reshape(-1), xs.reshape(-1)):
        angles = coord[:, None] * freq[None]
        parts += [torch.sin(angles), torch.cos(angles)]
    return torch.cat(parts, dim=1)


class DiTBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


#: Named sizes: ``full`` (the paper's ~23.5 M parameters, the constructor's defaults) and ``tiny``
#: (the bundled demo model's, for 128x128 frames).
SEGDIT_SIZES: dict[str, dict[str, object]] = {
    "full": {},
    "tiny": dict(channels=(16, 32, 64, 64), dim=64, depth=2, heads=2, groups=8),
}


class SegDiT(ModelMixin, ConfigMixin):
    """(frame, pose) -> mask probability (B, 1, H, W); see the module docstring."""

    @register_to_config
    def __init__(
        self,
        channels: tuple[int, ...] = (64, 128, 256, 384),
        dim: int = 384,
        depth: int = 9,
        heads: int = 6,
        patch: int = 2,
        groups: int = 32,
    ) -> None:
        super().__init__()
        c = list(channels)
        self.encoder = nn.ModuleList(_block(a, b, 2, groups) for a, b in zip([6, *c[:-1]], c, strict=True))
        self.patch_embed = nn.Conv2d(c[-1], dim, patch, stride=patch)
        self.blocks = nn.ModuleList(DiTBlock(dim, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.unpatch = nn.ConvTranspose2d(dim, c[-1], patch, stride=patch)
        outs = [*reversed(c[:-1]), c[0] // 2]  # decoder widths, deepest first
        ins = [c[-1] + c[-1], *(o + s for o, s in zip(outs[:-1], reversed(c[:-1]), strict=True))]
        self.decoder = nn.ModuleList(_block(i, o, 1, min(groups, o)) for i, o in zip(ins, outs, strict=True))
        self.head = nn.Conv2d(outs[-1], 1, 1)

    def forward(self, frame: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """frame (B, 3, H, W) in [-1, 1], pose (B, 3, H, W) in [0, 1] -> (B, 1, H, W) in [0, 1]."""
        x = torch.cat([frame, pose], dim=1)  # (B, 6, H, W)
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)  # H/2, H/4, H/8, H/16
        t = self.patch_embed(x)  # (B, dim, h, w)
        b, d, h, w = t.shape
        tokens = t.flatten(2).transpose(1, 2)  # (B, dim, h, w) -> (B, h*w, dim)
        tokens = tokens + sincos_2d(h, w, d).to(tokens)
        for block in self.blocks:
            tokens = block(tokens)
        t = self.norm(tokens).transpose(1, 2).reshape(b, d, h, w)  # (B, h*w, dim) -> (B, dim, h, w)
        x = self.unpatch(t)  # back to H/16
        for stage, skip in zip(self.decoder, reversed(skips), strict=True):
            x = stage(torch.cat([x, skip], dim=1))  # the encoder's features of the same size
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return torch.sigmoid(self.head(x))

    @torch.no_grad()
    def masks(self, frames: torch.Tensor, poses: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
        """Binary masks (B, H, W) bool: the thresholded prediction."""
        return self(frames, poses)[:, 0] > threshold


def loss_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 8: || M_pred - M_tg ||^2, averaged over pixels."""
    return F.mse_loss(pred, target)


def segment_video(model: SegDiT, video: object, poses: object, chunk: int = 4) -> object:
    """Masks (F, H, W) bool of the source person in ``poses`` (a PoseSequence at the video's size)
    over every frame of ``video`` (a video, a folder of frames or an image: :mod:`mfollow.io.media`; one
    frame stands for every pose), at the video's size (the model runs at multiples of 32)."""
    import itertools

    import numpy as np
    from PIL import Image

    from mfollow.io.media import media_frames, media_info
    from mfollow.preprocess.pose.render import render_sequence

    info = media_info(video)  # type: ignore[arg-type]
    w, h = info.display_width, info.display_height
    rw, rh = max(32, round(w / 32) * 32), max(32, round(h / 32) * 32)
    renders = render_sequence(poses, rw, rh)  # type: ignore[arg-type]
    out = []
    frames = media_frames(video, info)  # type: ignore[arg-type]
    if info.frame_count == 1:  # a still image stands for every frame of the edit (as in the edit)
        frames = itertools.repeat(next(frames), len(poses))  # type: ignore[arg-type]
    bilinear = Image.Resampling.BILINEAR
    while batch := [
        np.asarray(Image.fromarray(f).resize((rw, rh), bilinear)) for _, f in zip(range(chunk), frames, strict=False)
    ]:
        pose = np.stack([next(renders) for _ in batch])
        x = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).float() / 127.5 - 1  # (N, H, W, 3) -> (N, 3, H, W)
        p = torch.from_numpy(pose).permute(0, 3, 1, 2).float() / 255.0
        for m in model.masks(x, p).numpy():  # back to the video's size
            out.append(
                np.asarray(Image.fromarray(m.astype(np.uint8) * 255).resize((w, h), Image.Resampling.NEAREST)) > 127
            )
    return np.stack(out)
