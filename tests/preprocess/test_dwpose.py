"""DWPose pre/post-processing, end to end with tiny generated ONNX models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from onnx_models import detector, pose_model

from mfollow.preprocess.pose import dwpose as D


def test_detect_resolution_and_letterbox() -> None:
    assert D.detect_resolution(1920, 1080) == (896, 512) and D.detect_resolution(512, 512) == (512, 512)
    img = np.full((100, 200, 3), 7, np.uint8)
    x, r = D.letterbox(img)
    assert x.shape == (1, 3, 640, 640) and r == pytest.approx(3.2)
    assert x[0, :, 319, 639].tolist() == [7, 7, 7] and x[0, :, 320, 0].tolist() == [114, 114, 114]  # top-left


def test_yolox_decode_and_nms() -> None:
    raw = np.zeros((1, 8400, 85))
    raw[0, :, 4] = 0.0
    # cell 81 of the stride-8 grid = (x 1, y 1): centre ((0.5 + 1) * 8, (0.5 + 1) * 8) = (12, 12)
    raw[0, 81, :4] = (0.5, 0.5, np.log(2.0), np.log(4.0))
    raw[0, 81, 4], raw[0, 81, 5] = 0.9, 1.0
    boxes, scores, classes = D.decode_yolox(raw, ratio=2.0)
    np.testing.assert_allclose(boxes[81], [(12 - 8) / 2, (12 - 16) / 2, (12 + 8) / 2, (12 + 16) / 2])
    assert scores[81, 0] == pytest.approx(0.9) and classes[81] == 0
    b = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], float)
    assert D.nms(b, np.array([0.9, 0.8, 0.7])) == [0, 2]


def test_person_boxes_fall_back_to_the_whole_image() -> None:
    np.testing.assert_array_equal(D.person_boxes(np.zeros((1, 8400, 85)), 1.0, 50, 40), [[0, 0, 50, 40]])


def test_crop_box_and_affine_crop() -> None:
    centre, scale = D.crop_box(np.array([10.0, 20.0, 50.0, 100.0]))
    np.testing.assert_allclose(centre, [30, 60])
    np.testing.assert_allclose(scale, [75.0, 100.0])  # height 80 * 1.25 = 100, width fixed to 3:4
    img = np.zeros((8, 8, 3), np.uint8)
    img[2:6, 2:6] = 200
    crop = D.affine_crop(img, np.array([4.0, 4.0]), np.array([8.0, 8.0]), 8, 8)  # identity
    np.testing.assert_allclose(crop, img.astype(np.float32))
    outside = D.affine_crop(img, np.array([-100.0, -100.0]), np.array([8.0, 8.0]), 4, 4)
    assert outside.max() == 0


def test_simcc_decode_and_openpose_reordering() -> None:
    sx, sy = np.zeros((133, 576)), np.zeros((133, 768))
    sx[:, 100], sy[:, 300] = 0.8, 0.6
    sx[7, :] = 0.0  # keypoint 7 (left elbow) never fires -> score 0, coordinates -1
    points, scores = D.decode_simcc(sx, sy, np.array([144.0, 192.0]), np.array([288.0, 384.0]), 288, 384)
    np.testing.assert_allclose(points[0], [50.0, 150.0])  # index/2, identity box
    assert scores[0] == pytest.approx(0.6) and scores[7] == 0 and points[7].tolist() == [-1.0, -1.0]
    points[5], points[6] = (10.0, 20.0), (30.0, 40.0)  # shoulders: the neck is their mean
    person = D.to_openpose(points, scores, np.array([0, 0, 1, 1]))
    assert person.body[1].tolist() == [20.0, 30.0, 1.0]
    assert person.body[2].tolist()[:2] == [30.0, 40.0] and person.body[5].tolist()[:2] == [10.0, 20.0]  # R, L shoulders
    assert person.body[6, 2] == 0  # OpenPose L-elbow = COCO 7
    assert person.hands.shape == (2, 21, 3) and person.face.shape == (68, 3) and person.feet.shape == (6, 3)


def test_end_to_end_with_generated_models(tmp_path: Path) -> None:
    # a 512x512 image; the detector reports one person box (64, 128)-(192, 384) at stride 32 cell
    # (x 4, y 8): centre ((0 + 4) * 32, ...) with raw offsets 0 -> centre (128, 256) in 640-space
    cell = 6400 + 1600 + 8 * 20 + 4
    det = detector(tmp_path / "yolox_l.onnx", {cell: (0.0, 0.0, np.log(4.0), np.log(8.0), 0.95, 0)})
    peaks = np.tile([[288, 384]], (133, 1))  # the crop's centre for every keypoint
    pose = pose_model(tmp_path / "dw-ll_ucoco_384.onnx", peaks)
    model = D.DWPose(det, pose)
    persons = model(np.zeros((512, 512, 3), np.uint8))
    assert len(persons) == 1
    p = persons[0]
    r = 640 / 512  # letterbox ratio
    np.testing.assert_allclose(p.box, [(128 - 64) / r, (256 - 128) / r, (128 + 64) / r, (256 + 128) / r])
    centre = [(p.box[0] + p.box[2]) / 2, (p.box[1] + p.box[3]) / 2]
    np.testing.assert_allclose(p.body[0, :2], centre, atol=1e-9)  # every point at the box centre
    assert p.body[0, 2] == pytest.approx(0.9) and p.body[1, 2] == 1.0


def test_missing_or_bad_model_files(tmp_path: Path) -> None:
    from mfollow.runtime.errors import WeightsError

    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(WeightsError, match="cannot load the DWPose models"):
        D.DWPose(tmp_path / "bad.onnx", tmp_path / "bad.onnx")


def test_fill_gaps_interpolates_short_gaps_and_holds_ends() -> None:
    present = np.array([False, True, False, False, True, False, False, False, False, True, False])
    values = np.array([0, 10, 0, 0, 40, 0, 0, 0, 0, 90, 0], dtype=float)
    D.fill_gaps(present, [values], max_gap=2)
    assert values.tolist() == [10, 10, 20, 30, 40, 40, 40, 40, 40, 90, 90]  # 4-frame gap: held


def _weights(tmp_path: Path, score: float) -> Path:
    root = tmp_path / "weights"
    (root / "dwpose").mkdir(parents=True)
    cell = 6400 + 1600 + 8 * 20 + 4
    detector(root / "dwpose" / "yolox_l.onnx", {cell: (0.0, 0.0, np.log(2.0), np.log(4.0), 0.95, 0)})
    pose_model(root / "dwpose" / "dw-ll_ucoco_384.onnx", np.tile([[288, 384]], (133, 1)), value=score)
    return root


@pytest.mark.slow
def test_pose_stage_with_dwpose_models(tmp_path: Path) -> None:
    from clirun import mfollow, one_line_error
    from media import make_video

    from mfollow.preprocess.pose.keypoints import PoseSequence
    from mfollow.preprocess.stages import pose_stage

    video = make_video(tmp_path / "v.mp4", n=3, width=64, height=64)
    report = pose_stage(tmp_path / "proj", video, "source", backend="dwpose", weights=_weights(tmp_path, 0.9))
    poses = PoseSequence.load(Path(report["outputs"]["poses.json"]))
    assert len(poses) == 3 and report["missing_frames"] == []
    # the detector's box is centred at (128, 256) in the 640 letterbox of the 512x512 detect image
    np.testing.assert_allclose(poses.body[:, 0, :2], np.tile([128 / 1.25 / 512, 256 / 1.25 / 512], (3, 1)), atol=1e-6)
    low = _weights(tmp_path / "low", 0.1)  # every point below the 0.3 visibility: no person
    env_args = ["pose", str(video), "-p", str(tmp_path / "p2"), "--weights", str(low)]
    one_line_error(mfollow(*env_args), 4, "no person found in any frame")
    one_line_error(mfollow("pose", str(video), "-p", str(tmp_path / "p3"), "--weights", str(tmp_path / "none")), 3,
                   "mfollow weights download dwpose")  # fmt: skip


# COCO-17 body points of a standing person in the 288x384 crop (SimCC indices are twice these)
COCO_BODY = [
    (144, 60), (154, 55), (134, 55), (164, 60), (124, 60), (184, 110), (104, 110), (200, 170), (88, 170),
    (210, 220), (78, 220), (164, 220), (124, 220), (166, 290), (122, 290), (168, 350), (120, 350),
]  # fmt: skip


@pytest.mark.slow
def test_edit_runs_the_stages_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from clirun import mfollow, one_line_error

    from mfollow.models.bundle import ModelBundle
    from mfollow.synth import make_pair
    from mfollow.synth.files import write_pair

    data = tmp_path / "xdg"
    weights = data / "mfollow" / "weights" / "dwpose"
    weights.mkdir(parents=True)
    cell = 6400 + 1600 + 8 * 20 + 4
    detector(weights / "yolox_l.onnx", {cell: (0.0, 0.0, np.log(2.0), np.log(4.0), 0.95, 0)})
    peaks = np.tile([[288, 384]], (133, 1))
    peaks[:17] = np.array(COCO_BODY) * 2
    pose_model(weights / "dw-ll_ucoco_384.onnx", peaks)
    monkeypatch.setenv("XDG_DATA_HOME", str(data))
    write_pair(make_pair(9, frames=6, size=64, camera="none"), tmp_path / "pair")
    ModelBundle.random("tiny", seed=0).save_pretrained(tmp_path / "bundle")
    pair = tmp_path / "pair"
    base = [str(pair / "source.mp4"), str(pair / "target.mp4"), "-o", str(tmp_path / "out.mp4"), "--preset", "tiny",
            "--weights", str(tmp_path / "bundle"), "--size", "64", "--steps", "1", "-q"]  # fmt: skip
    one_line_error(mfollow("edit", base[0], *base[2:]), 2, "pass TGT")  # no target video: nothing to estimate
    r = mfollow("edit", *base, "--source-masks", str(pair / "source_masks"), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["frames"] == 6 and doc["fps"] == 24.0
    assert doc["stages"] == dict.fromkeys(["pose-source", "pose-target", "align", "mask"], "miss")
    status = json.loads(mfollow("status", "-p", str(tmp_path / "out.mfollow"), "--json").stdout)
    assert {s["name"]: s["state"] for s in status["stages"]} == dict.fromkeys(
        ["pose-source", "pose-target", "align", "mask"], "fresh"
    )
    # without --source-masks, M_r is segmented by mediapipe when it is installed (exit 3 otherwise)
    import importlib.util

    r = mfollow("edit", *base[:3], str(tmp_path / "auto.mp4"), *base[4:])
    if importlib.util.find_spec("mediapipe") is not None:
        assert r.returncode == 0 and r.stderr == "", r.stderr  # quiet: nothing from mediapipe's native code
    else:
        assert r.returncode == 3 and "mediapipe" in r.stderr
