"""The FVD feature extractor: StyleGAN-V's I3D TorchScript file (Kinetics-400), run as it is.

Its ``forward(videos, rescale, resize, return_features)`` takes (B, 3, T, H, W) float videos; with
``rescale=True`` it maps [0, 255] to [-1, 1] and with ``resize=True`` it resizes to 224x224 itself;
``return_features=True`` gives the 400-d logits layer before the softmax. StyleGAN-V calls it with
all three set, which is what :func:`i3d_features` does.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from mfollow.runtime.errors import WeightsError

FILE = "auxiliary/i3d_torchscript.pt"


def load_i3d(folder: Path, device: str = "cpu") -> torch.jit.ScriptModule:
    path = folder / FILE
    try:
        with warnings.catch_warnings():  # TorchScript is deprecated, but the published file is one
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location=device).eval()
    except (OSError, RuntimeError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsError(f"{path}: not a TorchScript I3D ({reason})") from exc


@torch.inference_mode()
def i3d_features(detector: torch.nn.Module, clips: np.ndarray, device: str = "cpu") -> np.ndarray:
    """(B, T, H, W, 3) uint8 clips -> (B, D) float64 features."""
    x = torch.from_numpy(np.ascontiguousarray(clips)).to(device=device, dtype=torch.float32)
    x = x.permute(0, 4, 1, 2, 3)  # (B, T, H, W, 3) -> (B, 3, T, H, W)
    out = detector(x, rescale=True, resize=True, return_features=True)
    return out.detach().cpu().double().numpy()
