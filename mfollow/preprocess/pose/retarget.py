"""Retargeting: the aligned target skeleton rebuilt on the source person's bone lengths.

Alignment (:mod:`mfollow.preprocess.pose.align`) moves the target's poses by one similarity, so the edit
person keeps the *target's* proportions: a long-legged source performing a short-legged target's
motion is drawn short-legged, and the masks and the pose controller follow those limbs. What the
edit should show is the source's body doing the target's motion: the target's bone directions on
the source's bone lengths (how the synthetic world makes its ground truth, and what users ask for:
docs/method.md, §10).

:func:`retarget` rebuilds every frame outward from the root (the mid-hip) along the OpenPose-18
tree :data:`BONES`::

    new[child] = new[parent] + (a[child] - a[parent]) * r[kind]
    r[kind]    = median_t |source bone of that kind| / median_t |aligned bone of that kind|

with ``a`` the aligned target. Each bone keeps its direction and its length relative to the rest
of the clip (a limb foreshortened in one frame stays so); left and right bones of a kind share
one ratio (medians over both sides). The feet follow their ankles, each hand its wrist and the
face the nose, each moved as a whole and scaled by its own kind's ratio. The root stays where
alignment put it (:func:`mfollow.preprocess.pose.align.align` then shifts the clip back onto the ground it
chose for the feet). A joint whose parent is not seen in a frame stays where alignment put it (its own
children chain from there). A kind of bone seen in fewer than a quarter of either clip's frames
keeps ratio 1, and ratios are clamped to [1/2, 2], against stray detections.
"""

from __future__ import annotations

import numpy as np

from mfollow.preprocess.pose.keypoints import PoseSequence, mid_hip

ROOT = -1  # the mid-hip: the midpoint of the hips (8, 11)
#: (parent, child, kind) in build order; parents come before their children.
BONES: tuple[tuple[int, int, str], ...] = (
    (ROOT, 1, "spine"), (ROOT, 8, "hip"), (ROOT, 11, "hip"),
    (8, 9, "thigh"), (9, 10, "shin"), (11, 12, "thigh"), (12, 13, "shin"),
    (1, 2, "shoulder"), (2, 3, "upper_arm"), (3, 4, "forearm"),
    (1, 5, "shoulder"), (5, 6, "upper_arm"), (6, 7, "forearm"),
    (1, 0, "neck"), (0, 14, "eye"), (0, 15, "eye"), (14, 16, "ear"), (15, 17, "ear"),
)  # fmt: skip
#: Feet points (``feet`` order: L big toe, L small toe, L heel, R ...) -> (ankle, kind).
FEET: tuple[tuple[int, str], ...] = (
    (13, "big_toe"), (13, "small_toe"), (13, "heel"), (10, "big_toe"), (10, "small_toe"), (10, "heel"),
)  # fmt: skip
WRISTS = (7, 4)  # the body wrist of ``hands[:, 0]`` (left) and ``hands[:, 1]`` (right)
RATIO_RANGE = (0.5, 2.0)
MIN_SEEN = 0.25  # share of a clip's frames x sides that must show a kind of bone to measure it


def _sides() -> dict[str, int]:
    """How many bones of each kind a frame has (2 for a left/right pair)."""
    kinds = [k for _, _, k in BONES] + [k for _, k in FEET] + ["hand", "hand"]
    return {k: kinds.count(k) for k in kinds}


def _joint(xy: np.ndarray, seen: np.ndarray, j: int) -> tuple[np.ndarray, np.ndarray]:
    return mid_hip(xy, seen) if j == ROOT else (xy[:, j], seen[:, j])


def bone_lengths(poses: PoseSequence) -> dict[str, np.ndarray]:
    """Every kind's bone lengths in pixels, over the frames and sides where both ends are seen.

    Keys: the kinds of :data:`BONES`, of :data:`FEET` (ankle to foot point) and ``hand`` (wrist
    to the middle finger's base, hand point 9)."""
    xy, seen = poses.pixels("body"), poses.seen("body")
    out: dict[str, list[np.ndarray]] = {}
    for parent, child, kind in BONES:
        p, p_seen = _joint(xy, seen, parent)
        ok = p_seen & seen[:, child]
        out.setdefault(kind, []).append(np.linalg.norm(xy[ok, child] - p[ok], axis=1))
    feet, feet_seen = poses.pixels("feet"), poses.seen("feet")
    for k, (ankle, kind) in enumerate(FEET):
        ok = seen[:, ankle] & feet_seen[:, k]
        out.setdefault(kind, []).append(np.linalg.norm(feet[ok, k] - xy[ok, ankle], axis=1))
    hands, hands_seen = poses.pixels("hands"), poses.seen("hands")  # (F, 2, 21, 2), (F, 2, 21)
    for side in range(2):
        ok = hands_seen[:, side, 0] & hands_seen[:, side, 9]
        out.setdefault("hand", []).append(np.linalg.norm(hands[ok, side, 9] - hands[ok, side, 0], axis=1))
    return {kind: np.concatenate(parts) for kind, parts in out.items()}


