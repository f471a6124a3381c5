"""Folders of per-frame files are read in frame order, whatever the padding of their names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mfollow.edit.inputs import mask_seq, pose_seq
from mfollow.io.folders import frame_files, natural_key
from mfollow.preprocess.masks.files import read_masks, write_mask
from mfollow.runtime.errors import MediaError

N = 24  # the official cases' length: frame_0 ... frame_23


def _unpadded_masks(folder: Path) -> np.ndarray:
    """Mask i has exactly i + 1 pixels set, so frame order is visible in the data."""
    folder.mkdir()
    masks = np.zeros((N, 8, 8), bool)
    for i in range(N):
        masks[i].flat[: i + 1] = True
        write_mask(folder / f"frame_{i}.png", masks[i])
    return masks


def test_natural_order() -> None:
    names = ["frame_10.png", "frame_2.png", "frame_1.png", "Frame_3.png", "cam2_frame_1.png", "cam1_frame_10.png"]
    ordered = sorted(names, key=lambda n: natural_key(Path(n).stem))
    assert ordered == [
        "cam1_frame_10.png", "cam2_frame_1.png", "frame_1.png", "frame_2.png", "Frame_3.png", "frame_10.png",
    ]  # fmt: skip


def test_unpadded_mask_folder_in_frame_order(tmp_path: Path) -> None:
    masks = _unpadded_masks(tmp_path / "m")
    np.testing.assert_array_equal(read_masks(tmp_path / "m"), masks)  # mask / eval / stage readers
    seq = mask_seq(tmp_path / "m", (8, 8))  # the edit's lazy reader
    np.testing.assert_array_equal(seq.get(0, N), masks)
    assert [p.name for p in frame_files(tmp_path / "m")][:3] == ["frame_0.png", "frame_1.png", "frame_2.png"]


def test_unpadded_pose_image_folder_in_frame_order(tmp_path: Path) -> None:
    folder = tmp_path / "poses"
    folder.mkdir()
    for i in range(N):
        Image.fromarray(np.full((4, 4, 3), i * 10, np.uint8)).save(folder / f"frame_{i}.png")
    seq = pose_seq(folder, (4, 4), (4, 4), "official")
    assert [int(img[0, 0, 0]) for img in seq.get(0, N)] == [i * 10 for i in range(N)]


def test_unpadded_openpose_folder_in_frame_order(tmp_path: Path) -> None:
    from mfollow.preprocess.pose.files import read_openpose

    folder = tmp_path / "openpose"
    folder.mkdir()
    for i in range(12):
        body = np.zeros((18, 3))
        body[:, 0], body[:, 1], body[:, 2] = 10 + i, 20, 1.0  # x encodes the frame index
        (folder / f"clip_{i}_keypoints.json").write_text(
            json.dumps({"people": [{"pose_keypoints_2d": body.ravel().tolist()}]})
        )
    poses = read_openpose(folder, 100, 100)
    np.testing.assert_allclose(poses.body[:, 0, 0] * 100, 10 + np.arange(12))


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="no such folder"):
        frame_files(tmp_path / "none")
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "notes.txt").write_text("x")
    with pytest.raises(MediaError, match="holds no images"):
        frame_files(tmp_path / "e")
