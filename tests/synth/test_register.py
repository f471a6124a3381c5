"""Registering the ground-truth edit to an edit's placement (mfollow.synth.register)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from mfollow.preprocess.masks.files import read_masks
from mfollow.preprocess.pose.keypoints import PoseSequence
from mfollow.synth import make_pair
from mfollow.synth.files import MASK_DIRS, POSE_NAMES, VIDEO_NAMES, write_pair
from mfollow.synth.register import placement_offset, registered

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
from placement import residual_error


def shifted(poses: PoseSequence, pixels: np.ndarray) -> PoseSequence:
    """``poses`` moved by (F, 2) image pixels per frame (scores kept)."""
    size = np.array([poses.width, poses.height], dtype=np.float64)

    def move(arr: np.ndarray) -> np.ndarray:
        out = arr.copy()
        out[..., :2] += (pixels / size).reshape((len(pixels),) + (1,) * (arr.ndim - 2) + (2,))  # (F, 2) -> (F, 1.., 2)
        return out

    return poses.map_points(move)


@pytest.mark.parametrize("camera", ["zoom", "pan", "none"])
def test_a_world_offset_is_found_exactly_and_registration_removes_it(camera: str) -> None:
    pair = make_pair(10002, frames=8, size=96, camera=camera)  # type: ignore[arg-type]
    truth = pair.edit.poses()
    assert placement_offset(pair, truth) == pytest.approx((0.0, 0.0), abs=1e-9)
    delta = np.array([3.25, -1.5])  # world pixels: the image moves by zoom * delta
    zoom = pair.edit.scene.camera[:, 2]
    aligned = shifted(truth, zoom[:, None] * delta[None, :])
    found = placement_offset(pair, aligned)
    assert found == pytest.approx(tuple(delta), abs=1e-9)
    assert residual_error(pair, aligned, (0.0, 0.0)) > 1.5
    assert residual_error(pair, aligned, found) == pytest.approx(0.0, abs=1e-9)
    # the registered world draws its edit puppet where the shifted poses put it
    moved = registered(pair, found)
    np.testing.assert_allclose(moved.edit.skeleton.body, aligned.pixels("body"), atol=1e-9)
    assert moved.source is pair.source and moved.target is pair.target


def test_only_a_constant_offset_is_forgiven() -> None:
    pair = make_pair(10002, frames=8, size=96, camera="none")
    truth = pair.edit.poses()
    wobble = np.zeros((8, 2))
    wobble[::2, 0], wobble[1::2, 0] = 4.0, -4.0  # +-4 px frame to frame: no one offset explains it
    aligned = shifted(truth, wobble)
    found = placement_offset(pair, aligned)
    assert found == pytest.approx((0.0, 0.0), abs=1e-9)
    assert residual_error(pair, aligned, found) == pytest.approx(4.0, abs=1e-9)


def test_a_whole_pixel_offset_moves_the_rendered_edit_by_whole_pixels() -> None:
    pair = make_pair(10013, frames=3, size=96, camera="none")
    moved = registered(pair, (5.0, -3.0))
    for f in range(3):
        before, after = pair.edit.render(f), moved.edit.render(f)
        np.testing.assert_array_equal(after.mask[:-3, 5:], before.mask[3:, :-5])  # the puppet, 5 right and 3 up
        np.testing.assert_array_equal(moved.edit.plate(f), pair.edit.plate(f))  # the background stays
        assert after.mask.sum() == before.mask.sum() > 0


def test_points_unseen_are_left_out_and_bad_sizes_refused() -> None:
    pair = make_pair(10002, frames=4, size=64, camera="none")
    truth = pair.edit.poses()
    body = truth.body.copy()
    body[:, :, :2] += 10 / 64  # every point 10 px off ...
    body[:, :, 2] = 0.0  # ... but none seen
    assert placement_offset(pair, PoseSequence(64, 64, body, truth.feet, truth.hands, truth.box)) == (0.0, 0.0)
    with pytest.raises(ValueError, match="frames of edit poses"):
        placement_offset(pair, truth[0:2])
    bigger = truth.map_points(lambda a: a, width=128, height=128)
    with pytest.raises(ValueError, match="128x128"):
        placement_offset(pair, bigger)


def test_write_pair_of_one_role_writes_only_its_files(tmp_path: Path) -> None:
    pair = make_pair(10002, frames=3, size=64)
    report = write_pair(registered(pair, (2.0, 0.0)), tmp_path / "reg", roles=("edit",))
    names = {p.name for p in (tmp_path / "reg").iterdir()}
    assert names == {VIDEO_NAMES["edit"], POSE_NAMES["edit"], MASK_DIRS["edit"], "pair.json"}
    assert set(report["files"]) == names  # type: ignore[arg-type]
    masks = read_masks(tmp_path / "reg" / MASK_DIRS["edit"])
    np.testing.assert_array_equal(masks[1], registered(pair, (2.0, 0.0)).edit.render(1).mask)
