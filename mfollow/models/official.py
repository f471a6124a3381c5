"""``mfollow weights import --official`` and ``weights inspect``: check checkpoints against a
preset's module tree (built on the meta device: no memory, no weights) and convert the official
release into our layout (the ``motionfollower`` component: safetensors + configs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mfollow.models.checkpoint import (
    Census,
    StateDict,
    compare,
    load_state_dict,
    normalise_keys,
    raise_for,
    read_official,
    save_state_dict,
)
from mfollow.models.controllers import PoseController
from mfollow.models.presets import get_preset
from mfollow.models.unet3d import UNet3D
from mfollow.runtime.errors import WeightsError
from mfollow.weights.registry import locate
from mfollow.weights.stamps import write_stamp

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"


@dataclass
class Skeletons:
    """A preset's networks on the meta device: key names, shapes and configs only."""

    unet: UNet3D
    poctr: PoseController

    @classmethod
    def of(cls, preset: str) -> Skeletons:
        p = get_preset(preset)
        with torch.device("meta"):
            return cls(UNet3D(**p.unet), PoseController(**p.poctr))

    def shapes(self, which: str) -> dict[str, torch.Size]:
        return {k: v.shape for k, v in getattr(self, which).state_dict().items()}


def base_unet_state(explicit: Path | None) -> StateDict | None:
    """The base ``sd-image-variations`` U-Net weights, when installed (official step a)."""
    loc = locate("sd-image-variations", explicit)
    if loc.path is None:
        return None
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
        if (loc.path / "unet" / name).is_file():
            return load_state_dict(loc.path / "unet" / name)
    return None


def import_official(
    source: Path,
    dest: Path,
    *,
    preset: str = "sd15",
    base: StateDict | None = None,
    allow_missing: bool = False,
    allow_unexpected: bool = False,
) -> dict[str, Census]:
    """Convert the official files in ``source`` into ``dest`` (the ``motionfollower`` folder).

    Returns one census per network. Nothing is written unless both pass (or the caller allowed
    missing / unexpected keys); shape mismatches always fail.
    """
    unet_state, poctr_state, read = read_official(source, base)
    skeleton = Skeletons.of(preset)
    unet_census, poctr_census = read, Census(files={"poctr.pth": read.files.pop("poctr.pth")})
    compare(unet_state, skeleton.shapes("unet"), unet_census)
    compare(poctr_state, skeleton.shapes("poctr"), poctr_census)
    raise_for(unet_census, f"{source}: U-Net", allow_missing=allow_missing, allow_unexpected=allow_unexpected)
    raise_for(poctr_census, f"{source / 'poctr.pth'}", allow_missing=allow_missing, allow_unexpected=allow_unexpected)
    known_unet = skeleton.shapes("unet")
    known_poctr = skeleton.shapes("poctr")
    try:
        for name, model, state, known in (
            ("unet", skeleton.unet, unet_state, known_unet),
            ("poctr", skeleton.poctr, poctr_state, known_poctr),
        ):
            folder = dest / name
            folder.mkdir(parents=True, exist_ok=True)
            kept = {k: v.to(torch.float32) for k, v in state.items() if k in known}
            save_state_dict(kept, folder / WEIGHTS_NAME, metadata={"format": "pt", "source": "MotionFollower official"})
            model.save_config(folder)
        write_stamp(dest, source=str(source), preset=preset)
    except OSError as exc:
        raise WeightsError(f"{dest}: cannot write the imported weights ({exc.strerror or exc})") from exc
    return {"unet": unet_census, "poctr": poctr_census}


def inspect_file(path: Path, preset: str = "sd15", loaded: StateDict | None = None) -> tuple[str, Census]:
    """Compare one checkpoint with the preset's U-Net or PoCtr (whichever it matches better);
    ``loaded``: the file's tensors, already read by :func:`load_state_dict`."""
    census = Census()
    state = normalise_keys(load_state_dict(path) if loaded is None else loaded, census)
    census.files[path.name] = len(state)
    skeleton = Skeletons.of(preset)
    scores = {which: len(set(state) & set(skeleton.shapes(which))) for which in ("unet", "poctr")}
    which = max(scores, key=lambda w: scores[w])
    compare(state, skeleton.shapes(which), census)
    return which, census
