"""A model bundle folder's metadata file, read without torch (so that commands can check their
``--weights`` before the model's libraries load)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mfollow.runtime.errors import WeightsError

BUNDLE_FILE = "mfollow_bundle.json"
BUNDLE_FORMAT = 1
BUNDLE_COMPONENTS = ("unet", "poctr", "vae", "image_encoder")  # one folder each, with config.json


def read_meta(directory: Path) -> dict[str, Any]:
    """A bundle folder's ``mfollow_bundle.json`` (format checked)."""
    meta_path = directory / BUNDLE_FILE
    if not meta_path.is_file():
        raise WeightsError(f"{directory}: not a model bundle (no {BUNDLE_FILE})")
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        raise WeightsError(f"{directory}: unreadable bundle metadata ({exc})") from exc
    if meta.get("format") != BUNDLE_FORMAT:
        raise WeightsError(f"{meta_path}: bundle format {meta.get('format')!r} is not {BUNDLE_FORMAT}")
    return meta


def check_safetensors(path: Path) -> None:
    """A safetensors file whose header reads and whose tensors lie inside the file (the 8-byte
    header length, its JSON, every tensor's ``data_offsets``): checked without loading a tensor.

    Raises:
        WeightsError: missing, truncated or not safetensors, naming the file.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if size < 8 or n <= 0 or 8 + n > size:
                raise ValueError("no safetensors header")
            header = json.loads(fh.read(n))
    except FileNotFoundError:
        raise WeightsError(f"{path}: missing") from None
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise WeightsError(f"{path}: not a readable safetensors file ({exc})") from exc
    end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    if 8 + n + end > size:
        raise WeightsError(f"{path}: truncated ({size} bytes, the header needs {8 + n + end})")


def check_bundle(directory: Path) -> dict[str, Any]:
    """A bundle folder complete and readable, from its files alone: the metadata, and each
    component's ``config.json`` and safetensors weights. Returns the metadata.

    Raises:
        WeightsError: naming the first missing or unreadable file.
    """
    meta = read_meta(directory)
    for name in BUNDLE_COMPONENTS:
        folder = directory / name
        try:
            json.loads((folder / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise WeightsError(f"{folder / 'config.json'}: missing or unreadable ({exc})") from exc
        files = sorted(folder.glob("*.safetensors"))
        if not files:
            raise WeightsError(f"{folder}: no safetensors weights")
        for f in files:
            check_safetensors(f)
    return meta
