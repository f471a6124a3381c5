"""LPIPS v0.1 (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric", 2018, Eq. 1): d(x, y) = sum_l mean_hw || w_l * (unit(f_l(x)) - unit(f_l(y))) ||^2,
with f_l the trunk's l-th activation, unit() the division by the channel-wise L2 norm (+1e-10)
and w_l the learnt non-negative per-channel weights (a 1x1 convolution without bias).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mfollow.metrics.learned.backbones import TRUNKS
from mfollow.metrics.learned.published import load_into, load_pth

#: The fixed input shift and scale of LPIPS v0.1 (applied to images in [-1, 1]).
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)


def files(net: str) -> tuple[str, str]:
    """(trunk file, linear-layer file) of the ``lpips-<net>`` weights component."""
    from mfollow.weights.registry import get_component

    trunk, linear = (f.path for f in get_component(f"lpips-{net}").files)
    return trunk, linear


def unit(f: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """(B, C, H, W) features divided by their L2 norm over channels."""
    return f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class LPIPS(nn.Module):
    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        self.net_name = net
        self.net = TRUNKS[net]()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in self.net.channels)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False).eval()

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) images in [-1, 1] -> (B,) distances."""
        fx = self.net((x - self.shift) / self.scale)
        fy = self.net((y - self.shift) / self.scale)
        total = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)
        for lin, a, b in zip(self.lins, fx, fy, strict=True):
            total = total + lin((unit(a) - unit(b)).pow(2)).mean(dim=(1, 2, 3))  # (B, 1, h, w) -> (B,)
        return total

    @classmethod
    def from_folder(cls, net: str, folder: Path) -> LPIPS:
        """Load the ``lpips-<net>`` component: torchvision's trunk file and the linear layers."""
        model = cls(net)
        trunk, linear = (folder / name for name in files(net))
        load_into(model.net, load_pth(trunk), trunk, ignore=("classifier.",))
        # the lpips package stores lin<k>.model.1.weight (model.0 is a dropout)
        rename = {f"lin{k}.model.1.weight": f"{k}.weight" for k in range(len(model.lins))}
        load_into(model.lins, load_pth(linear), linear, rename=rename)
        return model
