"""A model bundle: every network MotionFollower runs, saved as one folder of safetensors + JSON.

Layout (``save_pretrained`` / ``from_pretrained``)::

    BUNDLE/mfollow_bundle.json              {"format": 1, "preset": ..., "mfollow_version": ...}
    BUNDLE/unet/{config.json, diffusion_pytorch_model.safetensors}        UNet3D (+ ReCtr)
    BUNDLE/poctr/{config.json, diffusion_pytorch_model.safetensors}       PoseController
    BUNDLE/vae/{config.json, diffusion_pytorch_model.safetensors}         AutoencoderKL
    BUNDLE/image_encoder/{config.json, model.safetensors}                 CLIPVisionModelWithProjection
    BUNDLE/scheduler/scheduler_config.json                                DDIMScheduler settings
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mfollow.io.atomic import atomic_write_json
from mfollow.models.controllers import PoseController
from mfollow.models.meta import BUNDLE_COMPONENTS, BUNDLE_FILE, BUNDLE_FORMAT, read_meta
from mfollow.models.presets import SCHEDULER, get_preset
from mfollow.models.unet3d import UNet3D
from mfollow.runtime.errors import WeightsError
from mfollow.version import __version__
from mfollow.weights.registry import resolve

COMPONENTS = BUNDLE_COMPONENTS
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)  # OpenAI CLIP preprocessing
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ModelBundle:
    preset: str
    unet: UNet3D
    poctr: PoseController
    vae: Any  # diffusers AutoencoderKL
    image_encoder: Any  # transformers CLIPVisionModelWithProjection
    scheduler_config: dict[str, Any]
    source: str | None = None  # the folder it was loaded from (None: built in memory)
    resident: frozenset[str] = frozenset()  # the modules on the run's device (place/to)

    @classmethod
    def random(cls, preset: str = "tiny", seed: int = 0) -> ModelBundle:
        """Freshly initialised networks of a preset (what training starts from)."""
        from diffusers import AutoencoderKL
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        p = get_preset(preset)
        torch.manual_seed(seed)  # module initialisers draw from the global generator
        return cls(
            preset=p.name,
            unet=UNet3D(**p.unet),
            poctr=PoseController(**p.poctr),
            vae=AutoencoderKL(**p.vae),
            image_encoder=CLIPVisionModelWithProjection(CLIPVisionConfig(**p.image_encoder)),
            scheduler_config=dict(SCHEDULER),
        )

    @property
    def latent_scale(self) -> float:
        """The VAE's latent scaling factor (Stable Diffusion's 0.18215 unless the config says)."""
        return float(getattr(self.vae.config, "scaling_factor", 0.18215))

    @property
    def vae_factor(self) -> int:
        """How many frame pixels one latent pixel spans per side: 2 per VAE downsampling stage
        (8 for Stable Diffusion's VAE, 4 for the tiny preset's)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    def modules(self) -> dict[str, torch.nn.Module]:
        return {"unet": self.unet, "poctr": self.poctr, "vae": self.vae, "image_encoder": self.image_encoder}

    def eval(self) -> ModelBundle:
        for m in self.modules().values():
            m.eval().requires_grad_(False)
        return self

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> ModelBundle:
        _quiet_hf()
        for m in self.modules().values():
            m.to(device=device, dtype=dtype)
        self.resident = frozenset(self.modules())
        return self

    def place(self, resident: Iterable[str], device: torch.device | str, dtype: torch.dtype | None = None) -> None:
        """Offloading (``--offload``): the ``resident`` modules (``unet``, ``poctr``, ``vae``,
        ``image_encoder``) on ``device``, every other one on the CPU, all in ``dtype``; the CUDA
        cache is emptied of what moved out. :attr:`resident` says which are on ``device``."""
        _quiet_hf()
        wanted = frozenset(resident)
        for name, m in self.modules().items():
            m.to(device=device if name in wanted else "cpu", dtype=dtype)
        self.resident = wanted
        if torch.device(device).type == "cuda":
            torch.cuda.empty_cache()

    # ----------------------------------------------------------------------------- saving
    def save_pretrained(self, directory: Path) -> None:
        """Write the bundle layout; the bundle file is written last, so a folder without it is
        incomplete and is refused by :meth:`from_pretrained`."""
        _quiet_hf()
        directory.mkdir(parents=True, exist_ok=True)
        (directory / BUNDLE_FILE).unlink(missing_ok=True)
        for name, module in self.modules().items():
            module.save_pretrained(directory / name, safe_serialization=True)
        (directory / "scheduler").mkdir(exist_ok=True)
        atomic_write_json(directory / "scheduler" / "scheduler_config.json", self.scheduler_config)
        atomic_write_json(
            directory / BUNDLE_FILE, {"format": BUNDLE_FORMAT, "preset": self.preset, "mfollow_version": __version__}
        )

    @classmethod
    def from_components(cls, explicit: Path | None = None) -> ModelBundle:
        """The sd15 bundle from installed components: the imported ``motionfollower`` U-Net and
        PoCtr, the ``sd-vae-ft-mse`` VAE and the ``sd-image-variations`` image encoder."""
        from diffusers import AutoencoderKL
        from transformers import CLIPVisionModelWithProjection

        _quiet_hf()
        mf, vae, siv = (resolve(n, explicit) for n in ("motionfollower", "sd-vae-ft-mse", "sd-image-variations"))
        loaded: dict[str, Any] = {}
        for name, load, folder in (
            ("unet", UNet3D.from_pretrained, mf / "unet"),
            ("poctr", PoseController.from_pretrained, mf / "poctr"),
            ("vae", AutoencoderKL.from_pretrained, vae),
            ("image_encoder", CLIPVisionModelWithProjection.from_pretrained, siv / "image_encoder"),
        ):
            try:
                loaded[name] = load(str(folder), local_files_only=True)
            except (OSError, ValueError, RuntimeError) as exc:
                raise WeightsError(f"{folder}: cannot load ({str(exc).splitlines()[0]})") from exc
        for name in ("unet", "poctr"):
            _check_keys(mf / name, loaded[name])
        return cls(preset="sd15", scheduler_config=dict(SCHEDULER), **loaded).eval()

    @classmethod
    def from_pretrained(cls, directory: Path) -> ModelBundle:
        """Load a bundle folder offline. Raises :class:`WeightsError` naming what is wrong."""
        meta = read_meta(directory)
        try:
            scheduler = json.loads((directory / "scheduler" / "scheduler_config.json").read_text())
        except (OSError, ValueError) as exc:
            raise WeightsError(f"{directory}: unreadable bundle metadata ({exc})") from exc
        loaded = {name: load_component(directory, name) for name in COMPONENTS}
        bundle = cls(preset=str(meta.get("preset")), scheduler_config=scheduler, **loaded).eval()
        bundle.source = str(directory)
        return bundle

    # -------------------------------------------------------------------------- conditioning
    def clip_pixels(self, frames: np.ndarray) -> torch.Tensor:
        """The image encoder's input for each frame: (F, H, W, 3) uint8 -> (F, 3, S, S).

        Frames are resized to the encoder's square input with bicubic filtering and normalised
        with the OpenAI CLIP mean and std (the official preprocessing, docs/method.md, §2).
        """
        from PIL import Image

        size = int(self.image_encoder.config.image_size)
        bicubic = Image.Resampling.BICUBIC
        resized = np.stack([np.asarray(Image.fromarray(f).resize((size, size), bicubic)) for f in frames])
        p = next(self.image_encoder.parameters())
        x = torch.from_numpy(resized).to(device=p.device, dtype=torch.float32)
        x = x.permute(0, 3, 1, 2) / 255.0  # (F, S, S, 3) -> (F, 3, S, S) in [0, 1]
        mean = torch.tensor(CLIP_MEAN, device=p.device)[:, None, None]
        std = torch.tensor(CLIP_STD, device=p.device)[:, None, None]
        return ((x - mean) / std).to(p.dtype)

    def clip_context(self, frames: np.ndarray) -> torch.Tensor:
        """Each frame's projected CLIP image embedding: (F, H, W, 3) uint8 -> (F, D)."""
        with torch.no_grad():
            return self.image_encoder(pixel_values=self.clip_pixels(frames)).image_embeds


