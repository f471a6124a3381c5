"""ImageNet trunks for LPIPS with torchvision's parameter names (``features.<i>.weight``), so the
published ``alexnet-owt-7be5be79.pth`` / ``vgg16-397923af.pth`` files load as they are.

Each returns the five ReLU activations LPIPS compares (alex: relu1..relu5; vgg: relu1_2, relu2_2,
relu3_3, relu4_3, relu5_3).
"""

from __future__ import annotations

import torch
from torch import nn

#: VGG-16's convolution widths, "M" a 2x2 max pool (torchvision's configuration "D").
VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)


class _Trunk(nn.Module):
    """``features`` (an nn.Sequential numbered like torchvision's) and the indices after which an
    activation is returned."""

    channels: tuple[int, ...]
    taps: tuple[int, ...]
    features: nn.Sequential

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) normalised images -> five (B, C_k, H_k, W_k) activations."""
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
                if len(out) == len(self.taps):
                    break
        return out


class AlexNetFeatures(_Trunk):
    channels = (64, 192, 384, 256, 256)
    taps = (1, 4, 7, 9, 11)

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(inplace=False),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(inplace=False),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(inplace=False),
        )


class VGG16Features(_Trunk):
    channels = (64, 128, 256, 512, 512)
    taps = (3, 8, 15, 22, 29)

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = 3
        for c in VGG16_CFG:
            if c == "M":
                layers.append(nn.MaxPool2d(2, stride=2))
            else:
                layers += [nn.Conv2d(width, int(c), 3, padding=1), nn.ReLU(inplace=False)]
                width = int(c)
        self.features = nn.Sequential(*layers)


TRUNKS: dict[str, type[_Trunk]] = {"alex": AlexNetFeatures, "vgg": VGG16Features}
