"""The pose, align and mask stages: caching, staleness, file formats, the CLI flow into edit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from clirun import mfollow, one_line_error

from mfollow.models.bundle import ModelBundle
from mfollow.preprocess.masks.files import read_masks
from mfollow.preprocess.pose.files import read_openpose
from mfollow.preprocess.pose.keypoints import PoseSequence
from mfollow.preprocess.stages import align_stage, mask_stage, pose_stage, project_inputs
from mfollow.runtime.errors import MediaError, ProjectError, UsageError
from mfollow.synth import make_pair
from mfollow.synth.files import write_pair


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pair")
    write_pair(make_pair(8, frames=8, size=64, camera="none"), out)
    return out


def run_all(root: Path, pair: Path, **mask_args: object) -> dict[str, str]:
    caches = {
        "pose-source": pose_stage(root, pair / "source.mp4", "source", pair / "source_poses.json")["cache"],
        "pose-target": pose_stage(root, pair / "target.mp4", "target", pair / "target_poses.json")["cache"],
        "align": align_stage(root)["cache"],
    }
    caches["mask"] = mask_stage(root, source_masks=pair / "source_masks", **mask_args)["cache"]  # type: ignore[arg-type]
    return caches


def test_stages_cache_and_go_stale_downstream(tmp_path: Path, pair: Path) -> None:
    root = tmp_path / "proj"
    assert set(run_all(root, pair).values()) == {"miss"}
    assert set(run_all(root, pair).values()) == {"hit"}
    inputs = project_inputs(root)
    assert inputs is not None and PoseSequence.load(inputs["edit_poses"]).width == 64
    np.testing.assert_array_equal(read_masks(inputs["source_masks"]), read_masks(pair / "source_masks"))
    from mfollow.preprocess.pose.align import AlignSettings

    assert align_stage(root, AlignSettings("linear"))["cache"] == "miss"
    assert project_inputs(root) is None  # the mask stage is now stale (its upstream changed)
    assert mask_stage(root, source_masks=pair / "source_masks")["cache"] == "miss"
    # a mask folder is an input: changing one file makes the stage stale
    masks = tmp_path / "m"
    masks.mkdir()
    for p in (pair / "source_masks").iterdir():
        (masks / p.name).write_bytes(p.read_bytes())
    assert mask_stage(root, source_masks=masks)["cache"] == "hit"  # same content elsewhere: same key
    first = sorted(masks.iterdir())[0]
    (masks / first.name).write_bytes((pair / "edit_masks" / first.name).read_bytes())
    assert mask_stage(root, source_masks=masks)["cache"] == "miss"


def test_mask_backends(tmp_path: Path, pair: Path) -> None:
    from mfollow.io.video import probe

    root = tmp_path / "proj"
    report = run_all(root, pair, edit_backend="warp", target_masks=pair / "target_masks", preview=True)
    assert report["mask"] == "miss"
    preview = project_inputs(root)["edit_masks"].parent / "preview.mp4"  # type: ignore[index]
    assert probe(preview).frame_count == 8 and probe(preview).timestamps == probe(pair / "source.mp4").timestamps
    run_all(root, pair, edit_backend="file", edit_masks=pair / "edit_masks")
    inputs = project_inputs(root)
    assert inputs is not None
    np.testing.assert_array_equal(read_masks(inputs["edit_masks"]), read_masks(pair / "edit_masks"))
    with pytest.raises(UsageError, match="needs --target-masks"):
        mask_stage(root, source_masks=pair / "source_masks", edit_backend="warp")


def test_stage_errors(tmp_path: Path, pair: Path) -> None:
    with pytest.raises(ProjectError, match="needs stage 'pose-source'"):
        align_stage(tmp_path / "empty")
    smoothed = pose_stage(tmp_path / "s", pair / "source.mp4", "source", pair / "source_poses.json", smooth=True)
    raw = PoseSequence.load(pair / "source_poses.json")
    got = PoseSequence.load(Path(smoothed["outputs"]["poses.json"]))
    assert got.body.shape == raw.body.shape and not np.array_equal(got.body, raw.body)
    np.testing.assert_array_equal(got.body[0], raw.body[0])  # the filter starts at the first frame
    short = PoseSequence.load(pair / "source_poses.json")[0:5]
    short.save(tmp_path / "short.json")
    with pytest.raises(MediaError, match="poses for 5 frames, the video has 8"):
        pose_stage(tmp_path / "p", pair / "source.mp4", "source", tmp_path / "short.json")


def test_openpose_import_body25_and_person_selection(tmp_path: Path) -> None:
    small = {"pose_keypoints_2d": [10, 10, 0.9] * 25, "hand_left_keypoints_2d": [1, 2, 0.5] * 21}
    big = {"pose_keypoints_2d": [float(v) for i in range(25) for v in (20 + 4 * i, 10 + 3 * i, 0.8)]}
    (tmp_path / "f_000000000000_keypoints.json").write_text(json.dumps({"people": [small, big]}))
    (tmp_path / "f_000000000001_keypoints.json").write_text(json.dumps({"people": []}))
    poses = read_openpose(tmp_path, 200, 100)
    assert len(poses) == 2
    assert poses.body[0, 8].tolist() == pytest.approx([(20 + 4 * 9) / 200, (10 + 3 * 9) / 100, 0.8])  # BODY_25 RHip
    assert poses.feet[0, 0].tolist() == pytest.approx([(20 + 4 * 19) / 200, (10 + 3 * 19) / 100, 0.8])
    assert poses.body[1, :, 2].max() == 0 and np.isnan(poses.box[1]).all()
    first = read_openpose(tmp_path, 200, 100, person=0)
    assert first.hands[0, 0, 0, :2].tolist() == pytest.approx([1 / 200, 2 / 100])
    with pytest.raises(MediaError, match="no person 5"):
        read_openpose(tmp_path, 200, 100, person=5)


@pytest.mark.slow
def test_cli_flow_into_edit(tmp_path: Path, pair: Path) -> None:
    ModelBundle.random("tiny", seed=0).save_pretrained(tmp_path / "bundle")
    p = str(tmp_path / "proj")
    steps = [
        ["pose", str(pair / "source.mp4"), "-p", p, "--keypoints", str(pair / "source_poses.json")],
        ["pose", str(pair / "target.mp4"), "-p", p, "--role", "target", "--keypoints", str(pair / "target_poses.json")],
        ["align", "-p", p],
        ["mask", "-p", p, "--source-masks", str(pair / "source_masks")],
    ]
    for argv in steps:
        r = mfollow(*argv, "--json")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["cache"] == "miss"
    assert json.loads(mfollow(*steps[0], "--json").stdout)["cache"] == "hit"
    r = mfollow("edit", str(pair / "source.mp4"), "-o", str(tmp_path / "out.mp4"), "-p", p, "--preset", "tiny",
                "--weights", str(tmp_path / "bundle"), "--size", "64", "--steps", "1", "-q", "--json")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["frames"] == 8
    one_line_error(mfollow("align", "-p", str(tmp_path / "other")), 5, "needs stage 'pose-source'")
    one_line_error(
        mfollow("pose", str(pair / "source.mp4"), "-p", p, "--keypoints", str(tmp_path / "no.json")),
        4,
        "no such pose file",
    )


def test_align_follows_the_source_camera_measured_on_its_video(tmp_path: Path) -> None:
    from dataclasses import replace

    from mfollow.preprocess.pose import PUPPET_ALIGN
    from mfollow.preprocess.pose.align import AlignSettings, joint_error

    pan = tmp_path / "pan"
    write_pair(make_pair(20000, frames=12, size=128, camera="pan"), pan)
    root = tmp_path / "proj"
    pose_stage(root, pan / "source.mp4", "source", pan / "source_poses.json")
    pose_stage(root, pan / "target.mp4", "target", pan / "target_poses.json")
    puppets = AlignSettings(**PUPPET_ALIGN)  # the synthetic world's convention: camera followed
    followed = align_stage(root, puppets)
    assert align_stage(root, puppets)["cache"] == "hit"  # the video is an input: same video, same key
    assert set(followed["outputs"]) == {"edit_poses.json", "transform.json", "camera.json"}
    camera = json.loads(Path(followed["outputs"]["camera.json"]).read_text())
    assert len(camera["scale"]) == 12 and abs(camera["shift"][-1][0]) > 10  # the pan, measured on the H.264 video
    truth = PoseSequence.load(pan / "edit_poses.json")
    error = {"followed": joint_error(PoseSequence.load(Path(followed["outputs"]["edit_poses.json"])), truth)}
    still = align_stage(root, replace(puppets, follow_camera=False))  # replaces the stage's outputs
    assert still["cache"] == "miss" and "camera.json" not in still["outputs"]
    error["still"] = joint_error(PoseSequence.load(Path(still["outputs"]["edit_poses.json"])), truth)
    assert error["followed"] < 0.6 * error["still"], error
