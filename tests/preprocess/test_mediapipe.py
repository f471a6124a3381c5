"""The mediapipe backends: the BlazePose mapping, and a real photograph (offline models)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mfollow.preprocess.pose.mediapipe_backend import blazepose_to_openpose


def test_blazepose_mapping() -> None:
    lm = np.zeros((33, 3))
    lm[:, 0] = np.linspace(0.1, 0.9, 33)
    lm[:, 1] = 0.5
    lm[:, 2] = 0.9
    lm[11], lm[12] = (0.6, 0.4, 0.8), (0.4, 0.4, 0.7)  # L and R shoulder
    lm[27] = (1.2, 0.5, 0.99)  # L ankle well outside the frame
    lm[28] = (0.5, 1.03, 0.8)  # R ankle just past the bottom edge (a cut-off foot)
    body, feet = blazepose_to_openpose(lm)
    assert body[10].tolist() == pytest.approx([0.5, 1.03, 0.8])  # kept where it is, as DWPose keeps it
    assert body[1].tolist() == pytest.approx([0.5, 0.4, 0.7])  # neck: midpoint, smaller visibility
    assert body[2].tolist() == pytest.approx([0.4, 0.4, 0.7]) and body[5].tolist() == pytest.approx([0.6, 0.4, 0.8])
    assert body[13, 2] == 0  # OpenPose L-ankle = BlazePose 27, out of frame
    # the whole table, pinned: OpenPose-18 index <- BlazePose index (1, the neck, is computed)
    for op, bp in {0: 0, 2: 12, 3: 14, 4: 16, 5: 11, 6: 13, 7: 15, 9: 26, 12: 25, 14: 5, 15: 2,
                   16: 8, 17: 7}.items():  # fmt: skip
        assert body[op].tolist() == pytest.approx(lm[bp].tolist()), op
    # the hips (BlazePose 24 and 23), moved 5.2% of the neck-to-mid-hip way towards the neck, where
    # DWPose puts them (measured on the authors' cases)
    mid = (lm[24, :2] + lm[23, :2]) / 2
    shift = 0.052 * (np.array([0.5, 0.4]) - mid)
    assert body[8, :2].tolist() == pytest.approx((lm[24, :2] + shift).tolist()) and body[8, 2] == lm[24, 2]
    assert body[11, :2].tolist() == pytest.approx((lm[23, :2] + shift).tolist()) and body[11, 2] == lm[23, 2]
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
    from mfollow.preprocess.pose.mediapipe_backend import estimate_frames, person_masks

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


def test_person_masks_in_frames_with_and_without_a_body(astronaut: np.ndarray) -> None:
    """Holistic's body segmentation where it finds a body; SelfieSegmentation's where it finds none
    (a plain frame): a mask of the frame's size either way, empty on nothing."""
    from mfollow.preprocess.pose.mediapipe_backend import person_masks

    blank = np.full((512, 512, 3), 128, np.uint8)
    person, nothing = list(person_masks(iter([astronaut, blank])))
    assert person.shape == nothing.shape == (512, 512) and 0.3 < person.mean() < 0.8 and not nothing.any()


def test_stages_with_mediapipe(astronaut: np.ndarray, tmp_path: Path) -> None:
    from fractions import Fraction

    from mfollow.io.video import write_video
    from mfollow.preprocess.masks.files import read_masks
    from mfollow.preprocess.stages import align_stage, mask_stage, pose_stage

    video = write_video(tmp_path / "a.mp4", [astronaut] * 3, range(3), Fraction(1, 8))
    assert pose_stage(tmp_path / "p", video, "source", backend="mediapipe")["missing_frames"] == []
    pose_stage(tmp_path / "p", video, "target", backend="mediapipe")
    align_stage(tmp_path / "p")
    report = mask_stage(tmp_path / "p", source_video=video)
    m_r = read_masks(Path(report["outputs"]["source_masks/frame_00000.png"]).parent)
    assert m_r.shape == (3, 512, 512) and 0.3 < m_r.mean() < 0.8


