"""Choosing the model bundle a command runs with (``--weights`` and ``--preset``)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from mfollow.models.meta import BUNDLE_FILE, read_meta
from mfollow.runtime.errors import WeightsError

if TYPE_CHECKING:
    from mfollow.models.bundle import ModelBundle

SD15_COMPONENTS = ("motionfollower", "sd-vae-ft-mse", "sd-image-variations")


def choose_preset(weights: Path | None) -> str:
    """``--preset auto``: the preset of a bundle folder given as ``--weights``; else sd15 when all
    its components are installed; else ``tiny`` (the bundled demo model)."""
    from mfollow.weights.registry import locate

    if weights is not None and (weights / BUNDLE_FILE).is_file():
        return str(read_meta(weights).get("preset"))
    if all(locate(n, weights).path is not None for n in SD15_COMPONENTS):
        return "sd15"
    return "tiny"


def asked_weights(weights: Path | None) -> tuple[Path, str] | None:
    """The weights folder the user asked for, and how they asked (``--weights`` wins over
    ``MFOLLOW_WEIGHTS``); None when nothing was asked for."""
    import os

    from mfollow.weights.registry import ENV_VAR

    if weights is not None:
        return Path(weights), f"--weights {weights}"
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR]), f"{ENV_VAR}={os.environ[ENV_VAR]}"
    return None


def check_weights(preset: str, weights: Path | None) -> str:
    """What :func:`load_bundle` would load, checked from the files alone (no torch; safetensors
    headers only): the preset (``auto`` resolved), or the :class:`WeightsError` it would raise.

    Weights asked for (``--weights``, ``MFOLLOW_WEIGHTS``) must hold the model: a missing folder, an
    incomplete or unreadable bundle, or a root without the preset's model is refused; the bundled
    demo model is used only when nothing was asked for."""
    from mfollow.models.meta import check_bundle
    from mfollow.weights.registry import locate, resolve

    asked = asked_weights(weights)
    if asked is not None and not asked[0].is_dir():
        raise WeightsError(f"{asked[1]}: no such folder", hint="give a model bundle folder or a weights root")
    if weights is not None and (weights / BUNDLE_FILE).is_file():
        found = check_bundle(weights).get("preset")
        if preset not in ("auto", found):
            raise WeightsError(f"{weights}: a '{found}' bundle, but --preset {preset} was asked for")
        return str(found)
    if preset == "auto":
        preset = choose_preset(weights)
    if preset == "tiny":
        folder = resolve("tiny", weights)
        if asked is not None and locate("tiny", weights).origin == "bundled":
            raise WeightsError(
                f"{asked[1]}: no model there (a bundle folder, a tiny/ bundle, or the sd15 components)",
                hint="leave --weights out for the bundled demo model",
            )
        check_bundle(folder)
    elif preset == "sd15":
        for name in SD15_COMPONENTS:
            resolve(name, weights)
    return preset


def load_bundle(preset: str, weights: Path | None) -> tuple[ModelBundle, str]:
    """(bundle, identity). ``--weights`` may name a bundle folder (any preset) or a weights root
    searched for the sd15 components or a ``tiny/`` bundle (the package ships one). ``preset``
    may be ``auto`` (:func:`choose_preset`). The identity (files' names, sizes and mtimes) keys
    caches and checkpoints without re-hashing gigabytes."""
    import torch

    preset = check_weights(preset, weights)  # the same errors, before anything loads
    with torch.inference_mode(False):  # weights made under inference_mode could not join the guidance's autograd
        return _load(preset, weights)


def _load(preset: str, weights: Path | None) -> tuple[ModelBundle, str]:
    from mfollow.models.bundle import ModelBundle
    from mfollow.weights.registry import resolve

    if weights is not None and (weights / BUNDLE_FILE).is_file():
        return ModelBundle.from_pretrained(weights), identity(weights)
    if preset == "tiny":
        folder = resolve("tiny", weights)
        return ModelBundle.from_pretrained(folder), identity(folder)
    if preset == "sd15":
        bundle = ModelBundle.from_components(weights)
        folders = [resolve(n, weights) for n in SD15_COMPONENTS]
        bundle.source = ", ".join(str(f) for f in folders)
        ids = [identity(f) for f in folders]
        return bundle, hashlib.sha256("".join(ids).encode()).hexdigest()
    raise WeightsError(
        f"no weights for the '{preset}' preset",
        hint="pass --weights BUNDLE_DIR (a folder saved by ModelBundle.save_pretrained)",
    )


def identity(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(q for q in folder.rglob("*") if q.is_file()):
        st = p.stat()
        h.update(f"{p.relative_to(folder).as_posix()}:{st.st_size}:{st.st_mtime_ns};".encode())
    return h.hexdigest()
