"""DWPose whole-body pose estimation through ONNX Runtime (docs/method.md, §10).

Two models: the YOLOX-L person detector (``yolox_l.onnx``, input 1x3x640x640, output 1x8400x85)
and the dw-ll_ucoco_384 pose model (input 1x3x384x288, SimCC outputs 1x133x576 and 1x133x768).
The pre- and post-processing follow DWPose-for-ControlNet / Moore-AnimateAnyone:

- frames go in as BGR (as the released pose images were made), resized so the short side is the
  detect resolution (512) with both sides rounded to multiples of 64;
- detector: top-left letterbox on a 114-grey 640x640 canvas, no normalisation; YOLOX grid decode
  (strides 8, 16, 32), score = objectness x class, NMS at IoU 0.45 with the +1-pixel area rule over
  candidates above 0.1, persons kept above 0.3; nothing found -> the whole image is one box;
- pose model: box padded x1.25 and fixed to the 3:4 input aspect, affine (bilinear, black outside)
  to 288x384, ImageNet mean/std in the image's channel order; SimCC argmax / 2, score = min of the
  two maxima; back to image coordinates;
- 133 COCO-WholeBody points -> neck inserted (mean of the shoulders, score 1 if both > 0.3) ->
  OpenPose-18 body, 6 feet points, 68 face points, left and right hands.

Nothing of rtmlib is used (its differences, e.g. the neck score, do not leak in).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from mfollow.runtime.errors import MediaError, WeightsError

DETECT_RESOLUTION = 512
MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float32)
STD = np.array([58.395, 57.12, 57.375], dtype=np.float32)
COCO_TO_OPENPOSE = (0, 17, 6, 8, 10, 5, 7, 9, 12, 14, 16, 11, 13, 15, 2, 1, 4, 3)  # indices after neck insertion


@dataclass(frozen=True)
class Person:
    """One person in pixels of the analysed image: (x, y, score) rows."""

    body: np.ndarray  # (18, 3)
    feet: np.ndarray  # (6, 3)
    face: np.ndarray  # (68, 3)
    hands: np.ndarray  # (2, 21, 3) left, right
    box: np.ndarray  # (4,) x0, y0, x1, y1

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))


# ------------------------------------------------------------------------------- detector
def detect_resolution(width: int, height: int, target: int = DETECT_RESOLUTION) -> tuple[int, int]:
    """(w, h) with the short side scaled to ``target`` and both sides rounded to multiples of 64."""
    k = target / min(width, height)
    return max(64, round(width * k / 64) * 64), max(64, round(height * k / 64) * 64)


def letterbox(image: np.ndarray, size: int = 640) -> tuple[np.ndarray, float]:
    """Top-left letterbox of an (H, W, 3) uint8 image on a 114-grey square: (1, 3, S, S) float32
    and the resize ratio."""
    h, w = image.shape[:2]
    r = min(size / h, size / w)
    nw, nh = int(w * r), int(h * r)
    canvas = np.full((size, size, 3), 114, dtype=np.uint8)
    canvas[:nh, :nw] = np.asarray(Image.fromarray(image).resize((nw, nh), Image.Resampling.BILINEAR))
    return canvas.transpose(2, 0, 1)[None].astype(np.float32), r  # (S, S, 3) -> (1, 3, S, S)


def decode_yolox(
    raw: np.ndarray, ratio: float, size: int = 640, strides: tuple[int, ...] = (8, 16, 32)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """YOLOX head output (1, N, 5 + classes) -> boxes (N, 4) in original pixels, scores (N, classes)."""
    out = raw[0].astype(np.float64)
    grids, steps = [], []
    for s in strides:
        g = size // s
        ys, xs = np.mgrid[0:g, 0:g]
        grids.append(np.stack([xs.ravel(), ys.ravel()], axis=1))  # row-major, x fastest
        steps.append(np.full((g * g, 1), s))
    grid, stride = np.concatenate(grids), np.concatenate(steps)
    centre = (out[:, :2] + grid) * stride
    wh = np.exp(out[:, 2:4]) * stride
    boxes = np.concatenate([centre - wh / 2, centre + wh / 2], axis=1) / ratio
    scores = out[:, 4:5] * out[:, 5:]
    return boxes, scores, np.argmax(scores, axis=1)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.45) -> list[int]:
    """Greedy non-maximum suppression (areas with the +1-pixel convention)."""
    x0, y0, x1, y1 = boxes.T
    areas = (x1 - x0 + 1) * (y1 - y0 + 1)
    order = list(np.argsort(-scores))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(int(i))
        rest = np.array(order, dtype=np.int64)
        if rest.size == 0:
            break
        w = np.maximum(0.0, np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]) + 1)
        h = np.maximum(0.0, np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]) + 1)
        overlap = w * h / (areas[i] + areas[rest] - w * h)
        order = [int(j) for j, o in zip(rest, overlap, strict=True) if o <= iou]
    return keep


def person_boxes(raw: np.ndarray, ratio: float, width: int, height: int) -> np.ndarray:
    """Person boxes (M, 4) from the detector output; the whole image when none survives."""
    boxes, scores, classes = decode_yolox(raw, ratio)
    best = scores[np.arange(len(scores)), classes]
    keep_all: list[int] = []
    for c in np.unique(classes[best > 0.1]):  # class-aware NMS over candidates above 0.1
        idx = np.flatnonzero((classes == c) & (best > 0.1))
        keep_all += [int(idx[k]) for k in nms(boxes[idx], best[idx])]
    chosen = [k for k in keep_all if classes[k] == 0 and best[k] > 0.3]
    if not chosen:
        return np.array([[0.0, 0.0, float(width), float(height)]])
    chosen.sort(key=lambda k: -best[k])
    return boxes[chosen]


# ----------------------------------------------------------------------------- pose model
def crop_box(
    box: np.ndarray, input_w: int = 288, input_h: int = 384, padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """Centre and size of the pose model's crop: padded and fixed to the input aspect."""
    x0, y0, x1, y1 = box
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    sw, sh = (x1 - x0) * padding, (y1 - y0) * padding
    aspect = input_w / input_h
    if sw > sh * aspect:
        sh = sw / aspect
    else:
        sw = sh * aspect
    return centre, np.array([sw, sh])