@pytest.mark.slow
def test_headline_edit_of_real_photographs_offline(astronaut: np.ndarray, tmp_path: Path) -> None:
    """`mfollow edit src.mp4 tgt.mp4 -o out.mp4` on photographed people, on a machine without
    DWPose: mediapipe poses and segments them, the bundled model edits (nothing else given but a
    short run)."""
    import json
    from fractions import Fraction

    from clirun import run
    from PIL import Image
    from skimage import data

    from mfollow.io.video import probe, write_video

    cameraman = np.asarray(Image.fromarray(data.camera()).convert("RGB").resize((256, 256)))
    photo = np.asarray(Image.fromarray(astronaut).resize((256, 256)))
    pan = [np.roll(photo, 2 * i, axis=1) for i in range(6)]  # a slow pan over the photograph
    write_video(tmp_path / "src.mp4", pan, range(6), Fraction(1, 12))
    write_video(tmp_path / "tgt.mp4", [np.roll(cameraman, -2 * i, axis=1) for i in range(6)], range(6), Fraction(1, 12))
    r = run("edit", str(tmp_path / "src.mp4"), str(tmp_path / "tgt.mp4"), "-o", str(tmp_path / "out.mp4"),
            "--steps", "2", "--json", cwd=tmp_path, env={"XDG_DATA_HOME": str(tmp_path / "no-weights")})  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["pose_backend"] == {"source": "mediapipe", "target": "mediapipe"}
    assert (
        doc["mask_backend"] == {"source": "mediapipe", "edit": "warp"} and doc["preset"] == "tiny"
    )  # the target segmented
    assert "pose: mediapipe" in r.stderr and "weights download dwpose" in r.stderr
    out = probe(tmp_path / "out.mp4")
    assert out.frame_count == 6 and (out.width, out.height) == (256, 256)
    assert out.timestamps == probe(tmp_path / "src.mp4").timestamps


@pytest.mark.slow
def test_the_background_is_untouched_outside_the_people_on_a_real_clip(astronaut: np.ndarray, tmp_path: Path) -> None:
    """`mfollow edit` of photographed people, written as PNG frames: outside M_e ∪ M_r (the staged
    masks, grown by the compositing band as it is scaled to the source's size) every pixel is the
    source's own, exactly; inside, the edit changed something."""
    import json
    from fractions import Fraction

    import torch
    from clirun import run
    from PIL import Image
    from skimage import data

    from mfollow.io.media import media_frames
    from mfollow.io.video import write_video
    from mfollow.preprocess.masks.files import read_masks
    from mfollow.preprocess.stages import project_inputs

    cameraman = np.asarray(Image.fromarray(data.camera()).convert("RGB").resize((256, 256)))
    photo = np.asarray(Image.fromarray(astronaut).resize((256, 256)))
    write_video(tmp_path / "src.mp4", [np.roll(photo, 2 * i, axis=1) for i in range(4)], range(4), Fraction(1, 12))
    write_video(tmp_path / "tgt.mp4", [np.roll(cameraman, -2 * i, axis=1) for i in range(4)], range(4), Fraction(1, 12))
    r = run("edit", str(tmp_path / "src.mp4"), str(tmp_path / "tgt.mp4"), "-o", str(tmp_path / "out"), "-p",
            str(tmp_path / "proj"), "--steps", "2", "--json",
            env={"XDG_DATA_HOME": str(tmp_path / "no-weights")})  # fmt: skip
    assert r.returncode == 0, r.stderr
    staged = project_inputs(tmp_path / "proj")
    assert staged is not None
    people = read_masks(staged["edit_masks"]) | read_masks(staged["source_masks"])  # (4, 256, 256) at the source's size
    assert 0.01 < people.mean() < 0.9  # a close-up: the people cover most of these frames
    band = 2 * (json.loads(r.stdout)["composite_margin"] + 1) + 1  # the working band (128 px) at 256 px, and rounding
    grown = torch.nn.functional.max_pool2d(torch.from_numpy(people).float()[:, None], 2 * band + 1, 1, band)[:, 0]
    outside = ~grown.numpy().astype(bool)
    src = np.stack(list(media_frames(tmp_path / "src.mp4")))
    out = np.stack(list(media_frames(tmp_path / "out")))
    assert out.shape == src.shape and outside.mean() > 0.05
    assert np.array_equal(out[outside], src[outside])  # the background: the source's own pixels
    assert not np.array_equal(out[~outside], src[~outside])  # the people: edited
