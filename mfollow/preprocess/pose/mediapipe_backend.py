"""The offline mediapipe backends (docs/preprocessing.md): BlazePose via Holistic for poses and
hands, and for the person's mask (M_r, the target's silhouette for M_e), SelfieSegmentation where
it finds no body.

mediapipe 0.10.14 ships these models inside its wheel (model complexity 1 only) and runs without
network. It is an optional extra; install it slim (docs/preprocessing.md). Single person only.

BlazePose-33 -> OpenPose-18 (docs/method.md, §10): the neck is the shoulders' midpoint with the smaller
visibility; visibility stands for the score; points well outside the frame get score 0 (those just
past its edge are kept, as DWPose keeps them); the hips are moved to where DWPose puts them
(:data:`HIP_TO_DWPOSE`). Feet: foot index
for the big toe, heel for the heel, no small toe. Holistic's hands use the OpenPose hand order.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from mfollow.preprocess.pose.dwpose import fill_gaps
from mfollow.preprocess.pose.keypoints import SEEN, PoseSequence
from mfollow.runtime.errors import MediaError, WeightsError

#: OpenPose-18 index -> BlazePose index (the neck, 1, is computed)
BLAZE_TO_OPENPOSE = {0: 0, 2: 12, 3: 14, 4: 16, 5: 11, 6: 13, 7: 15, 8: 24, 9: 26, 10: 28, 11: 23, 12: 25, 13: 27,
                     14: 5, 15: 2, 16: 8, 17: 7}  # fmt: skip
#: BlazePose's hips sit lower than DWPose's, whose skeletons the released model was trained on.
#: Measured on the six people of the authors' three real cases (benchmarks/realcases.py, their
#: DWPose renders of the sources and the targets): BlazePose's mid-hip lies about 4.8-7.0% of the
#: neck-to-mid-hip length further from the neck for five of them, and about 1.6% nearer for case
#: 6's target (a tight dress to mid-thigh: DWPose puts her hips lower). The hips are moved the
#: median, 5.2%, towards the neck.
HIP_TO_DWPOSE = 0.052
#: our feet order: L big toe, L small toe, L heel, R big toe, R small toe, R heel (-1: none)
BLAZE_FEET = (31, -1, 29, 32, -1, 30)


def _import() -> Any:
    os.environ.setdefault("GLOG_minloglevel", "2")  # mediapipe's C++ logging
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import mediapipe as mp
    except ImportError as exc:
        raise WeightsError(
            "the mediapipe backend needs mediapipe", hint="see docs/preprocessing.md for a slim install"
        ) from exc
    if not hasattr(mp, "solutions"):
        raise WeightsError(f"mediapipe {mp.__version__} has no bundled models", hint="use mediapipe 0.10.14")
    return mp


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """mediapipe's native code (TFLite, absl) writes log lines straight to the process's stderr
    (fd 2), from its own threads too: hide fd 2 while it runs (Python exceptions still propagate
    and are reported after)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # captured stderr without a descriptor
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(fd), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)


#: How far outside the frame (a fraction of its side) a landmark is still kept, as DWPose keeps the
#: points it places just past the border (its crops extend beyond the image): an ankle cut off by the
#: bottom edge stays in the skeleton, pointing the right way, instead of vanishing.
EDGE_MARGIN = 0.05


