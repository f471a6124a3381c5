"""Aligning the target's poses to the source person (docs/method.md, §10; paper: MotionEditor [40]).

All methods produce one similarity transform without rotation, p' = dst + s (p - src), applied to
every keypoint (body, feet, hands, face) and to the person box, in pixels: target-frame pixels in,
source-frame pixels out (the result is normalised by the source frame size).

- ``motioneditor``: MotionEditor's geometry in keypoint space: scale = the ratio of the source's
  and the target's person heights (median over the clip: one clip-level scale, robust to raised
  arms in a few frames), and a bottom-centre anchor: the target's lands on the source's, so the
  target's own motion (root travel included) is kept, scaled. The anchor is the clips' median
  bottom-centre (``median``, the default), each clip's ground point (``ground``: the median centre
  standing on the clip's ground, the :data:`GROUND_PERCENTILE` of its per-frame lowest ankle —
  where the feet come down, which a jump does not move; lower joint error on most pairs, but not
  better edits, docs/benchmarks.md), frame 0's (``first``, the issue's and the released script's
  commented-out variant), or the target's own place (``target``, the released script).
- ``linear``: one global least-squares fit (scale + offset) of the target's head, shoulder and hip
  points to the source's at the same frame index.
- ``none``: the target's poses unchanged (normalised coordinates kept; never retargeted).

Then, with ``retarget`` (the default), the aligned skeleton is rebuilt on the source person's bone
lengths (:mod:`mfollow.preprocess.pose.retarget`: the target's bone directions, the source's proportions) and
shifted back onto the ground the similarity chose for its feet.

With the source camera's track (``follow_camera``, :mod:`mfollow.preprocess.pose.camera_track`: the camera's
pan, zoom and shake measured on the source's background), all of this happens in frame 0's
coordinates: the source poses are moved there first, and the aligned poses are moved back into
each frame with its camera, so the edited person keeps to the source's ground as the camera moves.

Person height and bottom-centre come from the pose's person box (``height="box"``, mask-derived in
the synthetic world, detector boxes from DWPose) or from the skeleton (``height="skeleton"``: top
of the head points to the lowest ankle; the centre is the mid-hip's x where both hips are seen, as
an arm reaching out moves the extent's centre, else the seen points' middle). When either clip
never shows a whole person (legs out of view) and both are cut by the frame's bottom edge, both
use their visible height (:func:`cut_extent`: the crown down to that edge, anchored on the edge
under the mid-hip: what the authors' mask boxes measure of such a person); otherwise the torso
(neck-to-mid-hip length, anchored at the mid-hip), or failing that the shoulder width (anchored at
the neck).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mfollow.preprocess.pose import ALIGN_DEFAULTS, Anchor
from mfollow.preprocess.pose import AlignMethod as Method
from mfollow.preprocess.pose import HeightFrom as Height
from mfollow.preprocess.pose.camera_track import CameraTrack
from mfollow.preprocess.pose.keypoints import PoseSequence, mid_hip
from mfollow.preprocess.pose.retarget import retarget
from mfollow.runtime.errors import MediaError

FIT_POINTS = (0, 1, 2, 5, 8, 11, 14, 15, 16, 17)  # nose, neck, shoulders, hips, eyes, ears
HEAD, ANKLES, LEGS = (0, 14, 15, 16, 17), (10, 13), [8, 9, 11, 12]
#: The ``ground`` anchor's height: this percentile of the clip's per-frame bottom (image y grows
#: downwards, so a high percentile is a low point), not the maximum, which one stray ankle detection
#: would set. Measured on 20 held-out and 40 benchmark pairs (docs/benchmarks.md).
GROUND_PERCENTILE = 90.0
#: The crown above the highest head point (eyes, ears, nose), in nose-to-neck lengths: the median
#: over the six people of the authors' three real cases, their SAM masks' tops against mediapipe's
#: skeletons (0.58-0.91 a person; benchmarks/realcases.py).
CROWN_ABOVE_HEAD = 0.8


@dataclass(frozen=True)
class AlignSettings:
    """The defaults are :data:`mfollow.preprocess.pose.ALIGN_DEFAULTS` (the authors' way, measured
    on their real cases); :data:`mfollow.preprocess.pose.PUPPET_ALIGN` is the synthetic world's."""

    method: Method = ALIGN_DEFAULTS["method"]  # type: ignore[assignment]
    # skeleton heights halve the joint error of box heights (synthetic pairs, docs/benchmarks.md)
    height: Height = ALIGN_DEFAULTS["height"]  # type: ignore[assignment]
    # motioneditor's anchor: ``target`` keeps the target's own place (scaling about its frame-0
    # bottom-centre: the authors' released cases, MotionEditor's script); ``median`` both clips'
    # median bottom-centres; ``ground`` the median centre on each clip's ground; ``first`` frame 0's
    anchor: Anchor = ALIGN_DEFAULTS["anchor"]  # type: ignore[assignment]
    # follow the source camera's pan / zoom / shake, measured on its background (needs the source frames)
    follow_camera: bool = ALIGN_DEFAULTS["follow_camera"]  # type: ignore[assignment]
    # after the similarity, rebuild the skeleton on the source's bone lengths
    # (:mod:`mfollow.preprocess.pose.retarget`)
    retarget: bool = ALIGN_DEFAULTS["retarget"]  # type: ignore[assignment]


