"""Pose alignment and the weight-free M_e fallbacks, against exact constructions and the
synthetic world's ground truth."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest

from mfollow.preprocess.masks.fallbacks import hull_masks, iou, limb_widths, warp_masks
from mfollow.preprocess.pose import PUPPET_ALIGN
from mfollow.preprocess.pose.align import (
    AlignSettings,
    Transform,
    align,
    estimate,
    joint_error,
    registered_joint_error,
)
from mfollow.preprocess.pose.camera_track import CameraTrack, estimate_track
from mfollow.preprocess.pose.keypoints import PoseSequence
from mfollow.runtime.errors import MediaError
from mfollow.synth import make_pair
from mfollow.synth.world import mask_box

warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices for points out of view

PUPPETS = AlignSettings(**PUPPET_ALIGN)  # the synthetic world's convention (its ground truth)


def synthetic(seed: int, camera: str = "none", frames: int = 12, size: int = 128):  # type: ignore[no-untyped-def]
    pair = make_pair(seed, frames=frames, size=size, camera=camera)  # type: ignore[arg-type]

    def seq(video):  # type: ignore[no-untyped-def]
        masks = np.stack([video.render(f).mask for f in range(frames)])
        return video.poses(np.stack([mask_box(m) for m in masks])), masks

    return pair, seq(pair.source), seq(pair.target), seq(pair.edit)


def scaled_copy(p: PoseSequence, s: float, shift: tuple[float, float], size: tuple[int, int]) -> PoseSequence:
    """The same poses scaled by s about the origin and shifted, in a frame of another size."""
    w, h = size

    def move(a: np.ndarray) -> np.ndarray:
        out = a.copy()
        out[..., 0] = (a[..., 0] * p.width * s + shift[0]) / w
        out[..., 1] = (a[..., 1] * p.height * s + shift[1]) / h
        return out

    box = p.box.copy()
    box[:, [0, 2]] = (box[:, [0, 2]] * p.width * s + shift[0]) / w
    box[:, [1, 3]] = (box[:, [1, 3]] * p.height * s + shift[1]) / h
    return PoseSequence(w, h, move(p.body), move(p.feet), move(p.hands), box)


@pytest.mark.parametrize(
    "settings",
    [PUPPETS, replace(PUPPETS, height="box"), replace(PUPPETS, anchor="first"), replace(PUPPETS, method="linear")],
)
def test_an_exact_rescaled_copy_is_recovered(settings: AlignSettings) -> None:
    _, (src, _), _, _ = synthetic(3)
    target = scaled_copy(src, 0.5, (30.0, 10.0), (200, 150))
    aligned, t = align(src, target, settings)
    assert t.scale == pytest.approx(2.0, rel=1e-9)
    np.testing.assert_allclose(aligned.body[..., :2], src.body[..., :2], atol=1e-9)
    np.testing.assert_allclose(aligned.box, src.box, atol=1e-9)
    assert (aligned.width, aligned.height) == (src.width, src.height)


def test_registered_joint_error_forgives_one_scale_and_offset_per_clip_only() -> None:
    _, (src, _), _, _ = synthetic(3)
    moved = scaled_copy(src, 1.3, (-20.0, 15.0), (src.width, src.height))
    assert joint_error(moved, src) > 10 and registered_joint_error(moved, src) == pytest.approx(0.0, abs=1e-9)
    odd = (np.arange(len(moved)) % 2).astype(float)  # every other frame 0.02 widths to the right

    def shake(a: np.ndarray) -> np.ndarray:
        return a + np.array([0.02, 0.0, 0.0]) * odd.reshape((len(a),) + (1,) * (a.ndim - 1))

    wobble = moved.map_points(shake)
    # a frame-to-frame wobble of 0.02 widths (2.56 px) stays, less what one offset absorbs (half of it)
    assert registered_joint_error(wobble, src) == pytest.approx(1.28 / 1.3, rel=0.05)


def test_none_keeps_normalised_poses_and_refuses_other_aspects() -> None:
    _, (src, _), (tgt, _), _ = synthetic(4)
    aligned, _ = align(src, tgt, replace(PUPPETS, method="none"))
    np.testing.assert_allclose(aligned.body[..., :2], tgt.body[..., :2], atol=1e-12)
    wide = scaled_copy(tgt, 1.0, (0, 0), (256, 128))
    with pytest.raises(MediaError, match="frame aspect"):
        estimate(src, wide, replace(PUPPETS, method="none"))


def test_alignment_beats_none_and_scales_are_close_on_synthetic_pairs() -> None:
    errors: dict[str, list[float]] = {"default": [], "linear": [], "none": []}
    for seed in range(5):
        pair, (src, _), (tgt, _), (gt, _) = synthetic(seed)
        true_scale = pair.source.puppet.height / pair.target.puppet.height
        assert estimate(src, tgt).scale == pytest.approx(true_scale, rel=0.12)  # proportions vary +-15%
        for name, s in (
            ("default", PUPPETS),
            ("linear", replace(PUPPETS, method="linear")),
            ("none", replace(PUPPETS, method="none")),
        ):
            errors[name].append(joint_error(align(src, tgt, s)[0], gt))
    assert np.mean(errors["default"]) < np.mean(errors["none"]) / 2
    assert np.mean(errors["linear"]) < np.mean(errors["none"])


def test_warp_masks_moves_the_target_mask() -> None:
    m = np.zeros((1, 20, 20), bool)
    m[0, 4:8, 2:6] = True
    same = warp_masks(m, Transform(1.0, (0.0, 0.0), (0.0, 0.0)), 20, 20)
    np.testing.assert_array_equal(same, m)
    moved = warp_masks(m, Transform(2.0, (2.0, 4.0), (10.0, 10.0)), 20, 20)  # doubled, corner to (10, 10)
    expected = np.zeros((1, 20, 20), bool)
    expected[0, 10:18, 10:18] = True
    np.testing.assert_array_equal(moved, expected)


def test_hull_with_true_poses_covers_the_true_mask() -> None:
    _, (src, m_r), _, (gt, m_e) = synthetic(7, size=256)
    hull = hull_masks(gt, limb_widths(src, m_r))
    assert iou(hull, m_e) > 0.7


def test_iou() -> None:
    a = np.zeros((2, 4, 4), bool)
    assert iou(a, a) == 1.0
    b = a.copy()
    a[0, :2] = True
    b[0, 1:3] = True
    assert iou(a, b) == pytest.approx(4 / 12)


@pytest.mark.parametrize("hidden", [(10, 13), (8, 9, 10, 11, 12, 13)])
def test_partial_views_fall_back_to_torso_or_shoulders(hidden: tuple[int, ...]) -> None:
    _, (src, _), _, _ = synthetic(3)
    for p in (src,):
        p.body[:, list(hidden), 2] = 0.0  # ankles (then also knees and hips) out of view
    target = scaled_copy(src, 0.5, (30.0, 10.0), (200, 150))
    aligned, t = align(src, target, PUPPETS)
    assert t.scale == pytest.approx(2.0, rel=1e-9)
    np.testing.assert_allclose(aligned.body[..., :2], src.body[..., :2], atol=1e-9)


def upper_body(
    crown_y: float, nose_to_neck: float, hip_y: float, knee_y: float, x: float, frames: int = 3
) -> PoseSequence:
    """A standing person in a 256 x 512 frame whose legs run out of the bottom edge (ankles unseen),
    the top of the head points at ``crown_y + CROWN_ABOVE_HEAD * nose_to_neck``."""
    from mfollow.preprocess.pose.align import CROWN_ABOVE_HEAD

    w, h = 256, 512
    eyes = crown_y + CROWN_ABOVE_HEAD * nose_to_neck
    pts = {0: (x, eyes + 4), 14: (x - 6, eyes), 15: (x + 6, eyes), 16: (x - 12, eyes + 2), 17: (x + 12, eyes + 2),
           1: (x, eyes + 4 + nose_to_neck), 2: (x - 30, eyes + 4 + nose_to_neck), 5: (x + 30, eyes + 4 + nose_to_neck),
           8: (x - 15, hip_y), 11: (x + 15, hip_y), 9: (x - 16, knee_y), 12: (x + 16, knee_y)}  # fmt: skip
    body = np.zeros((frames, 18, 3))
    for k, (px, py) in pts.items():
        body[:, k] = (px / w, py / h, 1.0)
    body[:, [10, 13]] = (x / w, (knee_y + 90) / h, 0.0)  # the ankles, past the edge: unseen
    return PoseSequence(
        w, h, body, np.zeros((frames, 6, 3)), np.zeros((frames, 2, 21, 3)), np.full((frames, 4), np.nan)
    )


def test_people_cut_by_the_frames_bottom_are_scaled_by_their_visible_heights() -> None:
    """The authors' alignment measures a cut person by the mask box, which ends at the frame's
    edge: the scale is the ratio of the heights from the crowns to the bottom edge, about the point
    on that edge under the target's mid-hip (its own place kept)."""
    source = upper_body(crown_y=40.0, nose_to_neck=50.0, hip_y=330.0, knee_y=480.0, x=100.0)
    target = upper_body(crown_y=120.0, nose_to_neck=40.0, hip_y=380.0, knee_y=500.0, x=170.0)
    t = estimate(source, target, AlignSettings())
    assert t.scale == pytest.approx((512 - 40) / (512 - 120), rel=1e-9)
    assert t.src == pytest.approx((170.0, 512.0)) and t.dst == pytest.approx((170.0, 512.0))
    edit, _ = align(source, target)
    crown = edit.pixels("body")[:, 14, 1] - 0.8 * (edit.pixels("body")[:, 1, 1] - edit.pixels("body")[:, 0, 1])
    np.testing.assert_allclose(crown, 40.0, atol=1e-6)  # the target's crown now where the source's is
    # legs ending well inside the frame (ankles merely missed) are not cut: the torso measures them
    short = upper_body(crown_y=40.0, nose_to_neck=50.0, hip_y=230.0, knee_y=300.0, x=100.0)
    assert estimate(short, target, AlignSettings()).scale != pytest.approx(t.scale, rel=1e-3)