def blazepose_to_openpose(landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(33, 3) normalised (x, y, visibility) -> OpenPose body (18, 3) and feet (6, 3). Landmarks
    more than :data:`EDGE_MARGIN` outside the frame get score 0; the rest keep their place."""
    xy = landmarks[:, :2]
    inside = ((xy >= -EDGE_MARGIN) & (xy <= 1 + EDGE_MARGIN)).all(axis=1)
    lm = landmarks.copy()
    lm[~inside, 2] = 0.0
    body = np.zeros((18, 3))
    for op, bp in BLAZE_TO_OPENPOSE.items():
        body[op] = lm[bp]
    body[1, :2] = (lm[11, :2] + lm[12, :2]) / 2
    body[1, 2] = min(lm[11, 2], lm[12, 2])
    if body[1, 2] > 0 and body[8, 2] > 0 and body[11, 2] > 0:  # hips where DWPose puts them
        body[[8, 11], :2] += HIP_TO_DWPOSE * (body[1, :2] - (body[8, :2] + body[11, :2]) / 2)
    feet = np.array([lm[i] if i >= 0 else np.zeros(3) for i in BLAZE_FEET])
    return body, feet


def _hand(landmarks: Any) -> np.ndarray:
    if landmarks is None:
        return np.zeros((21, 3))
    return np.array([[p.x, p.y, 1.0] for p in landmarks.landmark])


def estimate_frames(
    frames: Iterator[np.ndarray], static: bool = False
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray] | None]:
    """Per RGB frame: (body (18, 3), feet (6, 3), hands (2, 21, 3)) normalised, or None."""
    mp = _import()
    with mp.solutions.holistic.Holistic(static_image_mode=static, model_complexity=1) as holistic:
        for frame in frames:
            result = holistic.process(np.ascontiguousarray(frame))
            if result.pose_landmarks is None:
                yield None
                continue
            lm = np.array([[p.x, p.y, p.visibility] for p in result.pose_landmarks.landmark])
            body, feet = blazepose_to_openpose(lm)
            yield body, feet, np.stack([_hand(result.left_hand_landmarks), _hand(result.right_hand_landmarks)])


def estimate_video(video: Path, max_gap: int = 8) -> tuple[Any, list[int]]:
    """Poses of every frame (a :class:`PoseSequence`) and the frames without a person (filled)."""
    from mfollow.io.media import media_frames, media_info

    info = media_info(video)
    n = info.frame_count
    body, feet, hands = np.zeros((n, 18, 3)), np.zeros((n, 6, 3)), np.zeros((n, 2, 21, 3))
    box = np.full((n, 4), np.nan)
    present = np.zeros(n, dtype=bool)
    with _native_stderr_silenced():
        found_all = list(estimate_frames(media_frames(video, info)))
    for f, found in enumerate(found_all):
        if found is None or found[0][:, 2].mean() < 0.3:
            continue
        present[f] = True
        body[f], feet[f], hands[f] = found
        seen = body[f][body[f][:, 2] > SEEN, :2]
        box[f] = [*seen.min(axis=0), *seen.max(axis=0)]
    if not present.any():
        raise MediaError(f"{video}: no person found in any frame")
    missing = [int(f) for f in np.flatnonzero(~present)]
    fill_gaps(present, [body, feet, hands, box], max_gap)
    return PoseSequence(info.display_width, info.display_height, body, feet, hands, box), missing


def segment_video(video: Path, threshold: float = 0.5) -> np.ndarray:
    """M_r for every frame of ``video``: (F, H, W) bool."""
    from mfollow.io.media import media_frames

    with _native_stderr_silenced():
        return np.stack(list(person_masks(media_frames(video), threshold)))


def person_masks(frames: Iterator[np.ndarray], threshold: float = 0.5) -> Iterator[np.ndarray]:
    """The person's mask per RGB frame of a video: (H, W) bool. Holistic's body segmentation, which
    follows the pose it finds (an outstretched or raised arm included; a busy background left out),
    and in a frame where it finds no body, SelfieSegmentation's (general model).

    On the authors' three real cases, against their SAM masks, IoU 0.950 (sources) and 0.925
    (targets), where SelfieSegmentation alone gave 0.934 and 0.858 (docs/benchmarks.md)."""
    mp = _import()
    selfie = None
    with contextlib.ExitStack() as stack:
        holistic = stack.enter_context(
            mp.solutions.holistic.Holistic(model_complexity=1, enable_segmentation=True, smooth_segmentation=True)
        )
        for frame in frames:
            rgb = np.ascontiguousarray(frame)
            found = holistic.process(rgb).segmentation_mask
            if found is None:  # no body found in this frame
                if selfie is None:
                    selfie = stack.enter_context(mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0))
                found = selfie.process(rgb).segmentation_mask
            yield found > threshold
