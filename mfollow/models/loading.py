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


def check_weights(preset: str, weights: Path | None) -> str:
    """What :func:`load_bundle` would load, checked from the files alone (no torch, no reading of
    weights): the preset (``auto`` resolved), or the :class:`WeightsError` it would raise for a
    missing component or a bundle of another preset."""
    from mfollow.weights.registry import resolve

    if preset == "auto":
        preset = choose_preset(weights)
    if weights is not None and (weights / BUNDLE_FILE).is_file():
        found = read_meta(weights).get("preset")
        if found != preset:
            raise WeightsError(f"{weights}: a '{found}' bundle, but --preset {preset} was asked for")
        return preset
    if preset == "tiny":
        resolve("tiny", weights)
    elif preset == "sd15":
        for name in SD15_COMPONENTS:
            resolve(name, weights)
    return preset


def load_bundle(preset: str, weights: Path | None) -> tuple[ModelBundle, str]:
    """(bundle, identity). ``--weights`` may name a bundle folder (any preset) or a weights root
    searched for the sd15 components or a ``tiny/`` bundle (the package ships one). ``preset``
    may be ``auto`` (:func:`choose_preset`). The identity (files' names, sizes and mtimes) keys
    caches and checkpoints without re-hashing gigabytes."""
    from mfollow.models.bundle import ModelBundle
    from mfollow.weights.registry import resolve

    preset = check_weights(preset, weights)  # the same errors, before anything loads
    if weights is not None and (weights / BUNDLE_FILE).is_file():
        return ModelBundle.from_pretrained(weights), identity(weights)
    if preset == "tiny":
        folder = resolve("tiny", weights)
        return ModelBundle.from_pretrained(folder), identity(folder)
    if preset == "sd15":
        bundle = ModelBundle.from_components(weights)
        ids = [identity(resolve(n, weights)) for n in SD15_COMPONENTS]
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