def affine_crop(image: np.ndarray, centre: np.ndarray, scale: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """Bilinear crop of (H, W, 3): the box (centre, scale) mapped onto (out_h, out_w); black outside."""
    h, w = image.shape[:2]
    xs = centre[0] + (np.arange(out_w) + 0.5) / out_w * scale[0] - scale[0] / 2 - 0.5
    ys = centre[1] + (np.arange(out_h) + 0.5) / out_h * scale[1] - scale[1] / 2 - 0.5
    gx, gy = np.meshgrid(xs, ys)
    x0, y0 = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
    fx, fy = (gx - x0)[..., None], (gy - y0)[..., None]
    img = image.astype(np.float32)

    def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        ok = ((yy >= 0) & (yy < h) & (xx >= 0) & (xx < w))[..., None]
        return np.where(ok, img[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)], 0.0)

    top = at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx
    bottom = at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy


def decode_simcc(
    simcc_x: np.ndarray,
    simcc_y: np.ndarray,
    centre: np.ndarray,
    scale: np.ndarray,
    input_w: int,
    input_h: int,
    split: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """SimCC vectors (K, Wx), (K, Hy) -> keypoints (K, 2) in image pixels and scores (K,)."""
    x = np.argmax(simcc_x, axis=1) / split
    y = np.argmax(simcc_y, axis=1) / split
    score = np.minimum(simcc_x.max(axis=1), simcc_y.max(axis=1))
    crop = np.stack([x, y], axis=1)
    crop[score <= 0] = -1
    points = crop / np.array([input_w, input_h]) * scale + centre - scale / 2
    return points, score


def to_openpose(points: np.ndarray, scores: np.ndarray, box: np.ndarray) -> Person:
    """133 COCO-WholeBody points -> neck inserted, OpenPose-18 body, feet, face, hands."""
    neck = (points[5] + points[6]) / 2
    neck_score = 1.0 if scores[5] > 0.3 and scores[6] > 0.3 else 0.0
    pts = np.insert(points, 17, neck, axis=0)  # 133 -> 134 points
    sc = np.insert(scores, 17, neck_score)
    rows = np.concatenate([pts, sc[:, None]], axis=1)
    return Person(
        body=rows[list(COCO_TO_OPENPOSE)],
        feet=rows[18:24],
        face=rows[24:92],
        hands=np.stack([rows[92:113], rows[113:134]]),
        box=np.asarray(box, dtype=np.float64),
    )


class DWPose:
    """The two ONNX models on ONNX Runtime (CPU by default)."""

    def __init__(self, detector: Path, pose_model: Path, providers: list[str] | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise WeightsError("the dwpose backend needs onnxruntime", hint="pip install 'mfollow[pose]'") from exc
        try:
            self.det = ort.InferenceSession(str(detector), providers=providers or ["CPUExecutionProvider"])
            self.pose = ort.InferenceSession(str(pose_model), providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise WeightsError(f"cannot load the DWPose models ({str(exc).splitlines()[0]})") from exc
        shape = self.pose.get_inputs()[0].shape  # (1, 3, H, W): read, not assumed
        self.input_h, self.input_w = int(shape[2]), int(shape[3])
        self.det_size = int(self.det.get_inputs()[0].shape[2])

    def __call__(self, rgb: np.ndarray) -> list[Person]:
        """All persons in an (H, W, 3) uint8 RGB image, in its pixel coordinates."""
        bgr = np.ascontiguousarray(rgb[..., ::-1])  # the released poses were made from BGR
        h, w = bgr.shape[:2]
        x, ratio = letterbox(bgr, self.det_size)
        raw = self.det.run(None, {self.det.get_inputs()[0].name: x})[0]
        persons = []
        for box in person_boxes(raw, ratio, w, h):
            centre, scale = crop_box(box, self.input_w, self.input_h)
            crop = affine_crop(bgr, centre, scale, self.input_w, self.input_h)
            inp = ((crop - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32)  # (H, W, 3) -> (1, 3, H, W)
            sx, sy = self.pose.run(None, {self.pose.get_inputs()[0].name: inp})[:2]
            points, scores = decode_simcc(sx[0], sy[0], centre, scale, self.input_w, self.input_h)
            persons.append(to_openpose(points, scores, box))
        return persons


# ---------------------------------------------------------------------------------- videos
def fill_gaps(present: np.ndarray, arrays: list[np.ndarray], max_gap: int = 8) -> None:
    """In place: frames where ``present`` is False take values interpolated linearly between the
    nearest present frames when the gap is at most ``max_gap`` frames, else the previous present
    frame's; frames before the first / after the last present one hold it."""
    idx = np.flatnonzero(present)
    for f in np.flatnonzero(~present):
        before, after = idx[idx < f], idx[idx > f]
        if before.size and after.size and after[0] - before[-1] - 1 <= max_gap:
            a, b = before[-1], after[0]
            w = (f - a) / (b - a)
            for arr in arrays:
                arr[f] = (1 - w) * arr[a] + w * arr[b]
        else:
            src = before[-1] if before.size else after[0]
            for arr in arrays:
                arr[f] = arr[src]


def estimate_video(
    video: Path, model: DWPose, person: str | int = "largest", max_gap: int = 8
) -> tuple[object, list[int]]:
    """Poses of every frame of ``video`` (a :class:`PoseSequence`, normalised) and the frames where
    no person was found (filled by :func:`fill_gaps`)."""
    from mfollow.io.media import media_frames, media_info
    from mfollow.preprocess.pose.keypoints import PoseSequence

    info = media_info(video)
    w, h = detect_resolution(info.display_width, info.display_height)
    n = info.frame_count
    body, feet, hands = np.zeros((n, 18, 3)), np.zeros((n, 6, 3)), np.zeros((n, 2, 21, 3))
    face, box = np.zeros((n, 68, 3)), np.full((n, 4), np.nan)
    present = np.zeros(n, dtype=bool)
    scale = np.array([w, h, 1.0])
    for f, frame in enumerate(media_frames(video, info)):
        enlarge = w > frame.shape[1]
        resample = Image.Resampling.LANCZOS if enlarge else Image.Resampling.BOX
        persons = model(np.asarray(Image.fromarray(frame).resize((w, h), resample)))
        if person == "largest":
            chosen = max(persons, key=lambda p: p.area) if persons else None
        else:
            chosen = persons[int(person)] if int(person) < len(persons) else None
        if chosen is None or chosen.body[:, 2].mean() < 0.3:  # the detector's whole-image fallback
            continue
        present[f] = True
        body[f], feet[f], face[f] = chosen.body / scale, chosen.feet / scale, chosen.face / scale
        hands[f] = chosen.hands / scale
        box[f] = chosen.box / np.array([w, h, w, h])
    if not present.any():
        raise MediaError(f"{video}: no person found in any frame")
    missing = [int(f) for f in np.flatnonzero(~present)]
    fill_gaps(present, [body, feet, hands, face, box], max_gap)
    return PoseSequence(info.display_width, info.display_height, body, feet, hands, box, face), missing
