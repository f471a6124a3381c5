"""Each window's conditioning (paper Sec. 3.1): CLIP context of the source frames, PoCtr features
of the source and edit poses, ReCtr appearance features, and the masks M_r and M_e; computed once
per window and kept in memory (one window) or spilled to disk (several)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from mfollow.edit.inputs import ClipSource
from mfollow.models.bundle import ModelBundle
from mfollow.sampling.state import Conditioning
from mfollow.sampling.windows import Window

CONTEXT_CHUNK = 16  # source frames per CLIP image-encoder batch


class WindowConditioner:
    """Builds each window's :class:`Conditioning` once; keeps it in memory when there is a single
    window, otherwise writes it to ``spill_dir`` and reads it back on later steps."""

    def __init__(
        self, bundle: ModelBundle, inputs: ClipSource, device: torch.device, dtype: torch.dtype, spill_dir: Path | None
    ) -> None:
        self.b, self.inputs, self.device, self.dtype, self.spill = bundle, inputs, device, dtype, spill_dir
        self._context: dict[int, torch.Tensor] = {}  # chunk index -> (n, D)
        self._memory: dict[tuple[int, int], Conditioning] = {}

    def context(self, w: Window) -> torch.Tensor:
        """(1, N, D) CLIP embeddings of the window's source frames. Computed once per chunk of 16
        frames on a fixed grid (frames 16k..16k+15), so a frame's embedding does not depend on
        which windows a process runs."""
        n = self.inputs.n
        for k in range(w.start // CONTEXT_CHUNK, (w.stop - 1) // CONTEXT_CHUNK + 1):
            if k not in self._context:
                a, b = k * CONTEXT_CHUNK, min(n, (k + 1) * CONTEXT_CHUNK)
                self._context[k] = self.b.clip_context(self.inputs.frames.get(a, b)).to(self.device, self.dtype)
        first = w.start // CONTEXT_CHUNK
        chunks = torch.cat([self._context[k] for k in range(first, (w.stop - 1) // CONTEXT_CHUNK + 1)])
        return chunks[w.start - first * CONTEXT_CHUNK : w.stop - first * CONTEXT_CHUNK][None]  # (N, D) -> (1, N, D)

    def _video(self, arr: np.ndarray, lo: float, hi: float) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(arr)).to(self.device, torch.float32) / 255.0
        x = x.permute(3, 0, 1, 2)[None]  # (N, H, W, 3) -> (1, 3, N, H, W)
        return (lo + (hi - lo) * x).to(self.dtype)

    def _build(self, w: Window) -> dict[str, torch.Tensor]:
        c, a, b = self.inputs, w.start, w.stop
        with torch.no_grad():
            out = {"pose_e": self.b.poctr(self._video(c.edit_poses.get(a, b), 0.0, 1.0))}
            source_pose = self._video(c.source_poses.get(a, b), 0.0, 1.0)
            out["pose_r"] = self.b.poctr(source_pose)
            frames = self._video(c.frames.get(a, b), -1.0, 1.0)
            for k, f in enumerate(self.b.unet.appearance_features(frames)):
                out[f"appearance.{k}"] = f
        out["M_e"] = torch.from_numpy(c.edit_masks.get(a, b)).to(self.device, torch.float32)[None, None]
        out["M_r"] = torch.from_numpy(c.source_masks.get(a, b)).to(self.device, torch.float32)[None, None]
        return out

    def _pack(self, w: Window, t: dict[str, torch.Tensor]) -> Conditioning:
        M_e = t["M_e"]  # (1, 1, N, H, W)
        latent = tuple(t["pose_e"].shape[-2:])
        M_e_latent = torch.nn.functional.interpolate(M_e[0], size=latent, mode="nearest")[None]
        appearance = [t[f"appearance.{k}"] for k in range(sum(key.startswith("appearance.") for key in t))]
        return Conditioning(self.context(w), t["pose_r"], t["pose_e"], appearance, M_e, t["M_r"], M_e_latent)

    def __call__(self, w: Window) -> Conditioning:
        key = (w.start, w.stop)
        if key in self._memory:
            return self._memory[key]
        if self.spill is None:
            self._memory[key] = self._pack(w, self._build(w))
            return self._memory[key]
        from safetensors.torch import load_file, save_file

        path = self.spill / f"{w.start}-{w.stop}.safetensors"
        if path.is_file():
            tensors = load_file(str(path), device=str(self.device))
        else:
            tensors = self._build(w)
            save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
        return self._pack(w, tensors)
