"""Model bundles on the Hugging Face Hub: ``MotionFollowerPipeline.from_pretrained("org/name")``.

A Hub repository holds what :meth:`mfollow.models.bundle.ModelBundle.save_pretrained` writes (the
diffusers layout: ``unet/``, ``poctr/``, ``vae/``, ``image_encoder/``, ``scheduler/``, each with its
``config.json`` and ``*.safetensors``, and the bundle file ``mfollow_bundle.json``). It is fetched
through ``huggingface_hub``'s cache (``HF_HUB_CACHE``), so a second load, or a load with
``offline=True`` or ``HF_HUB_OFFLINE=1``, reads the cache and opens no connection.
"""

from __future__ import annotations

import re
from pathlib import Path

from mfollow.runtime.errors import WeightsError

BUNDLE_PATTERNS = ["*.json", "*.safetensors"]  # a bundle's files; nothing else is fetched
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]*[A-Za-z0-9]")


def is_repo_id(name: str) -> bool:
    """``org/name`` that is not a path on this machine (a folder of that name wins)."""
    return _REPO_ID.fullmatch(name) is not None and not Path(name).exists() and ".." not in name


def snapshot(repo_id: str, *, revision: str | None = None, offline: bool | None = None) -> Path:
    """The local folder of ``repo_id`` at ``revision`` (default ``main``): downloaded into the
    Hub cache unless already there. ``offline`` (default: ``HF_HUB_OFFLINE``) reads the cache only.

    Raises:
        WeightsError: not in the cache when offline; no such repository or revision; no network.
    """
    import huggingface_hub
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    local_only = constants.HF_HUB_OFFLINE if offline is None else offline
    where = f"{repo_id}@{revision or 'main'}"
    try:
        folder = huggingface_hub.snapshot_download(
            repo_id, revision=revision, allow_patterns=BUNDLE_PATTERNS, local_files_only=local_only
        )
    except LocalEntryNotFoundError as exc:
        if local_only:
            raise WeightsError(
                f"{where}: no such folder here, and not in the Hugging Face cache ({constants.HF_HUB_CACHE}), "
                "which alone is read offline",
                hint="load it once online (unset HF_HUB_OFFLINE), or pass the bundle's folder",
            ) from exc
        raise WeightsError(f"{where}: cannot be fetched ({exc})", hint="check the network, or pass a folder") from exc
    except RevisionNotFoundError as exc:
        raise WeightsError(f"{where}: no such revision on the Hub") from exc
    except RepositoryNotFoundError as exc:
        raise WeightsError(
            f"{repo_id}: no such folder here, nor a model repository on the Hub (or it is private)",
            hint="check the name; for a private repository log in with 'hf auth login'",
        ) from exc
    except OSError as exc:  # network and cache errors (requests' and httpx's errors are OSErrors)
        raise WeightsError(f"{where}: cannot be fetched ({exc})", hint="check the network, or pass a folder") from exc
    return Path(folder)
