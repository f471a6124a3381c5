"""The ground-truth edit registered to an edit's placement: the one per-clip offset forgiven.

The world anchors the ground-truth edit's puppet at the source puppet's anchor (its pelvis when
the motion's root offset is zero) and moves it by the target motion's root offsets. That anchor
is a convention of the world, not something the videos show: a source that sways (``walk``,
``jump``, ``dance`` drift sideways) or whose feet sink in a squat stands, over a clip, a few
pixels away from its anchor, and nothing in the source or the target says by how much. An
alignment that puts the edit person where the source person stands on average gets every joint
angle, bone length and frame-to-frame move right and is still off by one constant offset for the
whole clip (measured on the 20 held-out pairs: 6.1 px mean joint error, 0.12 px once that offset
is removed; docs/benchmarks.md), and a crisp person a few pixels off scores lower PSNR than a
blurred one.

Registering removes exactly that one unknown, as root-aligned joint errors (MPJPE) do in 3D
pose benchmarks: the world renders its ground-truth edit again with the puppet's anchor moved by
the world-pixel offset ``delta`` that best fits the edit's poses,

    delta = argmin sum_{f, j} | p_fj - t_fj - z_f delta |^2 = sum z_f (p_fj - t_fj) / sum z_f^2,

over the body points ``j`` the poses see in frame ``f`` (``p``: the edit poses, ``t``: the
world's true edit joints, both image pixels; ``z_f``: the camera zoom of frame ``f``, so a
world offset moves the image by ``z_f delta``). Everything else — the person's pose in every
frame, its size, its motion through the clip, the camera — is still the world's truth, so an edit
whose poses are wrong in any other way is still scored as wrong. The offset is taken from the
edit's *poses*, never from its pixels: a person drawn away from its own poses is not forgiven.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mfollow.preprocess.pose.keypoints import PoseSequence
from mfollow.synth.world import Pair, PuppetVideo


def placement_offset(pair: Pair, edit_poses: PoseSequence) -> tuple[float, float]:
    """The world-pixel offset ``delta`` (x, y) of the module docstring's least squares: where
    ``edit_poses`` (the pair's frame size, at least its frame count) put the edit person's anchor
    relative to the world's. (0, 0) when no body point is seen."""
    n = pair.frames
    if len(edit_poses) < n:
        raise ValueError(f"{len(edit_poses)} frames of edit poses for a {n}-frame pair")
    if (edit_poses.width, edit_poses.height) != (pair.size, pair.size):
        raise ValueError(f"edit poses of a {edit_poses.width}x{edit_poses.height} frame for a {pair.size}px pair")
    d = edit_poses.pixels("body")[:n] - pair.edit.skeleton.body  # (F, 18, 2) image pixels
    seen = edit_poses.seen("body")[:n]  # (F, 18)
    z = np.broadcast_to(pair.edit.scene.camera[:, 2, None], seen.shape)  # (F,) zoom -> (F, 18)
    zs = z[seen]
    if zs.size == 0:
        return 0.0, 0.0
    delta = (zs[:, None] * d[seen]).sum(axis=0) / (zs**2).sum()  # (2,)
    return float(delta[0]), float(delta[1])


def registered(pair: Pair, delta: tuple[float, float]) -> Pair:
    """``pair`` with its ground-truth edit's puppet anchored ``delta`` world pixels away (source
    and target unchanged)."""
    edit = pair.edit
    anchor = (edit.puppet.anchor[0] + delta[0], edit.puppet.anchor[1] + delta[1])
    moved = PuppetVideo(replace(edit.puppet, anchor=anchor), edit.motion, edit.scene, edit.frames, edit.fps, edit.size)
    return replace(pair, edit=moved)
