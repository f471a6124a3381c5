"""Moving the source person's own pixels into the edit pose, bone by bone.

A body is close to rigid between its joints, so the source frame already holds most of what the
edited frame shows of the person, only moved: each limb by the motion that takes its bone in the
source pose onto the same bone in the edit pose. :func:`warp_person` draws that backward, for
every pixel p of the edit frame:

    k      = the part of the edit skeleton whose surface is nearest to p: the distance to its
             bone less its :data:`REACH` (the part p belongs to)
    q      = T_k(p)                    (the same place on that bone in the source frame)
    warped = source[q]   where q lies on the source person (M_r) and the source pixel there
                         belongs (by the same rule) to part k, or, for a p beside its bone
                         (0 <= t <= l_e below), to a part sharing a joint with k; else nothing
                         (the model draws it)

A p past the end of its bone is moved only where the part goes on there: past the trunk's
joints (:data:`TORSO`) and the body's ends (:data:`OPEN_ENDS`: the head past the nose, a hand
or foot past its points) any distance, past an elbow or knee only within the limb's rounded end
(its reach); beyond that lies the next part, not this one.

T_k maps the edit bone a_e -> b_e onto the source bone a_s -> b_s: with u the unit vector along
a bone and n its left normal, a point at (t, d) = ((p - a_e) . u_e, (p - a_e) . n_e) goes to

    q = a_s + t' u_s + s d n_s,   t' = t l_s / l_e on the bone (0 <= t <= l_e),
                                  t' = s t before it, l_s + s (t - l_e) past it,

where l are the bone lengths and s the frame's overall scale (the median of l_s / l_e over its
bones): a foreshortened bone stretches along itself only, and the limb keeps its width. The
bones are the body tree of :data:`mfollow.preprocess.pose.retarget.BONES` (the face's small eye and ear
bones left out), each foot from its ankle to the middle of its foot points and each hand from
its wrist to the middle finger's base. A bone is used only where both its ends are seen in both
poses and it is at least :data:`MIN_BONE` pixels long in both. Nothing of the person hidden in the
source frame (an arm behind the back) can be moved; where the two skeletons overlap differently
the nearest part decides, so the part in front in the edit is the one nearer to the pixel.
Frames, masks and poses are at one size (``edit`` moves the person at its working size).
"""

from __future__ import annotations

import numpy as np

from mfollow.preprocess.pose.keypoints import PoseSequence, mid_hip
from mfollow.preprocess.pose.retarget import BONES, ROOT, WRISTS

MIN_BONE = 1.0  # pixels: shorter bones have no direction to speak of
#: Joints a pixel may lie past along a bone: the torso's (the trunk spreads around its bones) and
#: the body's ends (the head past the nose, the feet and hands past their points). Past the other
#: joints lies the next bone's part, not this one's.
TORSO: frozenset[int | str] = frozenset({ROOT, 1})
OPEN_ENDS: frozenset[int | str] = frozenset({0, 1, 2, 5, 8, 11, "foot:L", "foot:R", "hand:L", "hand:R"})
#: (first joint, second joint, kind) in the body tree of :data:`mfollow.preprocess.pose.retarget.BONES`,
#: plus the feet ("foot:L" / "foot:R") and hands ("hand:L" / "hand:R").
WARP_BONES: tuple[tuple[int | str, int | str, str], ...] = (
    *((parent, child, kind) for parent, child, kind in BONES if kind not in ("eye", "ear")),
    *((13, "foot:L", "foot"), (10, "foot:R", "foot"), (WRISTS[0], "hand:L", "hand"), (WRISTS[1], "hand:R", "hand")),
)
#: How far each kind of part reaches from its bone, as a fraction of the spine (mid-hip to neck):
#: a person's usual half-widths (the trunk about half its height, an arm a ninth). A pixel
#: belongs to the part whose surface is nearest (distance to the bone less this reach), so the
#: side of the chest is the trunk's, not the nearer arm bone's.
REACH = {
    "spine": 0.45, "hip": 0.3, "shoulder": 0.3, "neck": 0.22, "upper_arm": 0.12, "forearm": 0.11,
    "thigh": 0.15, "shin": 0.14, "foot": 0.1, "hand": 0.1,
}  # fmt: skip


def _ends(poses: PoseSequence, f: int) -> tuple[dict[int | str, np.ndarray], dict[int | str, bool]]:
    """Frame ``f``'s joints in pixels and whether each is seen: the body points, the mid-hip
    (:data:`ROOT`), the middle of each foot's points and each hand's middle-finger base."""
    xy, seen = poses.pixels("body")[f], poses.seen("body")[f]
    pts: dict[int | str, np.ndarray] = {j: xy[j] for j in range(18)}
    ok: dict[int | str, bool] = {j: bool(seen[j]) for j in range(18)}
    root, root_seen = mid_hip(xy[None], seen[None])
    pts[ROOT], ok[ROOT] = root[0], bool(root_seen[0])
    feet, feet_seen = poses.pixels("feet")[f], poses.seen("feet")[f]  # (6, 2), (6,): L big, small, heel, R ...
    for name, sl in (("foot:L", slice(0, 3)), ("foot:R", slice(3, 6))):
        pts[name], ok[name] = feet[sl].mean(0), bool(feet_seen[sl].all())
    hands, hands_seen = poses.pixels("hands")[f], poses.seen("hands")[f]  # (2, 21, 2), (2, 21): left, right
    for side, name in enumerate(("hand:L", "hand:R")):
        pts[name], ok[name] = hands[side, 9], bool(hands_seen[side, 9])
    return pts, ok


