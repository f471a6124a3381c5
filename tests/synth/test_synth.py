"""The synthetic puppet world: determinism, exact masks, joints on the body, retargeting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mfollow.io import video
from mfollow.preprocess.masks.files import read_masks
from mfollow.preprocess.pose.keypoints import PoseSequence
from mfollow.synth import PuppetPairs, make_pair
from mfollow.synth.files import MASK_DIRS, POSE_NAMES, VIDEO_NAMES, write_pair
from mfollow.synth.render import draw_puppet, puppet_parts, view_background
from mfollow.synth.skeleton import ANGLES

SENTINEL = np.array([1, 2, 3], dtype=np.uint8)  # puppet colours are drawn from [40, 230]


def test_same_seed_gives_identical_files_and_frames(tmp_path: Path) -> None:
    for name in ("a", "b"):
        write_pair(make_pair(11, frames=6, size=64, camera="shake"), tmp_path / name)
    annotations = [*POSE_NAMES.values(), "pair.json"]
    for rel in annotations + [f"{d}/frame_{i:05d}.png" for d in MASK_DIRS.values() for i in range(6)]:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    for name in VIDEO_NAMES.values():
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
        np.testing.assert_array_equal(
            video.read_frames(tmp_path / "a" / name), video.read_frames(tmp_path / "b" / name)
        )
    one, two = make_pair(11, frames=6, size=64, camera="shake"), make_pair(11, frames=6, size=64, camera="shake")
    for role in ("source", "target", "edit"):
        for f in range(6):
            np.testing.assert_array_equal(one.video(role).render(f).rgb, two.video(role).render(f).rgb)
    other = make_pair(12, frames=6, size=64, camera="shake")
    assert not np.array_equal(other.source.render(0).rgb, make_pair(11, frames=6, size=64).source.render(0).rgb)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_masks_cover_exactly_the_painted_pixels(seed: int) -> None:
    pair = make_pair(seed, frames=10, size=96)
    for role in ("source", "target", "edit"):
        v = pair.video(role)
        for f in (0, 5, 9):
            canvas = np.tile(SENTINEL, (96, 96, 1))
            parts = puppet_parts(v.skeleton, f)
            mask = draw_puppet(canvas, parts, v.puppet.look, float(v.skeleton.height_px[f]))
            np.testing.assert_array_equal(mask, (canvas != SENTINEL).any(-1))
            # and in the real frame: outside the mask is exactly the background view
            frame = v.render(f)
            np.testing.assert_array_equal(frame.mask, mask)
            bg = view_background(v.scene.world, v.scene.camera[f], 96, 96)
            np.testing.assert_array_equal(frame.rgb[~mask], bg[~mask])
            assert mask.sum() > 100


@pytest.mark.parametrize("seed", range(8))
def test_ground_truth_joints_land_on_the_drawn_body(seed: int) -> None:
    pair = make_pair(seed, frames=12, size=128)
    for role in ("source", "target", "edit"):
        v = pair.video(role)
        poses = v.poses()
        for f in range(0, 12, 3):
            mask = v.render(f).mask
            for part in ("body", "feet", "hands"):
                xy = poses.pixels(part)[f].reshape(-1, 2)
                score = getattr(poses, part)[f].reshape(-1, 3)[:, 2]
                for (x, y), s in zip(xy, score, strict=True):
                    if s > 0:  # inside the frame
                        assert mask[int(y), int(x)], (role, f, part, x, y)
            assert not poses.box[f].any() or True
            # scores say exactly which points are inside the frame
            inside = ((poses.body[f, :, :2] >= 0) & (poses.body[f, :, :2] < 1)).all(-1)
            np.testing.assert_array_equal(poses.body[f, :, 2] == 1, inside)


def test_identical_motions_give_edit_equal_to_source(tmp_path: Path) -> None:
    pair = make_pair(5, frames=8, size=64, source_motion="wave", target_motion="wave", camera="pan")
    for f in range(8):
        np.testing.assert_array_equal(pair.edit.render(f).rgb, pair.source.render(f).rgb)
    write_pair(pair, tmp_path)
    assert (tmp_path / "edit_gt.mp4").read_bytes() == (tmp_path / "source.mp4").read_bytes()
    np.testing.assert_array_equal(
        video.read_frames(tmp_path / "edit_gt.mp4"), video.read_frames(tmp_path / "source.mp4")
    )
    assert (tmp_path / "edit_poses.json").read_bytes() == (tmp_path / "source_poses.json").read_bytes()
    np.testing.assert_array_equal(read_masks(tmp_path / "edit_masks"), read_masks(tmp_path / "source_masks"))
    # the target is a different puppet doing that motion elsewhere
    assert not np.array_equal(pair.target.render(0).rgb, pair.source.render(0).rgb)


def _segment_angle(body: np.ndarray, i: int, j: int) -> np.ndarray:
    d = body[:, j] - body[:, i]
    return np.arctan2(d[:, 0], d[:, 1])


def test_edit_is_the_target_motion_retargeted_to_the_source_puppet() -> None:
    pair = make_pair(7, frames=16, size=128, camera="zoom")
    src, tgt, edit = pair.source, pair.target, pair.edit
    h = edit.skeleton.height_px  # source puppet height times the source camera's zoom
    np.testing.assert_allclose(h, src.skeleton.height_px)
    props = src.puppet.props
    # the source puppet's proportions ...
    for (i, j), length in {
        (2, 3): props.upper_arm,
        (3, 4): props.forearm,
        (8, 9): props.thigh,
        (12, 13): props.shin,
    }.items():
        np.testing.assert_allclose(
            np.linalg.norm(edit.skeleton.body[:, j] - edit.skeleton.body[:, i], axis=-1), length * h
        )
    # ... with the target's joint angles (segment directions, independent of size and place)
    for i, j in [(2, 3), (3, 4), (5, 6), (6, 7), (8, 9), (9, 10), (11, 12), (12, 13), (1, 0)]:
        np.testing.assert_allclose(
            _segment_angle(edit.skeleton.body, i, j), _segment_angle(tgt.skeleton.body, i, j), atol=1e-9
        )
    # ... anchored at the source's place: the root offset of motion 2 scaled by the source height
    t = np.arange(16) / float(pair.fps)
    a1, a2 = src.motion.angles(t), tgt.motion.angles(t)
    offset = np.stack([a2["root_dx"] - a1["root_dx"], a2["root_dy"] - a1["root_dy"]], -1) * h[:, None]
    np.testing.assert_allclose(edit.skeleton.pelvis - src.skeleton.pelvis, offset, atol=1e-9)


def test_every_camera_and_motion_renders() -> None:
    for camera in ("pan", "zoom", "shake", "none"):
        pair = make_pair(1, frames=5, size=64, camera=camera)
        cams = pair.source.scene.camera
        moving = not np.allclose(cams, cams[0])
        assert moving == (camera != "none")
    from mfollow.synth.motions import KINDS, Motion

    t = np.linspace(0, 2, 9)
    for kind in KINDS:
        angles = Motion.sample(kind, np.random.default_rng(0)).angles(t)
        assert set(angles) == set(ANGLES) and all(a.shape == t.shape and np.isfinite(a).all() for a in angles.values())
    with pytest.raises(ValueError, match="unknown motion"):
        make_pair(0, source_motion="moonwalk")


def test_written_pair_layout_and_contents(tmp_path: Path) -> None:
    report = write_pair(make_pair(2, frames=5, size=64, fps=30), tmp_path / "out")
    out = tmp_path / "out"
    for name in VIDEO_NAMES.values():
        info = video.probe(out / name)
        assert info.frame_count == 5 and (info.width, info.height) == (64, 64) and info.average_fps == 30
    for role, name in POSE_NAMES.items():
        poses = PoseSequence.load(out / name)
        assert len(poses) == 5 and (poses.width, poses.height) == (64, 64)
        masks = read_masks(out / MASK_DIRS[role])
        assert masks.shape == (5, 64, 64)
        # the pose file's box is the mask's box
        rows, cols = np.flatnonzero(masks[0].any(1)), np.flatnonzero(masks[0].any(0))
        np.testing.assert_allclose(poses.box[0], [cols[0] / 64, rows[0] / 64, (cols[-1] + 1) / 64, (rows[-1] + 1) / 64])
    assert report["frames"] == 5 and not any(p.name.startswith(".synth") for p in out.iterdir())


def test_dataset_interface_is_deterministic_and_consistent() -> None:
    data = PuppetPairs(3, length=4, frames=10, size=64)
    a, b = data.image_pair(2), data.image_pair(2)
    np.testing.assert_array_equal(a["source"]["frames"], b["source"]["frames"])
    i, j = a["frames"]
    pair = data.pair(2)
    np.testing.assert_array_equal(a["source"]["frames"][0], pair.source.render(i).rgb)
    np.testing.assert_array_equal(a["edit"]["masks"][0], pair.edit.render(j).mask)
    clip = data.clip_pair(1, 4)
    assert clip["source"]["frames"].shape == (4, 64, 64, 3) and len(clip["edit"]["poses"]) == 4
    assert len(list(data)) == 4
    with pytest.raises(IndexError):
        data.pair(4)


def test_an_option_changes_only_itself() -> None:
    base = make_pair(21, frames=4, size=64)
    forced = make_pair(21, frames=4, size=64, source_motion=base.source.motion.kind)
    assert forced.describe() == base.describe()
    other = next(k for k in ("walk", "wave") if k != base.target.motion.kind)
    changed = make_pair(21, frames=4, size=64, target_motion=other)
    assert changed.source.scene.camera_kind == base.source.scene.camera_kind
    assert changed.source.motion == base.source.motion and changed.target.motion.kind == other


# ------------------------------------------------------------------------ motion accuracy
def test_silhouette_is_what_differs_from_the_plate_cleaned_by_the_cross() -> None:
    from mfollow.synth.silhouette import SILHOUETTE_THRESHOLD, silhouette

    plate = np.full((20, 20, 3), 100, np.uint8)
    assert not silhouette(plate, plate).any()
    frame = plate.copy()
    frame[4:12, 5:15] = (100, 100 + SILHOUETTE_THRESHOLD + 1, 100)  # one channel just over
    frame[7, 9] = 100  # a one-pixel hole (a colour that matches the background): closed
    frame[17, 2] = 0  # an isolated pixel (coding noise): opened away
    frame[15:18, 15:18] = 100 + SILHOUETTE_THRESHOLD  # at the threshold: background
    expected = np.zeros((20, 20), bool)
    expected[4:12, 5:15] = True
    expected[[4, 4, 11, 11], [5, 14, 5, 14]] = False  # the cross opens a rectangle's corners
    np.testing.assert_array_equal(silhouette(frame, plate), expected)


def test_silhouette_iou_against_the_true_M_e() -> None:
    from mfollow.synth.silhouette import silhouette_iou

    pair = make_pair(20000, frames=6, size=128)
    edit = [pair.edit.render(f).rgb for f in range(6)]
    truth = silhouette_iou(edit, pair)
    assert truth > 0.95  # exact renders: only one-pixel-thin parts (fingers) are opened away
    assert silhouette_iou([pair.edit.plate(f) for f in range(6)], pair) == 0.0  # nobody drawn
    assert silhouette_iou([pair.source.render(f).rgb for f in range(6)], pair) < 0.6  # the source's pose
    assert silhouette_iou([np.roll(e, 6, axis=1) for e in edit], pair) < truth - 0.2  # 6 px off
    assert silhouette_iou(edit[:3], pair) > 0.95  # fewer frames than the pair: those frames only
    with pytest.raises(ValueError, match="no frames"):
        silhouette_iou([], pair)
