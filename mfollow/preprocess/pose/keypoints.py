"""The pose-sequence data model and its JSON file format (documented in ``docs/pose-format.md``).

One person per frame, in the OpenPose/DWPose layouts:

- ``body``  (F, 18, 3): OpenPose-18 order (0 nose, 1 neck, 2 R-shoulder, 3 R-elbow, 4 R-wrist,
  5 L-shoulder, 6 L-elbow, 7 L-wrist, 8 R-hip, 9 R-knee, 10 R-ankle, 11 L-hip, 12 L-knee,
  13 L-ankle, 14 R-eye, 15 L-eye, 16 R-ear, 17 L-ear);
- ``feet``  (F, 6, 3): L big toe, L small toe, L heel, R big toe, R small toe, R heel;
- ``hands`` (F, 2, 21, 3): left hand then right hand, 0 wrist, 1-4 thumb, 5-8 index, 9-12
  middle, 13-16 ring, 17-20 pinky;
- ``face``  (F, 68, 3) or ``None``: iBUG-68 order;
- ``box``   (F, 4): the person's box (x0, y0, x1, y1); NaN for a frame without a person.

The last axis is (x, y, score); x and y are normalised by the frame width and height (0..1 inside
the frame); score is in [0, 1], 0 meaning "not detected" (coordinates are then meaningless).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mfollow.io.atomic import atomic_write_text
from mfollow.runtime.errors import MediaError

FORMAT_NAME = "mfollow-poses"
FORMAT_VERSION = 1
DECIMALS = 6  # coordinates and scores are stored rounded, so files are byte-stable
SEEN = 0.3  # a point with a score at or below this is not seen (the renderer's threshold)

BODY_NAMES = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
)  # fmt: skip
FEET_NAMES = ("l_big_toe", "l_small_toe", "l_heel", "r_big_toe", "r_small_toe", "r_heel")


@dataclass(frozen=True, eq=False)
class PoseSequence:
    """Keypoints of one person over F frames of a ``width`` x ``height`` video."""

    width: int
    height: int
    body: np.ndarray  # (F, 18, 3) float64
    feet: np.ndarray  # (F, 6, 3)
    hands: np.ndarray  # (F, 2, 21, 3)
    box: np.ndarray  # (F, 4)
    face: np.ndarray | None = None  # (F, 68, 3)

    def __post_init__(self) -> None:
        f = self.body.shape[0]
        shapes = {"body": (f, 18, 3), "feet": (f, 6, 3), "hands": (f, 2, 21, 3), "box": (f, 4)}
        if self.face is not None:
            shapes["face"] = (f, 68, 3)
        for name, shape in shapes.items():
            if getattr(self, name).shape != shape:
                raise ValueError(f"{name} has shape {getattr(self, name).shape}, expected {shape}")

    def __len__(self) -> int:
        return int(self.body.shape[0])

    def __getitem__(self, frames: slice) -> PoseSequence:
        """The sub-sequence of the frames in ``frames`` (a slice)."""
        return self.map_points(lambda a: a[frames], box=self.box[frames])

    def map_points(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        width: int | None = None,
        height: int | None = None,
        box: np.ndarray | None = None,
    ) -> PoseSequence:
        """The same person with ``fn`` applied to every keypoint group's (F, ..., 3) array (body,
        feet, hands, face), in a ``width`` x ``height`` frame (default: this one) with ``box``
        (default: this box)."""
        return PoseSequence(
            self.width if width is None else width, self.height if height is None else height,
            fn(self.body), fn(self.feet), fn(self.hands), self.box if box is None else box,
            None if self.face is None else fn(self.face),
        )  # fmt: skip

    def pixels(self, part: str = "body") -> np.ndarray:
        """(F, N, 2) pixel coordinates of a part (``body``, ``feet``, ``hands``, ``face``)."""
        arr = getattr(self, part)
        return arr[..., :2] * np.array([self.width, self.height], dtype=np.float64)

    def seen(self, part: str = "body") -> np.ndarray:
        """(F, N) bool: the points of a part whose score is above :data:`SEEN`."""
        return getattr(self, part)[..., 2] > SEEN

    # -------------------------------------------------------------------------- JSON format
    def to_json(self) -> dict[str, Any]:
        frames = []
        for i in range(len(self)):
            frames.append(
                {
                    "body": _points(self.body[i]),
                    "feet": _points(self.feet[i]),
                    "hands": {"left": _points(self.hands[i, 0]), "right": _points(self.hands[i, 1])},
                    "face": None if self.face is None else _points(self.face[i]),
                    "box": None if np.isnan(self.box[i]).any() else [_r(v) for v in self.box[i]],
                }
            )
        return {
            "format": FORMAT_NAME,
            "version": FORMAT_VERSION,
            "width": self.width,
            "height": self.height,
            "frames": frames,
        }

    @classmethod
    def from_json(cls, doc: Any, source: str = "<json>") -> PoseSequence:
        """Parse a document made by :meth:`to_json`; raises :class:`MediaError` if malformed."""
        try:
            if doc.get("format") != FORMAT_NAME or doc.get("version") != FORMAT_VERSION:
                raise ValueError(f"not a {FORMAT_NAME} v{FORMAT_VERSION} document")
            frames = doc["frames"]
            if not frames:
                raise ValueError("no frames")
            has_face = frames[0].get("face") is not None
            body = np.array([fr["body"] for fr in frames], dtype=np.float64)
            feet = np.array([fr["feet"] for fr in frames], dtype=np.float64)
            hands = np.array([[fr["hands"]["left"], fr["hands"]["right"]] for fr in frames], dtype=np.float64)
            box = np.array([fr["box"] if fr["box"] is not None else [np.nan] * 4 for fr in frames], dtype=np.float64)
            face = np.array([fr["face"] for fr in frames], dtype=np.float64) if has_face else None
            return cls(int(doc["width"]), int(doc["height"]), body, feet, hands, box, face)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise MediaError(f"{source}: not a valid pose file ({exc})") from exc

    def save(self, path: Path | str) -> None:
        """Write the JSON file atomically (compact rows: one frame per line)."""
        doc = self.to_json()
        frames = doc.pop("frames")
        head = json.dumps(doc, sort_keys=True)[:-1]
        rows = ",\n".join(json.dumps(fr, sort_keys=True, separators=(",", ":")) for fr in frames)
        atomic_write_text(path, f'{head}, "frames": [\n{rows}\n]}}\n')

    @classmethod
    def load(cls, path: Path | str) -> PoseSequence:
        path = Path(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise MediaError(f"{path}: no such pose file") from exc
        except (OSError, ValueError) as exc:
            raise MediaError(f"{path}: not a valid pose file ({exc})") from exc
        return cls.from_json(doc, str(path))


def mid_hip(xy: np.ndarray, seen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mid-hip, the midpoint of the hips (body points 8 and 11): (F, 2) points from (F, 18, 2)
    body points, and (F,) whether both hips are seen, from their (F, 18) visibility."""
    return (xy[:, 8] + xy[:, 11]) / 2, seen[:, 8] & seen[:, 11]


def _r(v: float) -> float:
    out = round(float(v), DECIMALS)
    return 0.0 if out == 0 else out  # no "-0.0" in files


def _points(arr: np.ndarray) -> list[list[float]]:
    return [[_r(x), _r(y), _r(s)] for x, y, s in arr]
