"""The mfollow-poses JSON format."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mfollow.preprocess.pose.keypoints import PoseSequence
from mfollow.runtime.errors import MediaError


def _poses(frames: int = 3, face: bool = False) -> PoseSequence:
    rng = np.random.default_rng(0)
    box = rng.random((frames, 4)).round(6)
    box[1] = np.nan  # a frame without a person
    return PoseSequence(
        640,
        480,
        rng.random((frames, 18, 3)).round(6),
        rng.random((frames, 6, 3)).round(6),
        rng.random((frames, 2, 21, 3)).round(6),
        box,
        rng.random((frames, 68, 3)).round(6) if face else None,
    )


@pytest.mark.parametrize("face", [False, True])
def test_json_roundtrip(tmp_path: Path, face: bool) -> None:
    poses = _poses(face=face)
    poses.save(tmp_path / "p.json")
    back = PoseSequence.load(tmp_path / "p.json")
    for name in ("body", "feet", "hands", "box") + (("face",) if face else ()):
        np.testing.assert_array_equal(getattr(back, name), getattr(poses, name))
    assert back.face is None if not face else back.face is not None
    assert (back.width, back.height) == (640, 480)
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["format"] == "mfollow-poses" and doc["version"] == 1 and doc["frames"][1]["box"] is None
    back.save(tmp_path / "q.json")
    assert (tmp_path / "q.json").read_bytes() == (tmp_path / "p.json").read_bytes()


def test_pixels_and_slicing() -> None:
    poses = _poses()
    np.testing.assert_allclose(poses.pixels()[0, 0], poses.body[0, 0, :2] * [640, 480])
    assert len(poses[1:]) == 2


def test_bad_pose_files(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="no such pose file"):
        PoseSequence.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(MediaError, match="not a valid pose file"):
        PoseSequence.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "openpose"}))
    with pytest.raises(MediaError, match="not a valid pose file"):
        PoseSequence.load(tmp_path / "other.json")
    with pytest.raises(ValueError, match="shape"):
        PoseSequence(1, 1, np.zeros((2, 17, 3)), np.zeros((2, 6, 3)), np.zeros((2, 2, 21, 3)), np.zeros((2, 4)))
