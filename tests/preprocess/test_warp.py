"""Moving the source person into the edit pose bone by bone (mfollow.preprocess.pose.warp), against the
synthetic world's exact poses, masks and ground-truth edits."""

from __future__ import annotations

import numpy as np
import pytest

from mfollow.preprocess.pose.keypoints import PoseSequence
from mfollow.preprocess.pose.warp import warp_person
from mfollow.synth import make_pair

SIZE = 96


@pytest.fixture(scope="module")
def world():  # type: ignore[no-untyped-def]
    pair = make_pair(10000, frames=4, size=SIZE, camera="none")
    return pair, pair.source.poses(), pair.edit.poses()


def turned(poses: PoseSequence, centre: tuple[int, int]) -> PoseSequence:
    """The poses turned a quarter turn about the pixel corner ``centre``: (x, y) -> (cx - (y - cy),
    cy + (x - cx)), which takes pixel centres onto pixel centres."""
    size = np.array([poses.width, poses.height], dtype=np.float64)
    c = np.array(centre, dtype=np.float64)

    def turn(arr: np.ndarray) -> np.ndarray:
        out = arr.copy()
        r = arr[..., :2] * size - c
        out[..., 0] = (c[0] - r[..., 1]) / size[0]
        out[..., 1] = (c[1] + r[..., 0]) / size[1]
        return out

    return poses.map_points(turn)


def test_the_same_pose_moves_nothing(world) -> None:  # type: ignore[no-untyped-def]
    pair, sp, _ = world
    frame = pair.source.render(1)
    out, moved = warp_person(frame.rgb, frame.mask, sp, sp, 1)
    assert not (moved & ~frame.mask).any()  # only the person's own pixels
    assert np.array_equal(out[moved], frame.rgb[moved]) and not out[~moved].any()
    assert np.array_equal(moved, frame.mask)  # all of them


def test_a_turned_pose_turns_the_person_exactly(world) -> None:  # type: ignore[no-untyped-def]
    pair, sp, _ = world
    frame = pair.source.render(2)
    ys, xs = np.nonzero(frame.mask)
    centre = (int(xs.mean()), int(ys.mean()))
    out, moved = warp_person(frame.rgb, frame.mask, sp, turned(sp, centre), 2)
    # the source pixel under each turned pixel: (x, y) = (cx + (y' - cy), cy - (x' - cx)) at centres
    i, j = np.mgrid[0:SIZE, 0:SIZE]
    si, sj = centre[1] - (j - centre[0]) - 1, centre[0] + (i - centre[1])
    inside = (si >= 0) & (si < SIZE) & (sj >= 0) & (sj < SIZE)
    expected = np.zeros_like(out)
    expected[inside] = frame.rgb[si[inside], sj[inside]]
    assert moved.sum() > 0.9 * frame.mask.sum()
    assert np.array_equal(out[moved], expected[moved])  # every moved pixel is its own source pixel
    assert frame.mask[si[moved], sj[moved]].all()


def test_the_person_lands_on_the_ground_truth_edit(world) -> None:  # type: ignore[no-untyped-def]
    """With the world's exact edit poses the moved person is the ground-truth edit person: most of
    the true M_e covered, little outside it, and far closer to the true pixels than the source."""
    pair, sp, ep = world
    for f in range(4):
        src, truth = pair.source.render(f), pair.edit.render(f)
        out, moved = warp_person(src.rgb, src.mask, sp, ep, f)
        both = moved & truth.mask
        assert both.sum() > 0.75 * truth.mask.sum() and (moved & ~truth.mask).sum() < 0.1 * moved.sum()
        err = np.abs(out.astype(int) - truth.rgb.astype(int)).sum(-1)
        assert (err[both] <= 3).mean() > 0.8  # the same colours, pixel for pixel
        assert (np.abs(src.rgb.astype(int) - truth.rgb.astype(int)).sum(-1)[truth.mask] <= 3).mean() < 0.5


def test_no_usable_bone_moves_nothing_and_sizes_are_checked(world) -> None:  # type: ignore[no-untyped-def]
    pair, sp, ep = world
    frame = pair.source.render(0)
    unseen = ep.map_points(lambda a: a * np.array([1.0, 1.0, 0.0]))  # every score 0
    out, moved = warp_person(frame.rgb, frame.mask, sp, unseen, 0)
    assert not moved.any() and not out.any()
    with pytest.raises(ValueError, match="sizes differ"):
        warp_person(frame.rgb[:-1], frame.mask, sp, ep, 0)
    with pytest.raises(ValueError, match="frame for"):
        warp_person(frame.rgb, frame.mask, sp, ep.map_points(lambda a: a, width=SIZE + 1), 0)
