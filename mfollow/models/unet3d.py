"""The MotionFollower 3D U-Net (paper §2.2; docs/method.md, §2).

Built from diffusers' public 2-D blocks: the down, mid and up blocks, ``conv_in``, the time
embedding and the output head are exactly those of a ``UNet2DConditionModel`` of the same config
(so the base ``sd-image-variations`` weights and the official ``denoising_unet.pth`` load by key
name), plus

- ``motion_modules`` inside every block (after each layer's resnet/transformer; 21 at sd15),
  normalising per frame;
- ``appearance_adapter`` (ReCtr), whose i-th feature map is added to down block i after its last
  layer's transformer (or resnet), before that layer's motion module and the downsampler;
- the PoCtr features added to the ``conv_in`` output;
- feature taps: the outputs of chosen up blocks (default 1 and 2), the guidance features F.
  A pass that differentiates only them (the guidance, Eqs. 2-7: ``sample_grad=False``) runs the
  layers after the last tap without autograd, so their activations are never kept for a backward
  that would not reach them (at sd15 the last up block, the largest at full latent resolution).

Frames are folded into the batch for every spatial op, so spatial layers (GroupNorms included)
work per frame and frames interact only through the motion modules. Each frame has its own CLIP
image embedding as its single cross-attention token.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import ConfigMixin, ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import register_to_config
from torch import nn
from torch.utils.checkpoint import checkpoint

from mfollow.models.controllers import AppearanceAdapter, fold, unfold
from mfollow.models.motion import MotionModule

#: The fields of the 2-D U-Net config that the 3D U-Net shares (diffusers names).
UNET2D_FIELDS = (
    "sample_size", "in_channels", "out_channels", "down_block_types", "up_block_types",
    "block_out_channels", "layers_per_block", "cross_attention_dim", "attention_head_dim",
    "norm_num_groups", "norm_eps", "flip_sin_to_cos", "freq_shift", "downsample_padding",
    "act_fn", "center_input_sample", "mid_block_scale_factor", "use_linear_projection",
)  # fmt: skip


@dataclass
class UNetOutput:
    """``sample`` (B, C, F, H, W) is the prediction; ``features`` maps an up-block index to its
    output (B, C_k, F, h_k, w_k)."""

    sample: torch.Tensor
    features: dict[int, torch.Tensor]


class UNet3D(ModelMixin, ConfigMixin):
    """The denoising 3D U-Net with motion modules and the ReCtr. See the module docstring."""

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        sample_size: int = 64,
        in_channels: int = 4,
        out_channels: int = 4,
        down_block_types: Sequence[str] = ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types: Sequence[str] = ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        block_out_channels: Sequence[int] = (320, 640, 1280, 1280),
        layers_per_block: int = 2,
        cross_attention_dim: int = 768,
        attention_head_dim: int = 8,  # diffusers' legacy name: the number of heads
        norm_num_groups: int = 32,
        norm_eps: float = 1e-5,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        downsample_padding: int = 1,
        act_fn: str = "silu",
        center_input_sample: bool = False,
        mid_block_scale_factor: float = 1.0,
        use_linear_projection: bool = False,
        motion_heads: int = 8,
        motion_norm_groups: int = 32,
        motion_max_frames: int = 32,
        adapter_blocks_per_stage: int = 2,
        adapter_unshuffle: int = 8,
        adapter_ksize: int = 1,
        feature_taps: Sequence[int] = (1, 2),
    ) -> None:
        super().__init__()
        base = UNet2DConditionModel(**{k: v for k, v in locals().items() if k in UNET2D_FIELDS})
        # Adopt the 2-D modules (same objects, same names: base weights load by key).
        for name in ("conv_in", "time_proj", "time_embedding", "down_blocks", "mid_block", "up_blocks"):
            setattr(self, name, getattr(base, name))
        self.conv_norm_out, self.conv_act, self.conv_out = base.conv_norm_out, base.conv_act, base.conv_out

        def motion(channels: int, count: int) -> nn.ModuleList:
            return nn.ModuleList(
                MotionModule(channels, motion_heads, motion_norm_groups, motion_max_frames) for _ in range(count)
            )

        for block, channels in zip(self.down_blocks, block_out_channels, strict=True):
            block.motion_modules = motion(channels, layers_per_block)
        self.mid_block.motion_modules = motion(block_out_channels[-1], 1)
        for block, channels in zip(self.up_blocks, reversed(block_out_channels), strict=True):
            block.motion_modules = motion(channels, layers_per_block + 1)
        self.appearance_adapter = AppearanceAdapter(
            tuple(block_out_channels),
            adapter_blocks_per_stage,
            adapter_unshuffle,
            adapter_ksize,
        )
        self.gradient_checkpointing = False
        self.motion_bypass = False  # training stage 1 (paper §2.2): frames pass the motion modules untouched

    # ------------------------------------------------------------------------------ helpers
    def appearance_features(self, source: torch.Tensor) -> list[torch.Tensor]:
        """ReCtr features of source frames (B, 3, F, H, W) in [-1, 1]: one (B*F, C_i, h_i, w_i) map
        per down block. Independent of noise and timestep: compute once per sampling call."""
        return self.appearance_adapter(source)

    def _run(self, fn: Callable[..., torch.Tensor], *args: Any) -> torch.Tensor:
        """Call ``fn``, through activation checkpointing when enabled and gradients are on (this
        also holds in eval mode, which the guided sampler needs)."""
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    def _motion(self, module: nn.Module, x: torch.Tensor, frames: int) -> torch.Tensor:
        return x if self.motion_bypass else self._run(module, x, frames)

    # ------------------------------------------------------------------------------ forward
    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        pose_features: torch.Tensor | None = None,
        appearance: list[torch.Tensor] | None = None,
        taps: Sequence[int] | None = None,
        sample_grad: bool = True,
    ) -> UNetOutput:
        """Predict the model output for noisy latents.

        Args:
            sample: (B, C, F, H, W) latents.
            timestep: scalar or (B,) diffusion step.
            encoder_hidden_states: (B, F, D) one CLIP image embedding per frame (zeros for the
                unconditional branch), or (B*F, L, D) already folded.
            pose_features: (B, C0, F, H, W) PoCtr output, added to ``conv_in``'s output.
            appearance: ReCtr features from :meth:`appearance_features` (batch B*F, or F when
                shared by every batch element, e.g. both CFG halves).
            taps: up-block indices whose outputs to return (default: the config's).
            sample_grad: False: the prediction carries no gradient; the up blocks after the last
                tap and the output head run under ``torch.no_grad`` (same values), so only the
                tapped features' graph is recorded.

        Returns:
            :class:`UNetOutput` with the (B, C, F, H, W) prediction and the tapped features.
        """
        b, _, frames, _, _ = sample.shape
        taps = tuple(self.config.feature_taps if taps is None else taps)
        x = fold(sample)  # (B, C, F, H, W) -> (B*F, C, H, W)
        ctx = encoder_hidden_states
        if ctx.dim() == 3 and ctx.shape[0] == b and ctx.shape[1] == frames:
            ctx = ctx.reshape(b * frames, 1, ctx.shape[-1])  # (B, F, D) -> (B*F, 1, D): a token per frame
        t = torch.as_tensor(timestep, device=x.device)
        t = t.reshape(-1).expand(b) if t.numel() in (1, b) else t
        t = t.repeat_interleave(frames)  # (B,) -> (B*F,): each folded frame gets its step
        temb = self.time_embedding(self.time_proj(t).to(dtype=x.dtype))
        if self.config.center_input_sample:
            x = 2 * x - 1.0
        x = self.conv_in(x)
        if pose_features is not None:
            x = x + fold(pose_features).to(x.dtype)
        feats = (
            None
            if appearance is None
            else [a if a.shape[0] == x.shape[0] else a.repeat(b, 1, 1, 1) for a in appearance]
        )

        skips = [x]
        for i, block in enumerate(self.down_blocks):
            x, block_skips = self._down(block, x, temb, ctx, frames, None if feats is None else feats[i])
            skips += block_skips
        x = self._mid(x, temb, ctx, frames)
        features: dict[int, torch.Tensor] = {}
        last_tap = max(taps, default=-1) if not sample_grad else len(self.up_blocks)
        for i, block in enumerate(self.up_blocks):
            n = len(block.resnets)
            block_skips, skips = skips[-n:], skips[:-n]
            size = skips[-1].shape[2:] if skips else None
            with torch.set_grad_enabled(torch.is_grad_enabled() and i <= last_tap):
                x = self._up(block, x, block_skips, temb, ctx, frames, size)
            if i in taps:
                features[i] = unfold(x, frames)
        with torch.set_grad_enabled(torch.is_grad_enabled() and sample_grad):
            x = self.conv_out(self.conv_act(self.conv_norm_out(x)))
        return UNetOutput(unfold(x, frames), features)

    def _down(
        self,
        block: nn.Module,
        x: torch.Tensor,
        temb: torch.Tensor,
        ctx: torch.Tensor,
        frames: int,
        feat: torch.Tensor | None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        skips = []
        attentions = getattr(block, "attentions", None)
        last = len(block.resnets) - 1
        for j, resnet in enumerate(block.resnets):
            x = self._run(resnet, x, temb)
            if attentions is not None:
                x = self._run(_attend, attentions[j], x, ctx)
            if j == last and feat is not None:
                x = x + feat.to(x.dtype)  # ReCtr: before the motion module and the downsampler
            x = self._motion(block.motion_modules[j], x, frames)
            skips.append(x)
        if block.downsamplers is not None:
            x = block.downsamplers[0](x)
            skips.append(x)
        return x, skips

    def _mid(self, x: torch.Tensor, temb: torch.Tensor, ctx: torch.Tensor, frames: int) -> torch.Tensor:
        block = self.mid_block
        x = self._run(block.resnets[0], x, temb)
        for attention, motion, resnet in zip(block.attentions, block.motion_modules, block.resnets[1:], strict=True):
            x = self._run(_attend, attention, x, ctx)
            x = self._motion(motion, x, frames)
            x = self._run(resnet, x, temb)
        return x

    def _up(
        self,
        block: nn.Module,
        x: torch.Tensor,
        skips: list[torch.Tensor],
        temb: torch.Tensor,
        ctx: torch.Tensor,
        frames: int,
        size: torch.Size | None,
    ) -> torch.Tensor:
        attentions = getattr(block, "attentions", None)
        for j, resnet in enumerate(block.resnets):
            x = torch.cat([x, skips.pop()], dim=1)  # skip connection on channels
            x = self._run(resnet, x, temb)
            if attentions is not None:
                x = self._run(_attend, attentions[j], x, ctx)
            x = self._motion(block.motion_modules[j], x, frames)
        if block.upsamplers is not None:
            # exact 2x unless the skip it meets next says otherwise (odd latent sizes)
            odd = size is not None and tuple(size) != (2 * x.shape[2], 2 * x.shape[3])
            x = block.upsamplers[0](x, size if odd else None)
        return x


def _attend(attention: nn.Module, x: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
    """A diffusers Transformer2DModel call, per frame (x is (B*F, C, H, W), ctx (B*F, L, D))."""
    return attention(x, encoder_hidden_states=ctx, return_dict=False)[0]