# ------------------------------------------------------------------------- following the camera
def true_track(pair, size: int = 128):  # type: ignore[no-untyped-def]
    """The world's own camera of the source as a CameraTrack (frame f pixels -> frame 0 pixels):
    x_img = (x_world - c_f) z_f + S/2, so p_0 = (z_0 / z_f) (p_f - S/2) + (c_f - c_0) z_0 + S/2."""
    cam = pair.source.scene.camera
    a = cam[0, 2] / cam[:, 2]
    return CameraTrack(a, size / 2 * (1 - a)[:, None] + (cam[:, :2] - cam[0, :2]) * cam[0, 2])


def track_error(track, truth, size: int = 128) -> float:  # type: ignore[no-untyped-def]
    """Largest distance (px) between where the two tracks send the frame's corners and centre."""
    pts = np.array([[0.0, 0.0], [size, size], [size / 2, size / 2]])[None].repeat(len(truth), 0)
    return float(np.abs(track.to_reference(pts) - truth.to_reference(pts)).max())


@pytest.mark.parametrize(("seed", "camera"), [(20000, "pan"), (20001, "zoom"), (20002, "shake"), (20003, "none")])
def test_camera_track_is_the_worlds_camera(seed: int, camera: str) -> None:
    pair, (src, _), _, _ = synthetic(seed, camera, frames=16)
    frames = [pair.source.render(f).rgb for f in range(16)]
    track = estimate_track(frames, src.box)
    truth = true_track(pair)
    assert len(track) == 16 and track.scale[0] == 1 and not track.shift[0].any()
    travel = track_error(truth, CameraTrack.still(16))
    assert travel > (10 if camera in ("pan", "zoom") else 2 if camera == "shake" else -1)
    assert track_error(track, truth) < 0.5  # within half a pixel everywhere in the frame
    if camera == "none":  # nothing moved: exactly no motion
        assert (track.scale == 1).all() and not track.shift.any()
    pts = np.random.default_rng(0).uniform(0, 128, (16, 5, 2))
    np.testing.assert_allclose(track.from_reference(track.to_reference(pts)), pts, atol=1e-9)


