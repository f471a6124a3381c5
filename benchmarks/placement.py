"""What registration leaves of the aligned poses' error (the quality benchmark's ``placement``)."""

from __future__ import annotations

import numpy as np

from mfollow.preprocess.pose.keypoints import PoseSequence
from mfollow.synth.register import registered
from mfollow.synth.world import Pair


def residual_error(pair: Pair, edit_poses: PoseSequence, delta: tuple[float, float]) -> float:
    """Mean distance (image pixels) of the seen body points of ``edit_poses`` from the registered
    edit's joints: what registration leaves of the poses' error."""
    n = pair.frames
    d = edit_poses.pixels("body")[:n] - registered(pair, delta).edit.skeleton.body  # (F, 18, 2)
    seen = edit_poses.seen("body")[:n]
    return float(np.linalg.norm(d[seen], axis=-1).mean()) if seen.any() else float("nan")
