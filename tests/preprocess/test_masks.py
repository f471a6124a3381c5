"""Mask folders: 8-bit 0/255 PNGs, one per frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mfollow.preprocess.masks.files import mask_name, read_masks, write_mask
from mfollow.runtime.errors import MediaError


def test_roundtrip_is_exact_and_0_255(tmp_path: Path) -> None:
    masks = np.random.default_rng(0).random((3, 20, 30)) > 0.5
    for i, m in enumerate(masks):
        write_mask(tmp_path / mask_name(i), m)
    assert set(np.unique(np.asarray(Image.open(tmp_path / mask_name(0))))) == {0, 255}
    np.testing.assert_array_equal(read_masks(tmp_path, frames=3), masks)


def test_bad_mask_folders(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="no such mask folder"):
        read_masks(tmp_path / "none")
    with pytest.raises(MediaError, match="holds no mask images"):
        read_masks(tmp_path)
    write_mask(tmp_path / mask_name(0), np.ones((4, 4), bool))
    with pytest.raises(MediaError, match="1 masks for 2 frames"):
        read_masks(tmp_path, frames=2)
    write_mask(tmp_path / mask_name(1), np.ones((5, 4), bool))
    with pytest.raises(MediaError, match="differs"):
        read_masks(tmp_path)
    (tmp_path / mask_name(1)).write_text("not a png")
    with pytest.raises(MediaError, match="not a readable mask image"):
        read_masks(tmp_path)