def test_following_the_camera_keeps_the_edit_on_the_source_ground() -> None:
    errors: dict[str, list[float]] = {"still": [], "follow": [], "follow (true camera)": []}
    for seed in (20000, 20004, 20005):
        pair, (src, _), (tgt, _), (gt, _) = synthetic(seed, "pan", frames=16)
        track = estimate_track([pair.source.render(f).rgb for f in range(16)], src.box)
        for name, cam in (("still", None), ("follow", track), ("follow (true camera)", true_track(pair))):
            errors[name].append(joint_error(align(src, tgt, PUPPETS, cam)[0], gt))
    still, follow = np.mean(errors["still"]), np.mean(errors["follow"])
    assert follow < 0.6 * still, errors  # a pan's travel is most of the error without it
    assert follow == pytest.approx(np.mean(errors["follow (true camera)"]), abs=0.2)
    # a still camera changes nothing
    _, (src, _), (tgt, _), _ = synthetic(1, "none")
    still_edit = align(src, tgt, PUPPETS, CameraTrack.still(len(src)))[0]
    np.testing.assert_allclose(still_edit.body, align(src, tgt, PUPPETS)[0].body, atol=1e-12)
    np.testing.assert_allclose(still_edit.box, align(src, tgt, PUPPETS)[0].box, atol=1e-12)


