"""The loss curve as a PNG, drawn with Pillow (no plotting library needed)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from mfollow.io.atomic import atomic_path

W, H, MARGIN = 720, 400, 56


def plot_losses(rows: list[tuple[int, float, float]], path: Path, *, title: str = "", window: int = 50) -> None:
    """Loss per step (thin grey) and its moving average over ``window`` steps (blue), log scale."""
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    d.text((MARGIN, 12), f"{title}  (log10 loss; blue: mean of {window} steps)", fill="black")
    d.rectangle([MARGIN, MARGIN - 20, W - 20, H - MARGIN], outline="black")
    good = [(s, v) for s, v, _ in rows if v > 0 and math.isfinite(v)]
    if len(good) >= 2:
        steps = np.array([s for s, _ in good], dtype=float)
        logs = np.log10([v for _, v in good])
        k = min(window, len(logs))
        smooth = np.convolve(logs, np.ones(k) / k, mode="valid")
        lo, hi = float(logs.min()), float(logs.max())
        hi = hi if hi > lo else lo + 1.0

        def xy(s: float, v: float) -> tuple[float, float]:
            x = MARGIN + (s - steps[0]) / max(steps[-1] - steps[0], 1) * (W - 20 - MARGIN)
            y = (H - MARGIN) - (v - lo) / (hi - lo) * (H - 2 * MARGIN + 20)
            return x, y

        d.line([xy(s, v) for s, v in zip(steps, logs, strict=True)], fill=(190, 190, 190), width=1)
        d.line([xy(s, v) for s, v in zip(steps[k - 1 :], smooth, strict=True)], fill=(20, 60, 200), width=2)
        d.text((6, MARGIN - 24), f"{hi:.2f}", fill="black")
        d.text((6, H - MARGIN - 6), f"{lo:.2f}", fill="black")
        d.text((MARGIN, H - MARGIN + 6), f"step {int(steps[0])}", fill="black")
        d.text((W - 110, H - MARGIN + 6), f"step {int(steps[-1])}", fill="black")
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG")