@dataclass(frozen=True)
class Transform:
    """p' = dst + scale * (p - src), in pixels (target frame -> source frame)."""

    scale: float
    src: tuple[float, float]
    dst: tuple[float, float]

    def apply(self, points: np.ndarray) -> np.ndarray:
        """(..., 2) pixel points -> (..., 2)."""
        return np.asarray(self.dst) + self.scale * (points - np.asarray(self.src))

    def to_json(self) -> dict[str, object]:
        return {"scale": self.scale, "src": list(self.src), "dst": list(self.dst)}


def _pixels(arr: np.ndarray, w: int, h: int) -> np.ndarray:
    return arr[..., :2] * np.array([w, h], dtype=np.float64)


def person_extent(poses: PoseSequence, height: Height) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame person height (F,) and bottom-centre (F, 2), in pixels; NaN where unknown."""
    w, h = poses.width, poses.height
    if height == "box" and not np.isnan(poses.box).all():
        box = poses.box * np.array([w, h, w, h])
        return box[:, 3] - box[:, 1], np.stack([(box[:, 0] + box[:, 2]) / 2, box[:, 3]], axis=1)
    xy, seen = poses.pixels("body"), poses.seen("body")
    ys = np.where(seen, xy[..., 1], np.nan)
    xs = np.where(seen, xy[..., 0], np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # frames where no head or ankle is seen: NaN
        top = np.nanmin(ys[:, HEAD], axis=1)
        bottom = np.nanmax(ys[:, ANKLES], axis=1)
        centre = (np.nanmin(xs, axis=1) + np.nanmax(xs, axis=1)) / 2
    hip, hips = mid_hip(xy, seen)  # the mid-hip's x where seen: a reach of the arms moves the extent's centre
    centre = np.where(hips, hip[:, 0], centre)
    return bottom - top, np.stack([centre, bottom], axis=1)


def cut_extent(poses: PoseSequence) -> tuple[np.ndarray, np.ndarray]:
    """For a person whom the frame's bottom edge cuts (no ankle seen, the legs running out of the
    frame: a torso length below the lowest hip or knee seen is past the edge): per-frame
    visible height, from the crown (:func:`crown`) down to the frame's bottom (F,), and the point on
    that edge under the mid-hip (F, 2), in pixels; NaN in frames that show an ankle or no crown.

    It is what the authors' alignment measures of such a person (the person mask's box ends at the
    frame's edge), so the two visible heights' ratio scales a cut target as theirs do."""
    xy, seen = poses.pixels("body"), poses.seen("body")
    hip, hips = mid_hip(xy, seen)
    torso = np.where(seen[:, 1] & hips, np.linalg.norm(xy[:, 1] - hip, axis=1), np.nan)
    legs = np.where(seen[:, LEGS], xy[:, LEGS, 1], -np.inf).max(axis=1)  # the lowest hip or knee seen
    # the ankles unseen and the legs running out of the frame: the next joint down (about a torso
    # length below the lowest seen) would lie past the bottom edge
    cut = ~seen[:, list(ANKLES)].any(axis=1) & hips & (legs + torso >= poses.height)
    top = crown(xy, seen)
    ok = cut & np.isfinite(top)
    length = np.where(ok, poses.height - top, np.nan)
    return length, np.where(ok[:, None], np.stack([hip[:, 0], np.full(len(xy), float(poses.height))], 1), np.nan)


def crown(xy: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """(F, 18, 2) pixels, (F, 18) seen -> (F,) the top of the head: the highest head point raised by
    :data:`CROWN_ABOVE_HEAD` nose-to-neck lengths (the hair the skeleton has no point for). NaN
    where the nose, the neck or every head point is unseen."""
    ys = np.where(seen[:, HEAD], xy[:, HEAD, 1], np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        top = np.nanmin(ys, axis=1)
    unit = np.where(seen[:, 0] & seen[:, 1], np.abs(xy[:, 1, 1] - xy[:, 0, 1]), np.nan)
    return top - CROWN_ABOVE_HEAD * unit


def torso_extent(poses: PoseSequence) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame neck-to-mid-hip length (F,) and mid-hip point (F, 2), in pixels; NaN where unseen."""
    xy, seen = poses.pixels("body"), poses.seen("body")
    hip, hips = mid_hip(xy, seen)
    ok = seen[:, 1] & hips
    length = np.where(ok, np.linalg.norm(xy[:, 1] - hip, axis=1), np.nan)
    return length, np.where(ok[:, None], hip, np.nan)


