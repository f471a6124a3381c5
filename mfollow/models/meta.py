"""A model bundle folder's metadata file, read without torch (so that commands can check their
``--weights`` before the model's libraries load)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mfollow.runtime.errors import WeightsError

BUNDLE_FILE = "mfollow_bundle.json"
BUNDLE_FORMAT = 1


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