def ratios(source: PoseSequence, aligned: PoseSequence) -> dict[str, float]:
    """r[kind] = median source length / median aligned length; 1 where either clip shows that
    kind of bone in fewer than :data:`MIN_SEEN` of its possible places (frames x sides) or fewer
    than 3 times (a few stray detections of a hidden elbow are no measure of an arm)."""
    src, tgt = bone_lengths(source), bone_lengths(aligned)
    sides = _sides()
    r = {}
    for kind in src:
        enough = all(
            len(lengths[kind]) >= max(3, MIN_SEEN * len(p) * sides[kind])
            for lengths, p in ((src, source), (tgt, aligned))
        )
        if enough and np.median(tgt[kind]) > 1e-6:
            r[kind] = float(np.clip(np.median(src[kind]) / np.median(tgt[kind]), *RATIO_RANGE))
        else:
            r[kind] = 1.0
    return r


def retarget(aligned: PoseSequence, source: PoseSequence) -> PoseSequence:
    """``aligned`` (the target's poses aligned into the source's frame) on ``source``'s bone
    lengths; see the module docstring. Both must be in one frame (the same width and height, and
    the same camera: with a moving camera, pass both in frame 0's coordinates)."""
    r = ratios(source, aligned)
    size = np.array([aligned.width, aligned.height], dtype=np.float64)
    xy, seen = aligned.pixels("body"), aligned.seen("body")
    new = xy.copy()  # (F, 18, 2) pixels; joints not rebuilt stay where alignment put them
    root, root_seen = mid_hip(xy, seen)
    built = {ROOT: (root, root_seen)}  # joint -> (new position (F, 2), rebuilt from a seen parent (F,))
    for parent, child, kind in BONES:
        p_new, p_ok = built[parent]
        p_old, _ = _joint(xy, seen, parent)
        ok = p_ok & seen[:, child]
        new[ok, child] = p_new[ok] + (xy[ok, child] - p_old[ok]) * r[kind]
        built[child] = (new[:, child], seen[:, child])
    feet = aligned.pixels("feet")
    for k, (ankle, kind) in enumerate(FEET):
        feet[:, k] = new[:, ankle] + (feet[:, k] - xy[:, ankle]) * r[kind]
    hands = aligned.pixels("hands")  # (F, 2, 21, 2)
    for side, wrist in enumerate(WRISTS):
        hands[:, side] = new[:, None, wrist] + (hands[:, side] - xy[:, None, wrist]) * r["hand"]
    face = None
    if aligned.face is not None:
        face = new[:, None, 0] + (aligned.pixels("face") - xy[:, None, 0]) * r["neck"]

    def placed(points: np.ndarray, arr: np.ndarray) -> np.ndarray:
        out = arr.copy()  # scores kept
        out[..., :2] = points / size
        return out

    return PoseSequence(
        aligned.width, aligned.height, placed(new, aligned.body), placed(feet, aligned.feet),
        placed(hands, aligned.hands), _box(aligned, xy, seen, new),
        None if face is None else placed(face, aligned.face),
    )  # fmt: skip


def _box(aligned: PoseSequence, xy: np.ndarray, seen: np.ndarray, new: np.ndarray) -> np.ndarray:
    """The person boxes around the rebuilt body: each frame's box keeps the margins it had around
    the seen body points; frames with no seen point keep their box."""
    size = np.array([aligned.width, aligned.height] * 2, dtype=np.float64)
    box = aligned.box * size  # (F, 4) pixels
    out = box.copy()
    for f in np.flatnonzero(seen.any(axis=1) & np.isfinite(box).all(axis=1)):
        old, now = xy[f, seen[f]], new[f, seen[f]]
        margins = box[f] - np.concatenate([old.min(0), old.max(0)])
        out[f] = np.concatenate([now.min(0), now.max(0)]) + margins
    return out / size