def shoulder_extent(poses: PoseSequence) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame shoulder width (F,) and neck point (F, 2), in pixels; NaN where unseen."""
    xy = poses.pixels("body")
    ok = poses.seen("body")[:, [1, 2, 5]].all(axis=1)
    width = np.where(ok, np.linalg.norm(xy[:, 2] - xy[:, 5], axis=1), np.nan)
    return width, np.where(ok[:, None], xy[:, 1], np.nan)


def estimate(source: PoseSequence, target: PoseSequence, s: AlignSettings = AlignSettings()) -> Transform:
    """The transform of ``s.method`` (see the module docstring)."""
    if s.method == "none":  # normalised coordinates kept: only the frame-size ratio
        if source.width * target.height != source.height * target.width:
            raise MediaError(
                f"cannot keep the target's poses unchanged: its frame aspect {target.width}x{target.height} "
                f"differs from the source's {source.width}x{source.height}",
                hint="use --method motioneditor or linear",
            )
        return Transform(source.height / target.height, (0.0, 0.0), (0.0, 0.0))
    if s.method == "motioneditor":
        h_src, a_src = person_extent(source, s.height)
        h_tgt, a_tgt = person_extent(target, s.height)
        fallback: Callable[[PoseSequence], tuple[np.ndarray, np.ndarray]] | None = None
        # legs out of view: both cut by the frame's bottom (as the authors measure them), or else a
        # part seen in both
        for extent in (cut_extent, torso_extent, shoulder_extent):
            if not (np.isnan(h_src).all() or np.isnan(h_tgt).all()):
                break
            fallback = extent
            (h_src, a_src), (h_tgt, a_tgt) = extent(source), extent(target)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            ratio = float(np.nanmedian(h_src) / np.nanmedian(h_tgt))
        if s.anchor in ("ground", "median"):
            feet = fallback in (None, cut_extent)  # the torso's and shoulders' anchors do not stand on the ground
            src_pt, tgt_pt = clip_anchor(a_src, s.anchor, feet), clip_anchor(a_tgt, s.anchor, feet)
        else:
            src_pt, tgt_pt = _first_valid(a_src), _first_valid(a_tgt)
        if not np.isfinite(ratio) or ratio <= 0 or src_pt is None or tgt_pt is None or not np.isfinite(src_pt).all():
            raise MediaError("cannot align: no frame shows the whole person in both videos")
        if s.anchor == "target":
            src_pt = tgt_pt * np.array([source.width / target.width, source.height / target.height])
        return Transform(ratio, tuple(tgt_pt), tuple(src_pt))  # type: ignore[arg-type]
    if s.method == "linear":
        n = min(len(source), len(target))
        p = _pixels(source.body[:n, FIT_POINTS], source.width, source.height)
        q = _pixels(target.body[:n, FIT_POINTS], target.width, target.height)
        ok = source.seen("body")[:n, FIT_POINTS] & target.seen("body")[:n, FIT_POINTS]
        if ok.sum() < 2:
            raise MediaError("cannot align: too few visible points in common")
        scale, qm, pm = fit_scale(q[ok], p[ok])
        return Transform(scale, tuple(qm), tuple(pm))  # type: ignore[arg-type]
    raise ValueError(f"unknown alignment method {s.method!r}")


def fit_scale(p: np.ndarray, q: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """The least-squares scale s taking the (N, 2) points ``p`` onto ``q`` about their means:
    q ~ q_mean + s (p - p_mean). Returns (s, p_mean, q_mean)."""
    pm, qm = p.mean(0), q.mean(0)
    return float(((q - qm) * (p - pm)).sum() / max(((p - pm) ** 2).sum(), 1e-12)), pm, qm


def clip_anchor(points: np.ndarray, anchor: Anchor, feet: bool = True) -> np.ndarray:
    """One clip's anchor from its per-frame anchor points (F, 2) (NaN where unknown): the median
    point; with ``anchor="ground"`` and ``feet`` (bottom-centres), its height is the clip's ground,
    the :data:`GROUND_PERCENTILE` of the bottoms. All NaN where no frame has a point."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        point = np.nanmedian(points, axis=0)
        if anchor == "ground" and feet and np.isfinite(points[:, 1]).any():
            point[1] = np.nanpercentile(points[:, 1], GROUND_PERCENTILE)
    return point


