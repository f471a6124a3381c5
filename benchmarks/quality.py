"""Edit quality of the bundled demo model on held-out synthetic pairs. Prints JSON.

    python benchmarks/quality.py [--pairs 20] [--frames 16] [--steps N] [--first-seed 10000]
                                 [--configs paper,official,none,paper+nowarp,paper+camera,paper+raw,paper+truemask]
                                 [--scales 1.0]
                                 [--cfg X] [--weights DIR] [--margin PX] [--anchor median|ground]

For each pair (seeds ``first-seed`` .. ``first-seed + pairs - 1``; training draws its pairs from
hashed seeds of ``PuppetPairs(1000, ...)``, never these), the demo's preprocessing runs (ground-truth
keypoints, align, M_r from the world, M_e from the bundled SegDiT), then one edit per guidance
configuration; every result and the two trivial baselines (the source video unchanged; the target
video unchanged) are scored against the ground-truth edit: full frame, foreground (the true M_e)
and background PSNR / SSIM, and motion accuracy: ``silhouette_iou``, the pixels that differ from
the world's clean background plate against the true M_e (:mod:`mfollow.synth.silhouette`; the
ground-truth edit video's own, ``ground_truth_silhouette_iou``, is the measure's ceiling). Edits
are composited over the source (``--composite``, the default; ``--margin`` sets its band) unless
the configuration has ``+raw``. Two diagnostic extras replace a preprocessing output by the
world's ground truth, to tell where the person's figures are lost: ``+truemask`` edits with the
true M_e instead of SegDiT's, ``+truepose`` with the true edit poses instead of the aligned
target poses (``paper+truepose+truemask``: both). ``--steps`` defaults to the tiny preset's (what
``mfollow edit`` does); tables before session 11 used 20. Like ``mfollow edit``, every
configuration pastes the moved source person (``--warp-person``, the tiny preset's default since
session 15) unless it has ``+nowarp`` (the model alone; before session 15 that was the default,
and ``+warp`` asked for the paste). ``--scales`` lists guidance
scales to try with the ``paper`` preset (how the default ``--guidance-scale`` of the tiny preset
was chosen: docs/benchmarks.md). ``M_e_iou``: SegDiT's M_e against the true M_e.

``registered_means``: the same scores against the ground truth *registered* to the aligned edit
poses (:mod:`mfollow.synth.register`): the world's edit rendered again with its puppet moved by
the one per-clip offset that best fits the aligned poses — the anchor convention of the world,
which neither video shows (``placement``: that offset's length and what is left of the poses'
joint error after it, in pixels). ``+truepose`` configurations, whose poses are the world's, are
scored against the unregistered ground truth there too.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from placement import residual_error

from mfollow.edit.demo import edit_pair, prepare_pair, registered_truth, scores
from mfollow.models.loading import load_bundle
from mfollow.models.presets import TINY
from mfollow.preprocess.masks.fallbacks import iou
from mfollow.preprocess.masks.files import read_masks
from mfollow.preprocess.pose.align import AlignSettings
from mfollow.preprocess.pose.keypoints import PoseSequence
from mfollow.sampling.state import SamplingError
from mfollow.synth import Pair, PuppetPairs
from mfollow.synth.silhouette import video_silhouette_iou

EXTRAS = ("camera", "raw", "truemask", "truepose", "warp", "nowarp")
KEYS = ("psnr", "psnr_fg", "psnr_bg", "ssim", "ssim_fg", "ssim_bg", "silhouette_iou")


def extras_of(name: str) -> list[str]:
    return name.split("@")[0].split("+")[1:]


def training_seeds(count: int = 160) -> set[int]:
    """The derived seeds of the bundled model's training pairs (docs/training.md)."""
    pairs = PuppetPairs(1000, count)
    return {int(np.random.SeedSequence([pairs.seed, i]).generate_state(1)[0]) for i in range(count)}


