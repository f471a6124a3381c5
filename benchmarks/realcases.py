"""mfollow's preprocessing on the authors' released example cases, against theirs. Prints JSON.

    python benchmarks/realcases.py CASE_DIR [CASE_DIR ...] [--align default|puppet]

Each CASE_DIR is a case in the authors' layout (``source_images/``, ``source_poses/``,
``target_images/``, ``target_aligned_poses/``, ``source_masks/``, ``predicted_masks/``; 512² frames).
The cases have no licence: they are read from where they lie and nothing of them is written into
the repository. mfollow's preprocessing runs as ``mfollow edit`` runs it (mediapipe poses of both
clips, the align stage, M_r from mediapipe's segmentation, M_e from the mask stage's ``auto``) in a
temporary project, then:

- ``joint_error_px``: the mean distance of the aligned edit poses' body joints from the authors'
  aligned poses, over the joints both show. Their joints are decoded from their renders (OpenPose
  colours with red and blue swapped): the crisp target render's joints moved by the per-frame
  similarity that takes them onto the aligned render (:func:`their_aligned`);
  ``joint_error_direct_px`` against the aligned renders decoded directly (noisier);
  ``pose_floor_px``: mediapipe's target poses moved by the authors' own per-frame transform, against
  the same (what mediapipe's joints differ from DWPose's: no alignment can do better);
  ``unaligned_error_px`` the authors' target poses not aligned;
- ``M_r_iou`` against their SAM masks, ``M_e_iou`` and ``M_e_area_ratio`` against their M_e;
  ``M_e_hull_iou`` for the ``hull`` fallback (the aligned poses drawn with M_r's limb widths);
- ``hip_offset_px``: mediapipe's hips against DWPose's (decoded from ``source_poses``): ``bias``,
  the length of each hip's mean offset over the clip, averaged over the two hips (what the issue
  measured: "11-12 px lower in every case"); ``distance``, the mean per-frame distance (the bias
  and the two estimators' frame-to-frame disagreement); ``dx``/``dy`` (positive: mediapipe's
  right / lower).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image

from mfollow.edit.prepare import StagePlan, prepare_stages
from mfollow.io.folders import frame_files
from mfollow.preprocess.masks.fallbacks import hull_masks, iou, limb_widths
from mfollow.preprocess.masks.files import read_masks
from mfollow.preprocess.pose import PUPPET_ALIGN
from mfollow.preprocess.pose.align import AlignSettings, fit_scale
from mfollow.preprocess.pose.keypoints import PoseSequence
from mfollow.preprocess.stages import align_stage

# OpenPose body colours (R, G, B) by joint, as the renderers draw them (docs/method.md, §10)
BODY_COLOURS = [(255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0), (0, 255, 0),
                (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255), (0, 0, 255), (85, 0, 255),
                (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85)]  # fmt: skip
HIPS = (8, 11)  # right and left hip
#: The hands' 21 dots are drawn in this joint's colour (the left knee's, red and blue swapped): a
#: blob of it counts as the knee only when no other blob of that colour lies near it.
HAND_DOT_JOINT = 12
#: the joints the per-frame similarity of their alignment is fitted on (not the wrists, 4 and 7,
#: which the hands' drawings cover, nor the knee that shares the hand dots' colour)
FIT_JOINTS = [0, 1, 2, 3, 5, 6, 8, 9, 11, 14, 15, 16, 17]


def decode_render(path: Path, tolerance: int) -> np.ndarray:
    """(18, 2) body joints (pixels; NaN where not drawn) of an OpenPose render whose red and blue are
    swapped, from the full-colour joint circles (limbs are drawn at 0.6 of the colour). Hand dots
    share one joint's colour (and resized renders blend colours at edges): where a colour has
    several blobs, the joint is the blob with the fewest same-colour blobs around it (hand dots come
    21 to a hand), then the one whose area is nearest the other joints' circles; the left knee, whose
    colour the hand dots share, only where it stands alone (a knee out of the frame is not drawn,
    and a hand dot is not a knee)."""
    from scipy import ndimage

    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    out = np.full((18, 2), np.nan)
    candidates: dict[int, list[tuple[np.ndarray, int]]] = {}
    for k, (r, g, b) in enumerate(BODY_COLOURS):
        near = (np.abs(image - np.array([b, g, r])) <= tolerance).all(axis=-1)  # swapped: (B, G, R)
        labels, n = ndimage.label(near)
        blobs = []
        for i in range(1, n + 1):
            ys, xs = np.nonzero(labels == i)
            if len(xs) >= 12:
                blobs.append((np.array([xs.mean() + 0.5, ys.mean() + 0.5]), len(xs)))
        candidates[k] = blobs
    single = [blobs[0][1] for blobs in candidates.values() if len(blobs) == 1]
    circle = float(np.median(single)) if single else 49.0
    for k, blobs in candidates.items():

        def score(blob: tuple[np.ndarray, int], blobs: list = blobs) -> tuple[int, float]:
            crowd = sum(np.linalg.norm(o[0] - blob[0]) < 60 for o in blobs) - 1
            return crowd, abs(blob[1] - circle)

        if not blobs:
            continue
        best = min(blobs, key=score)
        if k == HAND_DOT_JOINT and score(best)[0] > 0:  # only hand dots drawn: the knee is not
            continue
        out[k] = best[0]
    return out


def decode_folder(folder: Path, tolerance: int) -> np.ndarray:
    """(F, 18, 2) joints of every render in a folder (natural frame order)."""
    return np.stack([decode_render(p, tolerance) for p in frame_files(folder)])


def fit_similarity(p: np.ndarray, q: np.ndarray) -> tuple[float, np.ndarray, float] | None:
    """The scale s and offset o with q ~ o + s p, fitted on the (N, 2) point pairs both show,
    dropping outliers (a joint decoded at a hand dot) over three rounds: (s, o, median residual in
    px), or None with fewer than 4 pairs."""
    idx = np.flatnonzero(np.isfinite(p).all(-1) & np.isfinite(q).all(-1))
    fit = None
    for _ in range(3):
        if len(idx) < 4:
            return fit
        s, pm, qm = fit_scale(p[idx], q[idx])
        o = qm - s * pm
        r = np.linalg.norm(q[idx] - (o + s * p[idx]), axis=-1)
        fit = (s, o, float(np.median(r)))
        idx = idx[r < max(2.0, 3 * np.median(r))]
    return fit


def their_aligned(
    case: Path, target: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[tuple[float, np.ndarray, float] | None]]:
    """The authors' aligned body joints (F, 18, 2): per frame, the similarity (scale, offset) that
    takes their crisp target render's joints onto their aligned render's (fitted on the joints
    drawn in a colour of their own, not the wrists' nor the hand dots'; it fits to 0.1-0.3 px on
    the three cases: their alignment is one similarity a frame) applied to the target render's
    joints, where the aligned render draws the joint. Frames without a fit keep the direct decode.
    Also returns that direct decode (the aligned renders are resampled, and the hands' drawings
    cover the wrists, so it is off by a few px: docs/benchmarks.md) and the per-frame fits.
    ``target``: their target render's joints (:func:`decode_folder` of ``target_poses``)."""
    direct = decode_folder(case / "target_aligned_poses", tolerance=40)
    out, fits = direct.copy(), []
    for f in range(min(len(target), len(direct))):
        fit = fit_similarity(target[f, FIT_JOINTS], direct[f, FIT_JOINTS])
        fits.append(fit if fit is not None and fit[2] < 1.0 else None)
        if fits[-1] is not None:
            drawn = np.isfinite(direct[f]).all(-1)
            out[f, drawn] = fit[1] + fit[0] * target[f, drawn]
    return out, direct, fits