def _segment_distance(px: np.ndarray, py: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of the points (px, py) from the segment a-b."""
    d = b - a
    t = np.clip(((px - a[0]) * d[0] + (py - a[1]) * d[1]) / max(float(d @ d), 1e-12), 0.0, 1.0)
    return np.hypot(px - a[0] - t * d[0], py - a[1] - t * d[1])


def _nearest_part(
    bones: list[tuple[np.ndarray, np.ndarray]], reach: np.ndarray, px: np.ndarray, py: np.ndarray
) -> np.ndarray:
    """Index of the bone whose part's surface is nearest (distance to the bone less its ``reach``
    in pixels) for every point (px, py)."""
    dist = np.stack([_segment_distance(px, py, a, b) - r for (a, b), r in zip(bones, reach, strict=True)])  # (K, ...)
    return dist.argmin(0)


def _spine(pts: dict[int | str, np.ndarray], ok: dict[int | str, bool]) -> float:
    """The spine's length (mid-hip to neck) in pixels; 0 where either end is not seen."""
    return float(np.linalg.norm(pts[1] - pts[ROOT])) if ok[1] and ok[ROOT] else 0.0


def warp_person(
    source: np.ndarray, M_r: np.ndarray, source_poses: PoseSequence, edit_poses: PoseSequence, f: int
) -> tuple[np.ndarray, np.ndarray]:
    """The source person of frame ``f`` moved into its edit pose (module docstring).

    ``source`` (H, W, 3) uint8, ``M_r`` (H, W) bool, both poses of a ``W`` x ``H`` frame. Returns
    the (H, W, 3) uint8 frame (zero where nothing was moved) and the (H, W) bool mask of the
    pixels that were moved: empty when no bone is usable."""
    height, width = M_r.shape
    if source.shape != (height, width, 3):
        raise ValueError(f"source {source.shape} and mask {M_r.shape}: sizes differ")
    for p in (source_poses, edit_poses):
        if (p.width, p.height) != (width, height):
            raise ValueError(f"poses of a {p.width}x{p.height} frame for {width}x{height} frames")
    src, src_ok = _ends(source_poses, f)
    dst, dst_ok = _ends(edit_poses, f)
    usable = [
        (a, b, kind)
        for a, b, kind in WARP_BONES
        if src_ok[a] and src_ok[b] and dst_ok[a] and dst_ok[b]
        and min(np.linalg.norm(src[b] - src[a]), np.linalg.norm(dst[b] - dst[a])) >= MIN_BONE
    ]  # fmt: skip
    out = np.zeros_like(source)
    moved = np.zeros((height, width), dtype=bool)
    if not usable:
        return out, moved
    # which usable bones share a joint (a pixel near a joint may belong to either)
    joints = [{a, b} for a, b, _ in usable]
    near = np.array([[bool(joints[i] & joints[j]) for j in range(len(usable))] for i in range(len(usable))])
    l_s = np.array([np.linalg.norm(src[b] - src[a]) for a, b, _ in usable])
    l_e = np.array([np.linalg.norm(dst[b] - dst[a]) for a, b, _ in usable])
    reach = np.array([REACH[kind] for _, _, kind in usable])
    scale = float(np.median(l_s / l_e))

    ys, xs = np.nonzero(M_r)
    if ys.size == 0:
        return out, moved
    # the source person's pixels, each labelled with its nearest source part
    src_label = np.full((height, width), -1, dtype=np.int64)
    src_bones = [(src[a], src[b]) for a, b, _ in usable]
    src_label[ys, xs] = _nearest_part(src_bones, reach * _spine(src, src_ok), xs + 0.5, ys + 0.5)

    py, px = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5  # pixel centres
    dst_spine = _spine(dst, dst_ok)
    k = _nearest_part([(dst[a], dst[b]) for a, b, _ in usable], reach * dst_spine, px, py)  # (H, W) edit part
    qx, qy = np.empty_like(px), np.empty_like(py)
    beside = np.zeros((height, width), dtype=bool)  # the pixel lies beside its bone (0 <= t <= l_e)
    along = np.zeros((height, width), dtype=bool)  # or past one of its ends that may have more of its part
    for i, (a, b, _) in enumerate(usable):
        on = k == i
        a_e, a_s = dst[a], src[a]
        u_e, u_s = (dst[b] - a_e) / l_e[i], (src[b] - a_s) / l_s[i]
        n_e, n_s = np.array([-u_e[1], u_e[0]]), np.array([-u_s[1], u_s[0]])
        rx, ry = px[on] - a_e[0], py[on] - a_e[1]
        t, d = rx * u_e[0] + ry * u_e[1], rx * n_e[0] + ry * n_e[1]
        beside[on] = (t >= 0) & (t <= l_e[i])
        cap = reach[i] * dst_spine  # a limb's rounded end past its joint
        along[on] = ((t >= -cap) | (a in TORSO)) & ((t <= l_e[i] + cap) | (b in OPEN_ENDS))
        t_s = np.where(t < 0, scale * t, np.where(t > l_e[i], l_s[i] + scale * (t - l_e[i]), t * l_s[i] / l_e[i]))
        qx[on] = a_s[0] + t_s * u_s[0] + scale * d * n_s[0]
        qy[on] = a_s[1] + t_s * u_s[1] + scale * d * n_s[1]
    jx, iy = np.floor(qx).astype(np.int64), np.floor(qy).astype(np.int64)  # the source pixel holding q
    inside = (jx >= 0) & (jx < width) & (iy >= 0) & (iy < height)
    jx, iy = np.clip(jx, 0, width - 1), np.clip(iy, 0, height - 1)
    label = src_label[iy, jx]
    moved = inside & (label >= 0) & np.where(beside, near[k, np.maximum(label, 0)], along & (label == k))
    out[moved] = source[iy[moved], jx[moved]]
    return out, moved
