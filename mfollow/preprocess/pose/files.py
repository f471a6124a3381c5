"""Poses from files the user brings (the ``file`` backend): our JSON, or OpenPose's per-frame JSON.

OpenPose writes one ``*_keypoints.json`` per frame with, per person, ``pose_keypoints_2d`` (BODY_25
or COCO-18, pixels), ``hand_left_keypoints_2d`` / ``hand_right_keypoints_2d`` (21 points) and
``face_keypoints_2d`` (70 points: the iBUG 68 plus two pupils). They are mapped to our layout
(:mod:`mfollow.preprocess.pose.keypoints`) and normalised by the video's frame size; one person per frame is
kept (``person="largest"`` by box area, or an index).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from mfollow.preprocess.pose.keypoints import PoseSequence
from mfollow.runtime.errors import MediaError

BODY25_TO_18 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
BODY25_FEET = (19, 20, 21, 22, 23, 24)  # L big toe, L small toe, L heel, R big toe, R small toe, R heel


def _points(flat: list[float] | None, n: int) -> np.ndarray:
    if not flat:
        return np.zeros((n, 3))
    arr = np.asarray(flat, dtype=np.float64).reshape(-1, 3)
    if len(arr) < n:
        raise ValueError(f"{len(arr)} points where {n} were expected")
    return arr[:n]


def _person(p: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    raw = np.asarray(p.get("pose_keypoints_2d") or [], dtype=np.float64).reshape(-1, 3)
    if len(raw) == 25:
        body, feet = raw[list(BODY25_TO_18)], raw[list(BODY25_FEET)]
    elif len(raw) == 18:
        body, feet = raw, np.zeros((6, 3))
    else:
        raise ValueError(f"{len(raw)} body points (expected BODY_25 or COCO-18)")
    hands = np.stack([_points(p.get("hand_left_keypoints_2d"), 21), _points(p.get("hand_right_keypoints_2d"), 21)])
    face = _points(p.get("face_keypoints_2d"), 68) if p.get("face_keypoints_2d") else None
    return body, feet, hands, face


def _box(points: np.ndarray) -> tuple[float, float, float, float] | None:
    seen = points[points[:, 2] > 0]
    if len(seen) == 0:
        return None
    return (seen[:, 0].min(), seen[:, 1].min(), seen[:, 0].max(), seen[:, 1].max())


def read_openpose(folder: Path, width: int, height: int, person: str | int = "largest") -> PoseSequence:
    """An OpenPose output folder (one JSON per frame, in frame order) as a :class:`PoseSequence`."""
    from mfollow.io.folders import frame_files

    files = frame_files(folder, (".json",), "OpenPose JSON files")
    body, feet, hands, faces, boxes = [], [], [], [], []
    for f in files:
        try:
            people = json.loads(f.read_text()).get("people", [])
            parsed = [_person(p) for p in people]
        except (OSError, ValueError, AttributeError) as exc:
            raise MediaError(f"{f}: not an OpenPose keypoint file ({exc})") from exc
        if not parsed:  # no person in this frame: score 0 everywhere
            parsed_one = (np.zeros((18, 3)), np.zeros((6, 3)), np.zeros((2, 21, 3)), None)
            box = None
        else:
            areas = []
            for b, *_ in parsed:
                bx = _box(b)
                areas.append(0.0 if bx is None else (bx[2] - bx[0]) * (bx[3] - bx[1]))
            k = int(np.argmax(areas)) if person == "largest" else int(person)
            if not 0 <= k < len(parsed):
                raise MediaError(f"{f}: no person {k} (the frame shows {len(parsed)})")
            parsed_one = parsed[k]
            box = _box(np.concatenate([parsed_one[0], parsed_one[1]]))
        b, ft, h, fc = parsed_one
        body.append(b)
        feet.append(ft)
        hands.append(h)
        faces.append(fc)
        boxes.append([np.nan] * 4 if box is None else list(box))
    scale = np.array([width, height, 1.0])

    def norm(arr: list[np.ndarray]) -> np.ndarray:
        return np.stack(arr) / scale

    has_face = all(f is not None for f in faces)
    face = norm(faces) if has_face else None  # type: ignore[arg-type]
    box_arr = np.asarray(boxes) / np.array([width, height, width, height])
    return PoseSequence(width, height, norm(body), norm(feet), norm(hands), box_arr, face)


def read_keypoints(path: Path, width: int, height: int, person: str | int = "largest") -> PoseSequence:
    """Our JSON file or an OpenPose folder; our JSON's frame size must match the video's aspect."""
    if path.is_dir():
        return read_openpose(path, width, height, person)
    poses = PoseSequence.load(path)
    if poses.width * height != poses.height * width:
        raise MediaError(f"{path}: poses for {poses.width}x{poses.height}, the video is {width}x{height}")
    return replace(poses, width=width, height=height)