def body_pixels(poses: PoseSequence) -> np.ndarray:
    """(F, 18, 2) body joints in pixels, NaN where not seen."""
    xy = poses.pixels("body").astype(float)
    xy[~poses.seen("body")] = np.nan
    return xy


def joint_error(a: np.ndarray, b: np.ndarray) -> float:
    d = np.linalg.norm(a - b, axis=-1)
    return float(np.nanmean(d))


def hip_offset(ours: np.ndarray, theirs: np.ndarray) -> dict[str, float]:
    """Our hips against DWPose's, (F, 18, 2) each: see the module's ``hip_offset_px``."""
    hips = ours[:, list(HIPS)] - theirs[:, list(HIPS)]  # (F, 2, 2): frame, hip, xy
    bias = np.linalg.norm(np.nanmean(hips, axis=0), axis=-1)  # (2,): each hip's mean offset's length
    return {"bias": round(float(bias.mean()), 2),
            "distance": round(float(np.nanmean(np.linalg.norm(hips, axis=-1))), 2),
            "dy": round(float(np.nanmean(hips[..., 1])), 2),
            "dx": round(float(np.nanmean(hips[..., 0])), 2)}  # fmt: skip


def measure(case: Path, work: Path, align: AlignSettings | None) -> dict[str, object]:
    project = work / case.name
    staged, report = prepare_stages(project, case / "source_images", case / "target_images",
                                    StagePlan(pose_backend="mediapipe"))  # fmt: skip
    if align is not None:  # another alignment, then the mask stage again on it
        align_stage(project, align, force=True)
        staged, report = prepare_stages(project, case / "source_images", case / "target_images",
                                        StagePlan(pose_backend="mediapipe"))  # fmt: skip
    edit_poses, source_poses = PoseSequence.load(staged["edit_poses"]), PoseSequence.load(staged["source_poses"])
    edit, source = body_pixels(edit_poses), body_pixels(source_poses)
    theirs_target = decode_folder(case / "target_poses", tolerance=0)
    theirs_aligned, direct, fits = their_aligned(case, theirs_target)
    theirs_source = decode_folder(case / "source_poses", tolerance=0)
    n = min(len(edit), len(theirs_aligned))
    out: dict[str, object] = {"case": case.name, "frames": n, "stages": report["stages"]}
    out["joint_error_px"] = round(joint_error(edit[:n], theirs_aligned[:n]), 2)
    out["joint_error_direct_px"] = round(joint_error(edit[:n], direct[:n]), 2)
    target = body_pixels(PoseSequence.load(next((project / "pose-target").glob("*/poses.json"))))
    moved = np.stack([fit[1] + fit[0] * target[f] if fit else np.full_like(target[f], np.nan)
                      for f, fit in enumerate(fits[:n])])  # fmt: skip
    out["pose_floor_px"] = round(joint_error(moved, theirs_aligned[:n]), 2)
    out["unaligned_error_px"] = round(joint_error(theirs_target[:n], theirs_aligned[:n]), 2)
    out["hip_offset_px"] = hip_offset(source[:n], theirs_source[:n])
    out["target_hip_offset_px"] = hip_offset(target[:n], theirs_target[:n])
    m_r, m_e = read_masks(staged["source_masks"]), read_masks(staged["edit_masks"])
    sam, pred = read_masks(case / "source_masks"), read_masks(case / "predicted_masks")
    k = min(len(m_r), len(sam), len(m_e), len(pred))
    out["M_r_iou"] = round(iou(m_r[:k], sam[:k]), 3)
    out["M_e_iou"] = round(iou(m_e[:k], pred[:k]), 3)
    out["M_e_area_ratio"] = round(float(m_e[:k].sum() / max(1, pred[:k].sum())), 3)
    hull = hull_masks(edit_poses, limb_widths(source_poses, m_r))
    out["M_e_hull_iou"] = round(iou(hull[:k], pred[:k]), 3)  # the fallback where no target mask is made
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("cases", type=Path, nargs="+")
    ap.add_argument("--align", default="default", choices=("default", "puppet"),
                    help="puppet: the synthetic world's alignment (the tiny preset's: median anchor, "
                         "retargeted, following the camera)")  # fmt: skip
    args = ap.parse_args()
    align = AlignSettings(**PUPPET_ALIGN) if args.align == "puppet" else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in args.cases:
            rows.append(measure(case, Path(tmp), align))
            print(json.dumps(rows[-1]), file=sys.stderr)
    keys = (
        "joint_error_px",
        "joint_error_direct_px",
        "pose_floor_px",
        "unaligned_error_px",
        "M_r_iou",
        "M_e_iou",
        "M_e_area_ratio",
        "M_e_hull_iou",
    )
    mean = {k: round(float(np.mean([r[k] for r in rows])), 3) for k in keys}  # type: ignore[misc]
    mean["hip_bias_px"] = round(float(np.mean([r["hip_offset_px"]["bias"] for r in rows])), 2)  # type: ignore[index]
    mean["hip_distance_px"] = round(float(np.mean([r["hip_offset_px"]["distance"] for r in rows])), 2)  # type: ignore[index]
    mean["target_hip_bias_px"] = round(float(np.mean([r["target_hip_offset_px"]["bias"] for r in rows])), 2)  # type: ignore[index]
    mean["hip_dy_px"] = round(float(np.mean([r["hip_offset_px"]["dy"] for r in rows])), 2)  # type: ignore[index]
    report = {"benchmark": "realcases", "align": asdict(align or AlignSettings()), "cases": rows, "mean": mean}
    print(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