def _first_valid(points: np.ndarray) -> np.ndarray | None:
    ok = np.isfinite(points).all(axis=1)
    return points[np.argmax(ok)] if ok.any() else None


def apply(target: PoseSequence, t: Transform, width: int, height: int) -> PoseSequence:
    """The target's keypoints and boxes moved by ``t`` into a ``width`` x ``height`` frame."""

    def move(arr: np.ndarray) -> np.ndarray:
        out = arr.copy()
        xy = t.apply(_pixels(arr, target.width, target.height))
        out[..., 0], out[..., 1] = xy[..., 0] / width, xy[..., 1] / height
        return out

    box = target.box.copy()
    corners = t.apply(np.stack([box[:, :2], box[:, 2:]], axis=1) * np.array([target.width, target.height]))
    box = (corners / np.array([width, height])).reshape(-1, 4)
    return target.map_points(move, width, height, box)


def align(
    source: PoseSequence, target: PoseSequence, s: AlignSettings = AlignSettings(), camera: CameraTrack | None = None
) -> tuple[PoseSequence, Transform]:
    """The edit poses: the target's motion moved onto the source person (and, with
    ``s.retarget``, rebuilt on the source's bone lengths); with the source's ``camera`` track, in
    frame 0's coordinates and then into each frame with its camera (the transform returned is the
    similarity, in frame 0's coordinates)."""
    reference = source if camera is None else _moved(source, camera.to_reference)
    t = estimate(reference, target, s)
    edit = apply(target, t, source.width, source.height)
    if s.retarget and s.method != "none":  # none: the target's poses as they are
        edit = _grounded(retarget(edit, reference), like=edit, s=s)
    return (edit if camera is None else _moved(edit, camera.from_reference)), t


def _grounded(poses: PoseSequence, like: PoseSequence, s: AlignSettings) -> PoseSequence:
    """``poses`` shifted as a whole so that its anchor (:func:`clip_anchor` of its bottom-centres,
    ``ground`` or else ``median``) is ``like``'s: a retargeted skeleton, whose legs changed length,
    back on the aligned feet's ground."""
    anchor: Anchor = "ground" if s.anchor == "ground" else "median"
    shift = clip_anchor(person_extent(like, s.height)[1], anchor) - clip_anchor(
        person_extent(poses, s.height)[1], anchor
    )
    if not np.isfinite(shift).all():  # no frame shows the feet: the root already stands where it should
        return poses
    return _moved(poses, lambda xy: xy + shift)


def _moved(poses: PoseSequence, fn: Callable[[np.ndarray], np.ndarray]) -> PoseSequence:
    """``poses`` with ``fn`` ((F, ..., 2) pixels -> pixels, frame by frame) applied to every
    keypoint and to the boxes' corners."""
    size = np.array([poses.width, poses.height], dtype=np.float64)

    def move(arr: np.ndarray) -> np.ndarray:
        out = arr.copy()
        out[..., :2] = fn(arr[..., :2] * size) / size
        return out

    corners = poses.box.reshape(-1, 2, 2) * size  # (F, 4) -> (F, 2 corners, xy)
    return poses.map_points(move, box=(fn(corners) / size).reshape(-1, 4))


def _shared_points(a: PoseSequence, b: PoseSequence) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) and (N, 2): the body points seen in both over their common frames, in ``b``'s pixels."""
    n = min(len(a), len(b))
    pa, pb = _pixels(a.body[:n], b.width, b.height), _pixels(b.body[:n], b.width, b.height)
    ok = a.seen("body")[:n] & b.seen("body")[:n]
    return pa[ok], pb[ok]


def joint_error(a: PoseSequence, b: PoseSequence) -> float:
    """Mean distance in pixels (of ``b``'s frame) between body points visible in both."""
    p, q = _shared_points(a, b)
    return float(np.linalg.norm(p - q, axis=-1).mean()) if len(p) else float("nan")


def registered_joint_error(a: PoseSequence, b: PoseSequence) -> float:
    """:func:`joint_error` once the one scale and offset per clip that best take ``a``'s body
    points onto ``b``'s (least squares over every frame) are removed: the error of the motion's
    shape, not of where the clip stands nor how big it is (two conventions of placement, e.g. the
    authors' target place and the synthetic world's source anchor, score alike)."""
    p, q = _shared_points(a, b)
    if len(p) < 2:
        return float("nan")
    scale, pm, qm = fit_scale(p, q)
    return float(np.linalg.norm(qm + scale * (p - pm) - q, axis=-1).mean())
