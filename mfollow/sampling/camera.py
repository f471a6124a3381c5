"""Camera mode: masked key/value injection into the decoder's self-attention (docs/method.md, §6).

In a step where camera mode is active, the reconstruction pass of a window *saves* the keys and
values of every decoder self-attention layer (``attn1`` of up blocks 1-3); the editing passes of
the same window and step then *inject* them: each layer attends over

    [ own K, V masked to the edit's person M_e ;  reconstruction K, V masked to the source
      background 1 - M_r ]

so the edited video can read the source's background (and so its camera motion) while its own
tokens keep to the predicted person. Queries are untouched; masked tokens stay in the softmax with
zero keys (as the release does). Unlike the release, nothing is stored across steps: the
reconstruction pass of the same step provides the keys and values (docs/method.md, §4).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F

Mode = Literal["off", "save", "inject"]


@dataclass
class CameraState:
    """Shared by the installed processors: the mode, saved K/V per layer, the window's masks
    (1, 1, N, H, W) at pixel size."""

    mode: Mode = "off"
    store: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    M_e: torch.Tensor | None = None
    M_r: torch.Tensor | None = None

    def token_mask(self, mask: torch.Tensor, tokens: int) -> torch.Tensor:
        """A (1, 1, N, H, W) mask at the layer's token grid: (N, tokens, 1)."""
        n, hm, wm = mask.shape[2], mask.shape[3], mask.shape[4]
        h = max(1, round((tokens * hm / wm) ** 0.5))
        w = tokens // h
        m = F.interpolate(mask[0].permute(1, 0, 2, 3), size=(h, w), mode="nearest")  # (N, 1, h, w)
        return m.reshape(n, h * w, 1)  # (N, 1, h, w) -> (N, h*w, 1)


class KVInjectionProcessor:
    """A self-attention processor that saves or injects keys and values (see the module doc)."""

    def __init__(self, name: str, state: CameraState) -> None:
        self.name, self.state = name, state

    def __call__(
        self, attn: Any, hidden_states: torch.Tensor, encoder_hidden_states: Any = None, **_: Any
    ) -> torch.Tensor:
        if hidden_states.dim() != 3 or encoder_hidden_states is not None:
            raise ValueError("camera injection applies to self-attention over (B, tokens, C) only")
        b, tokens, _c = hidden_states.shape
        q, k, v = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        s = self.state
        if s.mode == "save":
            s.store[self.name] = (k.detach(), v.detach())
        elif s.mode == "inject" and self.name in s.store:
            assert s.M_e is not None and s.M_r is not None
            k_ref, v_ref = s.store[self.name]
            m_e = s.token_mask(s.M_e, tokens).to(k.dtype)  # (N, tokens, 1)
            bg = 1 - s.token_mask(s.M_r, tokens).to(k.dtype)
            k = torch.cat([k * m_e, k_ref.to(k.dtype) * bg], dim=1)  # (B, 2*tokens, C)
            v = torch.cat([v * m_e, v_ref.to(v.dtype) * bg], dim=1)
        heads = attn.heads

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, -1, heads, t.shape[-1] // heads).transpose(1, 2)  # (B, T, C) -> (B, heads, T, C/heads)

        out = F.scaled_dot_product_attention(split(q), split(k), split(v))
        out = out.transpose(1, 2).reshape(b, tokens, -1)  # (B, heads, T, C/heads) -> (B, T, C)
        out = attn.to_out[1](attn.to_out[0](out))
        return out / attn.rescale_output_factor


@contextlib.contextmanager
def window(camera: CameraState | None, M_e: torch.Tensor, M_r: torch.Tensor) -> Iterator[None]:
    """Camera mode over one window's step: its passes start saving K/V (the reconstruction pass),
    :func:`switch` turns injection on for the editing passes; afterwards off, nothing kept."""
    if camera is None:
        yield
        return
    camera.store.clear()
    camera.mode, camera.M_e, camera.M_r = "save", M_e, M_r
    try:
        yield
    finally:
        camera.mode = "off"
        camera.store.clear()


def switch(camera: CameraState | None, mode: Mode) -> None:
    """Set the mode of the passes that follow (nothing without camera mode)."""
    if camera is not None:
        camera.mode = mode


def install(unet: Any) -> CameraState:
    """Put the processor on every decoder self-attention (``attn1`` in up blocks with attention)
    of ``unet`` and return the state that drives them."""
    state = CameraState()
    for i, block in enumerate(unet.up_blocks):
        for j, transformer in enumerate(getattr(block, "attentions", None) or []):
            for k, tb in enumerate(transformer.transformer_blocks):
                tb.attn1.set_processor(KVInjectionProcessor(f"up_blocks.{i}.attentions.{j}.{k}", state))
    return state


def uninstall(unet: Any) -> None:
    """Back to the default SDPA processor."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    for block in unet.up_blocks:
        for transformer in getattr(block, "attentions", None) or []:
            for tb in transformer.transformer_blocks:
                tb.attn1.set_processor(AttnProcessor2_0())
