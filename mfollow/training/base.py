"""Stage-1 initialisation of the full-size model from base weights (paper §2.2): the U-Net's 2-D
layers and the CLIP image encoder from ``sd-image-variations``, the VAE from ``sd-vae-ft-mse``;
motion modules start as the identity (zero output projection), ReCtr and PoCtr from scratch."""

from __future__ import annotations

from typing import Any

import torch

from mfollow.runtime.errors import WeightsError
from mfollow.weights.registry import resolve


def sd15_base_bundle(seed: int = 0) -> Any:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPVisionModelWithProjection

    from mfollow.models.bundle import ModelBundle

    siv, vae_dir = resolve("sd-image-variations"), resolve("sd-vae-ft-mse")  # missing -> exit 3
    bundle = ModelBundle.random("sd15", seed=seed)
    base = UNet2DConditionModel.from_pretrained(str(siv / "unet"), local_files_only=True).state_dict()
    missing, unexpected = bundle.unet.load_state_dict(base, strict=False)
    foreign = [k for k in missing if ".motion_modules." not in k and not k.startswith("appearance_adapter.")]
    if unexpected or foreign:
        example = (unexpected or foreign)[0]
        raise WeightsError(f"{siv / 'unet'}: does not match the sd15 U-Net (e.g. {example})")
    bundle.vae = AutoencoderKL.from_pretrained(str(vae_dir), local_files_only=True)
    bundle.image_encoder = CLIPVisionModelWithProjection.from_pretrained(
        str(siv / "image_encoder"), local_files_only=True
    )
    bundle.image_encoder.requires_grad_(False)
    torch.manual_seed(seed)
    return bundle
