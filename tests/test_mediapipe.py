"""The mediapipe backends: the BlazePose mapping, and a real photograph (offline models)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mfollow.pose.mediapipe_backend import blazepose_to_openpose


def test_blazepose_mapping() -> None:
    lm = np.zeros((33, 3))
    lm[:, 0] = np.linspace(0.1, 0.9, 33)
    lm[:, 1] = 0.5
    lm[:, 2] = 0.9
    lm[11], lm[12] = (0.6, 0.4, 0.8), (0.4, 0.4, 0.7)  # L and R shoulder
    lm[27] = (1.2, 0.5, 0.99)  # L ankle outside the frame
    body, feet = blazepose_to_openpose(lm)
    assert body[1].tolist() == pytest.approx([0.5, 0.4, 0.7])  # neck: midpoint, smaller visibility
    assert body[2].tolist() == pytest.approx([0.4, 0.4, 0.7]) and body[5].tolist() == pytest.approx([0.6, 0.4, 0.8])
    assert body[13, 2] == 0  # OpenPose L-ankle = BlazePose 27, out of frame
    assert body[14].tolist() == pytest.approx(lm[5].tolist()) and body[17].tolist() == pytest.approx(lm[7].tolist())
    assert (
        feet[0].tolist() == pytest.approx(lm[31].tolist())
        and feet[1, 2] == 0
        and feet[5].tolist() == pytest.approx(lm[30].tolist())
    )


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    pytest.importorskip("mediapipe")
    data = pytest.importorskip("skimage.data")
    return data.astronaut()  # 512x512 RGB, shipped inside scikit-image


def test_real_photograph_pose_and_mask(astronaut: np.ndarray) -> None:
    from mfollow.pose.mediapipe_backend import estimate_frames, person_masks

    (found,) = list(estimate_frames(iter([astronaut]), static=True))
    assert found is not None
    body, _, _ = found
    nose, neck, r_sh, l_sh = body[0], body[1], body[2], body[5]
    assert min(nose[2], neck[2], r_sh[2], l_sh[2]) > 0.9
    assert nose[1] < neck[1] < 0.7  # head above the neck, both in the upper part of the picture
    assert r_sh[0] < neck[0] < l_sh[0]  # facing the camera: her right shoulder on the image's left
    assert 0.3 < nose[0] < 0.6 and 0.1 < nose[1] < 0.4  # her face, left of centre in the photo
    (mask,) = list(person_masks(iter([astronaut])))
    assert mask.shape == (512, 512) and 0.3 < mask.mean() < 0.8
    assert mask[int(nose[1] * 512), int(nose[0] * 512)] and mask[int(neck[1] * 512), int(neck[0] * 512)]


def test_stages_with_mediapipe(astronaut: np.ndarray, tmp_path: Path) -> None:
    from fractions import Fraction

    from mfollow.masks.files import read_masks
    from mfollow.stages import align_stage, mask_stage, pose_stage
    from mfollow.video import write_video

    video = write_video(tmp_path / "a.mp4", [astronaut] * 3, range(3), Fraction(1, 8))
    assert pose_stage(tmp_path / "p", video, "source", backend="mediapipe")["missing_frames"] == []
    pose_stage(tmp_path / "p", video, "target", backend="mediapipe")
    align_stage(tmp_path / "p")
    report = mask_stage(tmp_path / "p", source_video=video)
    m_r = read_masks(Path(report["outputs"]["source_masks/frame_00000.png"]).parent)
    assert m_r.shape == (3, 512, 512) and 0.3 < m_r.mean() < 0.8