def mean_table(table: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Per configuration, the mean over pairs of every score in :data:`KEYS`."""
    return {
        name: {k: round(float(np.mean([float(r[k]) for r in rows])), 3) for k in KEYS}
        for name, rows in table.items()
        if rows
    }


def checks(means: dict[str, dict[str, float]], failures: dict[str, list[str]]) -> dict[str, dict[str, bool | None]]:
    """Per guided configuration: does it beat the baselines (issue 16's targets: the person +3 dB
    PSNR and +0.10 SSIM over the unchanged source)?"""
    out: dict[str, dict[str, bool | None]] = {}
    src = means["source_unchanged"]
    for name, m in means.items():
        if name.split("@")[0].split("+")[0] not in ("paper", "official") or name in failures:
            continue  # a configuration that failed on some pairs is not compared
        none = "none+raw" if "raw" in extras_of(name) else "none"  # compared like with like
        out[name] = {
            "beats_source_full": m["psnr"] > src["psnr"],
            "beats_target_full": m["psnr"] > means["target_unchanged"]["psnr"],
            "beats_source_fg": m["psnr_fg"] > src["psnr_fg"],
            "beats_target_fg": m["psnr_fg"] > means["target_unchanged"]["psnr_fg"],
            "bg_over_none": None if none not in means else m["psnr_bg"] > means[none]["psnr_bg"],
            "fg_psnr_source_plus_3db": m["psnr_fg"] >= src["psnr_fg"] + 3.0,
            "fg_ssim_source_plus_0.1": m["ssim_fg"] >= src["ssim_fg"] + 0.10,
        }
    return out


def score_both(
    video: Path, truth: tuple[Path, Pair], reg_truth: tuple[Path, Pair], true_pose: bool
) -> tuple[dict[str, float], dict[str, float]]:
    """``video``'s scores against the world's ground truth and against the registered one (each a
    (folder, pair)); an edit with the world's own poses (``true_pose``) has nothing to register."""
    plain = scores(video, truth[0], pair=truth[1])
    registered_scores = plain if true_pose else scores(video, reg_truth[0], pair=reg_truth[1])
    return plain, registered_scores  # type: ignore[return-value]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=20)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--steps", type=int, default=None, help="denoising steps (default: the tiny preset's)")
    ap.add_argument("--first-seed", type=int, default=10_000)
    ap.add_argument("--configs", default="paper,official,none")
    ap.add_argument("--scales", default="", help="paper guidance scales to try (comma separated)")
    ap.add_argument("--cfg", type=float, default=None, help="CFG scale (default: the tiny preset's)")
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--margin", type=int, default=None, help="--composite-margin (default: the edit's)")
    ap.add_argument("--anchor", default=None, help="the align stage's --anchor (default: its default)")
    args = ap.parse_args()

    seeds = list(range(args.first_seed, args.first_seed + args.pairs))
    assert not set(seeds) & training_seeds(), "a benchmark seed was used in training"
    bundle, weights_id = load_bundle("tiny", args.weights)
    # a configuration: guidance preset, then extras: camera (K/V injection of --camera), raw
    # (--no-composite), truemask / truepose (the world's M_e / edit poses instead of the staged ones)
    configs: dict[str, tuple[str, float | None, list[str]]] = {}  # name -> (guidance, scale, extras)
    for c in (c for c in args.configs.split(",") if c):
        guidance, *extras = c.split("+")
        known = set(extras) <= set(EXTRAS) and len(set(extras)) == len(extras)
        if guidance not in ("paper", "official", "none") or not known or {"warp", "nowarp"} <= set(extras):
            raise SystemExit(f"--configs: {c!r} is not GUIDANCE[+EXTRA...] ({', '.join(EXTRAS)})")
        configs[c] = (guidance, None, extras)
    for s in (float(x) for x in args.scales.split(",") if x):
        configs[f"paper@{s:g}"] = ("paper", s, [])
    table: dict[str, list[dict[str, float]]] = {name: [] for name in (*configs, "source_unchanged", "target_unchanged")}
    table_reg: dict[str, list[dict[str, float]]] = {name: [] for name in table}  # against the registered truth
    placement: list[tuple[float, float, float]] = []  # per pair: offset length, joint error before, after
    ceiling: list[float] = []  # silhouette IoU of the ground-truth edit video itself
    seconds: dict[str, float] = dict.fromkeys(configs, 0.0)
    failures: dict[str, list[str]] = {}
    M_e_iou: list[float] = []  # SegDiT's M_e against the true one, per pair
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            out = Path(tmp) / str(seed)
            align = None if args.anchor is None else AlignSettings(anchor=args.anchor)
            pair, pair_dir, staged = prepare_pair(seed, args.frames, out, weights=args.weights, align=align)
            true_M_e = read_masks(pair_dir / "edit_masks", args.frames)
            M_e_iou.append(iou(read_masks(staged["edit_masks"], args.frames), true_M_e))
            ceiling.append(video_silhouette_iou(pair_dir / "edit_gt.mp4", pair))
            reg_pair, reg_dir, delta = registered_truth(pair, staged, out / "registered")
            aligned = PoseSequence.load(staged["edit_poses"])
            before, after = residual_error(pair, aligned, (0.0, 0.0)), residual_error(pair, aligned, delta)
            placement.append((float(np.hypot(*delta)), before, after))
            truth, reg_truth = (pair_dir, pair), (reg_dir, reg_pair)
            for name in ("source_unchanged", "target_unchanged"):
                video = pair_dir / f"{name.split('_')[0]}.mp4"
                for t, row in zip((table, table_reg), score_both(video, truth, reg_truth, False), strict=True):
                    t[name].append(row)
            for name, (guidance, scale, extras) in configs.items():
                t0 = time.perf_counter()
                inputs = dict(staged)
                if "truemask" in extras:
                    inputs["edit_masks"] = pair_dir / "edit_masks"
                if "truepose" in extras:
                    inputs["edit_poses"] = pair_dir / "edit_poses.json"
                try:
                    result = out / f"{name}.mp4"
                    edit_pair(
                        bundle, weights_id, pair_dir, inputs, result, camera="camera" in extras,
                        composite="raw" not in extras, composite_margin=args.margin, max_frames=args.frames,
                        warp_person="warp" in extras or (TINY.warp_person and "nowarp" not in extras),
                        guidance=guidance, guidance_scale=scale, steps=args.steps, cfg=args.cfg,
                    )  # fmt: skip
                except SamplingError as exc:  # e.g. guidance too strong: NaN/inf, reported per pair
                    failures.setdefault(name, []).append(f"seed {seed}: {exc}")
                    continue
                seconds[name] += time.perf_counter() - t0
                rows = score_both(result, truth, reg_truth, "truepose" in extras)
                for t, row in zip((table, table_reg), rows, strict=True):
                    t[name].append(row)
    means, means_reg = mean_table(table), mean_table(table_reg)
    print(
        json.dumps(
            {
                "pairs": args.pairs,
                "frames": args.frames,
                "steps": TINY.sampling_steps(args.steps),
                "cfg": TINY.cfg if args.cfg is None else args.cfg,
                "seeds": [seeds[0], seeds[-1]],
                "size": 128,
                "weights": weights_id,
                "means": means,
                "registered_means": means_reg,
                "placement": {
                    "offset_px": round(float(np.mean([p[0] for p in placement])), 3),
                    "joint_error_px": round(float(np.mean([p[1] for p in placement])), 3),
                    "registered_joint_error_px": round(float(np.mean([p[2] for p in placement])), 3),
                },
                "M_e_iou": round(float(np.mean(M_e_iou)), 3),
                "ground_truth_silhouette_iou": round(float(np.mean(ceiling)), 3),
                "targets": checks(means, failures),
                "registered_targets": checks(means_reg, failures),
                "failures": failures,
                "edit_seconds_per_pair": {k: round(v / args.pairs, 2) for k, v in seconds.items()},
                "total_seconds": round(time.perf_counter() - started, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