def load_component(directory: Path, name: str) -> Any:
    """One network of a bundle folder (``unet``, ``poctr``, ``vae``, ``image_encoder``), checked
    key by key, in float32 (files may be saved in any precision; the bundled model's are float16)."""
    from diffusers import AutoencoderKL
    from transformers import CLIPVisionModelWithProjection

    _quiet_hf()
    load = {
        "unet": UNet3D.from_pretrained,
        "poctr": PoseController.from_pretrained,
        "vae": AutoencoderKL.from_pretrained,
        "image_encoder": CLIPVisionModelWithProjection.from_pretrained,
    }[name]
    if not (directory / name / "config.json").is_file():
        raise WeightsError(f"{directory / name}: component missing")
    try:
        module = load(str(directory / name), local_files_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise WeightsError(f"{directory / name}: cannot load ({str(exc).splitlines()[0]})") from exc
    _check_keys(directory / name, module)
    return module.to(torch.float32).eval()


def _check_keys(folder: Path, module: torch.nn.Module) -> None:
    """The libraries only warn about keys a file has and the model lacks (and may fill missing ones
    with fresh values): compare the saved key set with the model's and refuse any difference."""
    from safetensors import safe_open

    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise WeightsError(f"{folder}: no safetensors weights")
    saved: set[str] = set()
    for f in files:
        with safe_open(str(f), framework="pt") as fh:
            saved |= set(fh.keys())
    expected = set(module.state_dict())
    missing, unexpected = sorted(expected - saved), sorted(saved - expected)
    if missing or unexpected:
        example = (missing or unexpected)[0]
        raise WeightsError(
            f"{folder}: {len(missing)} missing and {len(unexpected)} unexpected keys, e.g. {example}",
            hint="the bundle does not match its config",
        )


def _quiet_hf() -> None:
    """No progress bars from transformers/diffusers: progress is the CLI's business."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    diffusers_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()  # their warnings are about their internals, not the user's input
    diffusers_logging.set_verbosity_error()
