"""Choosing the model bundle a command runs with (``--weights`` and ``--preset``)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from mfollow.errors import WeightsError
from mfollow.models.bundle import BUNDLE_FILE, ModelBundle


def load_bundle(preset: str, weights: Path | None) -> tuple[ModelBundle, str]:
    """(bundle, identity). ``--weights`` may name a bundle folder (any preset) or a weights root
    searched for the sd15 components. The identity (files' names, sizes and mtimes) keys caches
    and checkpoints without re-hashing gigabytes."""
    if weights is not None and (weights / BUNDLE_FILE).is_file():
        bundle = ModelBundle.from_pretrained(weights)
        if bundle.preset != preset:
            raise WeightsError(f"{weights}: a '{bundle.preset}' bundle, but --preset {preset} was asked for")
        return bundle, identity(weights)
    if preset == "sd15":
        bundle = ModelBundle.from_components(weights)
        from mfollow.models.weights import resolve

        ids = [identity(resolve(n, weights)) for n in ("motionfollower", "sd-vae-ft-mse", "sd-image-variations")]
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