def test_warp_masks_follow_the_camera_frame_by_frame() -> None:
    m_t = np.zeros((3, 20, 20), bool)
    m_t[:, 5:10, 5:10] = True
    t = Transform(1.0, (0.0, 0.0), (0.0, 0.0))
    camera = CameraTrack(np.ones(3), np.array([[0.0, 0.0], [-3.0, 0.0], [0.0, -2.0]]))  # p_0 = p_f + shift
    warped = warp_masks(m_t, t, 20, 20, camera)
    np.testing.assert_array_equal(warped[0], m_t[0])
    np.testing.assert_array_equal(warped[1], np.roll(m_t[1], 3, axis=1))  # the scene moved 3 px right
    np.testing.assert_array_equal(warped[2], np.roll(m_t[2], 2, axis=0))
    np.testing.assert_array_equal(warp_masks(m_t, t, 20, 20), m_t)


# ------------------------------------------------------------------------------- retargeting
def offset_free_error(a: PoseSequence, b: PoseSequence) -> float:
    """Mean joint distance (px) once the clip's one mean offset between ``a`` and ``b`` is removed:
    the error of the skeleton's shape and motion, not of where the clip stands."""
    ok = (a.body[..., 2] > 0.3) & (b.body[..., 2] > 0.3)
    d = a.pixels() - b.pixels()
    d -= d[ok].mean(axis=0)
    return float(np.linalg.norm(d, axis=-1)[ok].mean())


@pytest.mark.parametrize("seed", [0, 5, 9])
def test_retargeting_puts_the_targets_motion_on_the_sources_bones(seed: int) -> None:
    """The world's ground-truth edit is the target's joint angles on the source's proportions."""
    from mfollow.preprocess.pose.retarget import bone_lengths

    _, (src, _), (tgt, _), (gt, _) = synthetic(seed, size=256)
    similar = align(src, tgt, replace(PUPPETS, retarget=False))[0]
    edit = align(src, tgt, PUPPETS)[0]
    got, truth, before = bone_lengths(edit), bone_lengths(gt), bone_lengths(similar)
    for kind in truth:
        assert np.median(got[kind]) == pytest.approx(np.median(truth[kind]), rel=1e-6), kind
    assert any(abs(np.median(before[k]) / np.median(truth[k]) - 1) > 0.05 for k in truth)  # it had to change
    assert offset_free_error(edit, gt) < 1.0 < offset_free_error(similar, gt)
    # every bone keeps the aligned target's direction
    for parent, child in ((8, 9), (9, 10), (2, 3), (3, 4), (1, 0)):
        a = similar.pixels()[:, child] - similar.pixels()[:, parent]
        b = edit.pixels()[:, child] - edit.pixels()[:, parent]
        np.testing.assert_allclose(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0], 0, atol=1e-6)
        assert ((a * b).sum(axis=1) > 0).all()


