"""Alignment and M_e fallbacks against the synthetic world's ground truth. Prints JSON.

    python benchmarks/align.py [--pairs 20] [--frames 24] [--size 256] [--first-seed 1000] [--camera KIND]

For each pair: the target's poses aligned to the source by each method (the default following the
source camera measured on the rendered source frames, the others with a still camera) are compared
with the ground-truth edit poses (mean distance of body joints visible in both, pixels); the M_e fallbacks
(``warp`` of the target mask, ``hull`` of the aligned edit poses; ``hull`` of the ground-truth edit
poses shows the method's own ceiling) are compared with the ground-truth M_e by IoU. The joint
error is also given registered: once one scale and offset per clip are removed
(:func:`registered_joint_error`), so that the default, which keeps the target's place and size
convention, is scored on the motion it gives, not on the synthetic world's placement convention
(its ground truth anchors the edit puppet at the source and retargets it). Pairs use the
seed's camera (pan, zoom, shake or none) unless ``--camera`` is given.
"""

from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import replace

import numpy as np

from mfollow.preprocess.masks.fallbacks import hull_masks, iou, limb_widths, warp_masks
from mfollow.preprocess.pose import PUPPET_ALIGN
from mfollow.preprocess.pose.align import AlignSettings, align, joint_error, registered_joint_error
from mfollow.preprocess.pose.camera_track import estimate_track
from mfollow.synth import make_pair
from mfollow.synth.world import mask_box

PUPPETS = AlignSettings(**PUPPET_ALIGN)  # the synthetic world's convention (the tiny preset's alignment)
CONFIGS = {
    "motioneditor + retarget (skeleton, median anchor, following the camera; the tiny preset's)": PUPPETS,
    "motioneditor (skeleton, the target's place, still camera; the default, the authors' way)": AlignSettings(),
    "motioneditor + retarget (skeleton, ground anchor, following the camera)": replace(PUPPETS, anchor="ground"),
    "motioneditor (skeleton, median anchor, following the camera)": replace(PUPPETS, retarget=False),
    "motioneditor + retarget (still camera)": replace(PUPPETS, follow_camera=False),
    "motioneditor (skeleton, median anchor, still camera)": AlignSettings(
        anchor="median", follow_camera=False, retarget=False
    ),
    "motioneditor (skeleton, first-frame anchor)": AlignSettings(anchor="first", follow_camera=False, retarget=False),
    "motioneditor (box, median anchor)": AlignSettings(
        height="box", anchor="median", follow_camera=False, retarget=False
    ),
    "motioneditor (box, first-frame anchor)": AlignSettings(
        height="box", anchor="first", follow_camera=False, retarget=False
    ),
    "motioneditor (box, target's place: released script)": AlignSettings(
        height="box", anchor="target", follow_camera=False, retarget=False
    ),
    "linear": AlignSettings("linear", follow_camera=False, retarget=False),
    "none": AlignSettings("none", follow_camera=False, retarget=False),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--frames", type=int, default=24)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--camera", default=None)
    ap.add_argument("--first-seed", type=int, default=1000, help="10000: the quality benchmark's held-out pairs")
    args = ap.parse_args()
    warnings.simplefilter("ignore")  # all-NaN slices for points out of view
    errors: dict[str, list[float]] = {k: [] for k in CONFIGS}
    registered: dict[str, list[float]] = {k: [] for k in CONFIGS}
    ious: dict[str, list[float]] = {
        "warp": [],
        "hull (aligned poses)": [],
        "hull (aligned poses, not retargeted)": [],
        "hull (ground-truth poses)": [],
        "target mask as is": [],
    }
    by_camera: dict[str, dict[str, list[float]]] = {}  # the pair's camera -> method -> errors
    for seed in range(args.first_seed, args.first_seed + args.pairs):
        pair = make_pair(seed, frames=args.frames, size=args.size, camera=args.camera)

        def seq(video):  # type: ignore[no-untyped-def]
            rendered = [video.render(f) for f in range(args.frames)]
            masks = np.stack([r.mask for r in rendered])
            return video.poses(np.stack([mask_box(m) for m in masks])), masks, [r.rgb for r in rendered]

        (src, m_r, frames), (tgt, m_t, _), (gt, m_e, _) = seq(pair.source), seq(pair.target), seq(pair.edit)
        track = estimate_track(frames, src.box)  # the source camera, measured on its background
        kind = pair.source.scene.camera_kind
        for name, settings in CONFIGS.items():
            camera = track if settings.follow_camera else None
            edit = align(src, tgt, settings, camera)[0]
            errors[name].append(joint_error(edit, gt))
            registered[name].append(registered_joint_error(edit, gt))
            by_camera.setdefault(kind, {}).setdefault(name, []).append(errors[name][-1])
        aligned, t = align(src, tgt, PUPPETS, track)  # M_e estimates on the tiny preset's alignment
        widths = limb_widths(src, m_r)
        ious["warp"].append(iou(warp_masks(m_t, t, args.size, args.size), m_e))
        ious["hull (aligned poses)"].append(iou(hull_masks(aligned, widths), m_e))
        similar = align(src, tgt, replace(PUPPETS, retarget=False), track)[0]
        ious["hull (aligned poses, not retargeted)"].append(iou(hull_masks(similar, widths), m_e))
        ious["hull (ground-truth poses)"].append(iou(hull_masks(gt, widths), m_e))
        ious["target mask as is"].append(iou(m_t, m_e))
    print(json.dumps({
        "benchmark": "align", "pairs": args.pairs, "first_seed": args.first_seed, "frames": args.frames,
        "size": args.size,
        "camera": args.camera or "from each seed",
        "mean_joint_error_px": {k: round(float(np.mean(v)), 2) for k, v in errors.items()},
        "mean_registered_joint_error_px": {k: round(float(np.mean(v)), 2) for k, v in registered.items()},
        "mean_iou_with_ground_truth_M_e": {k: round(float(np.mean(v)), 3) for k, v in ious.items()},
        "mean_joint_error_px_by_camera": {
            kind: {"pairs": len(rows[name]), **{k: round(float(np.mean(rows[k])), 2) for k in list(CONFIGS)[:2]}}
            for kind, rows in sorted(by_camera.items())
            for name in [next(iter(CONFIGS))]
        },
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
