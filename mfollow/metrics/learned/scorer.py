"""Streaming the learned metrics over a result/reference frame pair sequence (``mfollow eval``).

LPIPS is per frame (its mean is the video's score); FID compares the set of result frames with the
set of reference frames; FVD compares the sets of ``clip``-frame windows taken every ``stride``
frames. Frames go through in batches; clips are gathered from a rolling window, so memory stays
bounded by ``clip`` frames and one batch whatever the length.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mfollow.metrics.learned.frechet import feature_distance
from mfollow.metrics.learned.i3d import i3d_features, load_i3d
from mfollow.metrics.learned.inception import FIDInception
from mfollow.metrics.learned.lpips import LPIPS
from mfollow.metrics.learned.settings import LearnedSettings


def load_models(settings: LearnedSettings, weights: Path | None = None) -> dict[str, nn.Module]:
    """The networks the settings ask for, from the weights resolver (exit 3 with what to run)."""
    from mfollow.weights.registry import resolve

    models: dict[str, nn.Module] = {}
    if settings.lpips:
        models["lpips"] = LPIPS.from_folder(settings.lpips, resolve(f"lpips-{settings.lpips}", weights))
    if settings.fid:
        models["fid"] = FIDInception.from_folder(resolve("fid-inception", weights))
    if settings.fvd:
        models["fvd"] = load_i3d(resolve("fvd-i3d", weights), settings.device)
    return {k: m.to(settings.device) for k, m in models.items()}


class LearnedScorer:
    """Feed frame pairs with :meth:`add` (per-frame values back), then :meth:`finish`."""

    def __init__(self, settings: LearnedSettings, models: dict[str, nn.Module]) -> None:
        self.s = settings
        self.models = models
        self._frames: list[tuple[np.ndarray, np.ndarray]] = []  # FID batch waiting
        self._fid: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
        self._window: deque[tuple[np.ndarray, np.ndarray]] = deque(maxlen=settings.fvd_clip)
        self._clips: list[tuple[np.ndarray, np.ndarray]] = []  # FVD batch waiting
        self._fvd: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
        self._seen = 0

    def _tensor(self, frames: list[np.ndarray]) -> torch.Tensor:
        """HxWx3 uint8 frames -> (B, 3, H, W) float in [0, 1]."""
        x = torch.from_numpy(np.stack(frames)).to(self.s.device, torch.float32) / 255.0
        return x.permute(0, 3, 1, 2)  # (B, H, W, 3) -> (B, 3, H, W)

    @torch.inference_mode()
    def add(self, result: np.ndarray, reference: np.ndarray) -> dict[str, float]:
        row = {}
        if self.s.lpips:
            x = self._tensor([result, reference]) * 2 - 1  # [0, 1] -> [-1, 1]
            row["lpips"] = float(self.models["lpips"](x[:1], x[1:])[0])
        if self.s.fid:
            self._frames.append((result, reference))
            if len(self._frames) == self.s.batch:
                self._flush_fid()
        if self.s.fvd:
            self._window.append((result, reference))
            start = self._seen + 1 - self.s.fvd_clip
            if start >= 0 and start % self.s.fvd_stride == 0:
                a, b = (np.stack([w[k] for w in self._window]) for k in (0, 1))  # (T, H, W, 3) each
                self._clips.append((a, b))
                if len(self._clips) == self.s.batch:
                    self._flush_fvd()
        self._seen += 1
        return row

    def _flush_fid(self) -> None:
        if self._frames:
            for k in (0, 1):
                feats = self.models["fid"](self._tensor([f[k] for f in self._frames]))
                self._fid[k].append(feats.double().cpu().numpy())
            self._frames.clear()

    def _flush_fvd(self) -> None:
        if self._clips:
            for k in (0, 1):
                clips = np.stack([c[k] for c in self._clips])  # (B, T, H, W, 3)
                self._fvd[k].append(i3d_features(self.models["fvd"], clips, self.s.device))
            self._clips.clear()

    def finish(self) -> dict[str, float]:
        """The video-level scores asked for (``fid``, ``fvd``)."""
        out: dict[str, float] = {}
        if self.s.fid:
            self._flush_fid()
            out["fid"] = feature_distance(np.concatenate(self._fid[0]), np.concatenate(self._fid[1]))
        if self.s.fvd:
            self._flush_fvd()
            out["fvd"] = feature_distance(np.concatenate(self._fvd[0]), np.concatenate(self._fvd[1]))
        return out