def test_retargeting_beats_the_similarity_alone_and_keeps_the_ground() -> None:
    from mfollow.preprocess.pose.align import clip_anchor, person_extent

    errors: dict[bool, list[float]] = {False: [], True: []}
    for seed in range(5):
        _, (src, _), (tgt, _), (gt, _) = synthetic(seed)
        for rt in (False, True):
            errors[rt].append(joint_error(align(src, tgt, replace(PUPPETS, retarget=rt))[0], gt))
        similar, edit = align(src, tgt, replace(PUPPETS, retarget=False))[0], align(src, tgt, PUPPETS)[0]
        ground = [clip_anchor(person_extent(p, "skeleton")[1], "median") for p in (similar, edit)]
        np.testing.assert_allclose(ground[1], ground[0], atol=1e-9)  # the feet stay where alignment put them
    assert all(r < s for r, s in zip(errors[True], errors[False], strict=True)), errors  # on every pair
    assert np.mean(errors[True]) < 0.9 * np.mean(errors[False]), errors
    _, (src, _), (tgt, _), (gt, _) = synthetic(0)
    settings = replace(PUPPETS, anchor="ground")
    similar, edit = align(src, tgt, replace(settings, retarget=False))[0], align(src, tgt, settings)[0]
    ground = [clip_anchor(person_extent(p, "skeleton")[1], "ground") for p in (similar, edit)]
    np.testing.assert_allclose(ground[1], ground[0], atol=1e-9)  # the ground anchor re-grounds by its own rule


def test_retargeting_onto_itself_and_past_an_unseen_joint() -> None:
    from mfollow.preprocess.pose.retarget import retarget

    _, (src, _), (tgt, _), _ = synthetic(2)
    same = retarget(src, src)
    for part in ("body", "feet", "hands"):
        np.testing.assert_allclose(getattr(same, part), getattr(src, part), atol=1e-12)
    np.testing.assert_allclose(same.box, src.box, atol=1e-12)
    similar = align(src, tgt, replace(PUPPETS, retarget=False))[0]
    similar.body[:, 3, 2] = 0.0  # the right elbow never seen: the wrist has no parent to hang from
    edit = retarget(similar, src)
    np.testing.assert_array_equal(edit.body[:, 4], similar.body[:, 4])
    assert not np.allclose(edit.body[:, 7, :2], similar.body[:, 7, :2])  # the left arm was rebuilt
    # elbows seen in 2 of 12 frames are no measure of the source's upper arms: ratio 1
    from mfollow.preprocess.pose.retarget import ratios

    assert ratios(src, similar)["upper_arm"] != 1.0
    glimpsed = retarget(src, src)
    glimpsed.body[2:, [3, 6], 2] = 0.0
    assert ratios(glimpsed, similar)["upper_arm"] == 1.0


def test_clip_anchor_ground_is_a_high_percentile_of_the_bottoms() -> None:
    from mfollow.preprocess.pose.align import GROUND_PERCENTILE, clip_anchor

    bottoms = np.array(
        [[10.0, 90.0], [12.0, 80.0], [14.0, 85.0], [np.nan, np.nan], [16.0, 200.0]] + [[11.0, 100.0]] * 15
    )
    ys = bottoms[:, 1][np.isfinite(bottoms[:, 1])]
    median = clip_anchor(bottoms, "median")
    np.testing.assert_allclose(median, [11.0, 100.0])
    ground = clip_anchor(bottoms, "ground")
    assert ground[0] == median[0] and ground[1] == np.percentile(ys, GROUND_PERCENTILE) == 100.0  # not the 200 stray
    np.testing.assert_allclose(clip_anchor(bottoms, "ground", feet=False), median)  # a torso does not stand
    assert np.isnan(clip_anchor(np.full((3, 2), np.nan), "ground")).all()


def test_ground_anchor_puts_a_jump_on_the_source_ground() -> None:
    """The target jumps (its feet off the ground in much of the clip), the source stands: a median
    anchor sets the jump's airborne median on the source's floor, the ground anchor its landings."""
    errors: dict[str, list[float]] = {"median": [], "ground": []}
    for seed in range(4):
        pair = make_pair(seed, frames=12, size=128, camera="none", source_motion="wave", target_motion="jump")

        def seq(video):  # type: ignore[no-untyped-def]
            masks = np.stack([video.render(f).mask for f in range(12)])
            return video.poses(np.stack([mask_box(m) for m in masks]))

        src, tgt, gt = seq(pair.source), seq(pair.target), seq(pair.edit)
        for anchor in errors:
            errors[anchor].append(joint_error(align(src, tgt, replace(PUPPETS, anchor=anchor))[0], gt))  # type: ignore[arg-type]
    assert np.mean(errors["ground"]) < 0.6 * np.mean(errors["median"]), errors
    assert max(errors["ground"]) < 0.5 * max(errors["median"]), errors
