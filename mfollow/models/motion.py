"""AnimateDiff-v2 "Vanilla" motion module, as MotionFollower ships it (docs/method.md, §2).

Parameter names follow the official checkpoints (``temporal_transformer.norm``, ``proj_in``,
``transformer_blocks.0.attention_blocks.{0,1}.to_{q,k,v}``, ``to_out.0``, ``norms.{0,1}``,
``ff.net.{0.proj,2}``, ``ff_norm``, ``proj_out``) so ``motion_module.pth`` loads by key name.
Unlike diffusers' temporal blocks, the input GroupNorm is computed **per frame** (the official
``use_inflated_groupnorm``). The sinusoidal position table is derived, not stored.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from diffusers.models.attention import FeedForward
from torch import nn


def sinusoidal_table(length: int, dim: int) -> torch.Tensor:
    """(1, length, dim) table: sin on even channels, cos on odd ones, base 10000."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    pe = torch.zeros(1, length, dim)
    pe[0, :, 0::2] = torch.sin(position * div)
    pe[0, :, 1::2] = torch.cos(position * div)
    return pe


class PositionalEncoding(nn.Module):
    def __init__(self, dim: int, max_len: int) -> None:
        super().__init__()
        # Derived from (dim, max_len): not saved, so files with or without it both load.
        self.register_buffer("pe", sinusoidal_table(max_len, dim), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, F, C) sequences over frames."""
        if x.shape[1] > self.pe.shape[1]:
            raise ValueError(f"{x.shape[1]} frames exceed the motion module's table of {self.pe.shape[1]}")
        return x + self.pe[:, : x.shape[1]].to(x.dtype)


class TemporalAttention(nn.Module):
    """Multi-head self-attention over the frame axis of (N, F, C) sequences."""

    def __init__(self, dim: int, heads: int, max_len: int) -> None:
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, dim, bias=False)
        self.to_k = nn.Linear(dim, dim, bias=False)
        self.to_v = nn.Linear(dim, dim, bias=False)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim), nn.Dropout(0.0)])
        self.pos_encoder = PositionalEncoding(dim, max_len)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pos_encoder(x)  # q, k and v all see the position code (AnimateDiff)
        n, f, c = x.shape
        h = self.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(n, f, h, c // h).transpose(1, 2)  # (N, F, C) -> (N, heads, F, C/heads)

        out = F.scaled_dot_product_attention(split(self.to_q(x)), split(self.to_k(x)), split(self.to_v(x)))
        out = out.transpose(1, 2).reshape(n, f, c)  # (N, heads, F, C/heads) -> (N, F, C)
        return self.to_out[1](self.to_out[0](out))


class TemporalTransformerBlock(nn.Module):
    def __init__(self, dim: int, heads: int, max_len: int) -> None:
        super().__init__()
        self.attention_blocks = nn.ModuleList([TemporalAttention(dim, heads, max_len) for _ in range(2)])
        self.norms = nn.ModuleList([nn.LayerNorm(dim) for _ in range(2)])
        self.ff = FeedForward(dim, dropout=0.0, activation_fn="geglu")
        self.ff_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attention, norm in zip(self.attention_blocks, self.norms, strict=True):
            x = attention(norm(x)) + x
        return self.ff(self.ff_norm(x)) + x


class TemporalTransformer3D(nn.Module):
    def __init__(self, dim: int, heads: int, groups: int, max_len: int) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(groups, dim, eps=1e-6)
        self.proj_in = nn.Linear(dim, dim)
        self.transformer_blocks = nn.ModuleList([TemporalTransformerBlock(dim, heads, max_len)])
        self.proj_out = nn.Linear(dim, dim)
        nn.init.zeros_(self.proj_out.weight)  # the module starts as the identity
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """x: (B*F, C, H, W) with frames folded batch-major; returns the same shape."""
        bf, c, hh, ww = x.shape
        b = bf // frames
        residual = x
        # per frame: statistics over (C/groups, H, W) of each folded frame. Contiguous first: on a
        # CPU, GroupNorm's backward for a channels-last input that needs no gradient (the first
        # motion module while only the motion modules train) crashes (torch 2.13, segfault).
        h = self.norm(x.contiguous())
        h = h.permute(0, 2, 3, 1).reshape(b, frames, hh * ww, c)  # (B*F, C, H, W) -> (B, F, HW, C)
        h = h.permute(0, 2, 1, 3).reshape(b * hh * ww, frames, c)  # -> (B*HW, F, C): sequences over frames
        h = self.proj_in(h)
        for block in self.transformer_blocks:
            h = block(h)
        h = self.proj_out(h)
        h = h.reshape(b, hh * ww, frames, c).permute(0, 2, 1, 3)  # (B*HW, F, C) -> (B, F, HW, C)
        h = h.reshape(bf, hh, ww, c).permute(0, 3, 1, 2)  # -> (B*F, C, H, W)
        return h + residual


class MotionModule(nn.Module):
    """``VanillaTemporalModule``: a residual temporal transformer; frames interact only here."""

    def __init__(self, dim: int, heads: int = 8, groups: int = 32, max_len: int = 32) -> None:
        super().__init__()
        self.temporal_transformer = TemporalTransformer3D(dim, heads, groups, max_len)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        return self.temporal_transformer(x, frames)
