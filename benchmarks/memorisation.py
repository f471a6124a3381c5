"""Does the image stage's fit carry over to puppets it never saw? Prints JSON.

    python benchmarks/memorisation.py [--weights DIR] [--train-pairs 160] [--train-frames 48]
                                      [--items 8] [--timesteps 999,600,200] [--first-seed 10000]
                                      [--draws 1]

One denoising step, exactly as the image stage trains (motion modules bypassed): the reference is
the source frame, the pose the ground-truth edit's rendered pose, z_t the edit frame's latent
noised to timestep t with fixed noise; the clean-latent estimate x0 = sqrt(abar) z_t -
sqrt(1 - abar) v_theta is decoded and scored against the edit frame on the person (the world's
M_e) and the whole frame. Two sets of ``items`` pairs (frame ``7k mod F`` of pair k):

- ``train``: pairs 0..items-1 of the training data of a run with ``--seed 0 --synth-pairs
  TRAIN_PAIRS --synth-frames TRAIN_FRAMES`` (``PuppetPairs(1000, TRAIN_PAIRS)``);
- ``held_out``: the quality benchmark's seeds (``make_pair(first_seed + k)``, 48 frames), never
  trained on.

At t = 999 (zero SNR) the estimate is the model's conditional mean given the source frame and
the pose alone. ``--task reconstruct`` makes the target the reference frame itself, with its own
pose and mask: what the network loses copying an appearance in place, against what it loses
moving it (``edit``). ``vae`` is the autoencoder's own reconstruction of the edit frames (the ceiling).
``--draws K`` averages the estimate over K noise draws (seeds 0..K-1; 1: seed 0 alone), which
tells how much the estimate depends on the noise: a model that has learnt the conditional mean
gains nothing from averaging.
A model that has learnt to move the source's appearance to the pose scores alike on both sets; one
that has memorised its training puppets scores far lower on the held-out set.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from mfollow.edit.output import decode
from mfollow.metrics.frames import frame_metrics, summarise
from mfollow.models.loading import load_bundle
from mfollow.preprocess.pose.render import render_sequence
from mfollow.synth import make_pair
from mfollow.training import data as D
from mfollow.training.loop import _video as video_tensor
from mfollow.training.objectives import alphas_cumprod

SIZE = 128
HELD_OUT_FRAMES = 48  # the held-out pairs' length, whatever the training data's


def _examples(kind: str, args: argparse.Namespace) -> dict[str, np.ndarray]:
    """(N, S, S, 3) ``reference``, its ``reference_pose``, ``target``, ``pose`` and (N, S, S)
    ``mask`` of one set."""
    rows = []
    for k in range(args.items):
        if kind == "train":
            item = D._synth_item(1000, args.train_pairs, args.train_frames, SIZE, k)
            f = (7 * k) % args.train_frames
            assert item.edit_frames is not None and item.edit_poses is not None and item.edit_masks is not None
            edit = (item.edit_frames, item.edit_poses, item.edit_masks)
            look = (item.frames, item.poses, item.masks) if args.task == "reconstruct" else edit
            rows.append((item.frames[f], item.poses[f], *(a[f] for a in look)))
        else:
            pair = make_pair(args.first_seed + k, frames=HELD_OUT_FRAMES, size=SIZE)
            f = (7 * k) % HELD_OUT_FRAMES
            clip = pair.source if args.task == "reconstruct" else pair.edit
            look = clip.render(f)
            ref_pose = list(render_sequence(pair.source.poses(), SIZE, SIZE))[f]
            pose = ref_pose if clip is pair.source else list(render_sequence(clip.poses(), SIZE, SIZE))[f]
            rows.append((pair.source.render(f).rgb, ref_pose, look.rgb, pose, look.mask))
    ref, ref_pose, tgt, pose, mask = (np.stack(c) for c in zip(*rows, strict=True))
    return {"reference": ref, "reference_pose": ref_pose, "target": tgt, "pose": pose, "mask": mask}


def _score(frames: np.ndarray, ex: dict[str, np.ndarray]) -> dict[str, float]:
    s = summarise([frame_metrics(o, t, m) for o, t, m in zip(frames, ex["target"], ex["mask"], strict=True)])
    return {"psnr": round(s["psnr"], 3), "psnr_fg": round(s["psnr_fg"], 3), "ssim_fg": round(s["ssim_fg"], 4)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", type=Path, default=None)
    ap.add_argument("--train-pairs", type=int, default=160)
    ap.add_argument("--train-frames", type=int, default=48)
    ap.add_argument("--items", type=int, default=8)
    ap.add_argument("--timesteps", default="999,600,200")
    ap.add_argument("--first-seed", type=int, default=10_000)
    ap.add_argument("--draws", type=int, default=1, help="average x0 over this many noise draws")
    ap.add_argument("--task", choices=("edit", "reconstruct"), default="edit")
    args = ap.parse_args()
    started = time.perf_counter()
    bundle, weights_id = load_bundle("tiny", args.weights)
    bundle.unet.motion_bypass = True  # the image stage's network: one frame, no motion modules
    abar = alphas_cumprod(bundle.scheduler_config)
    timesteps = [int(t) for t in args.timesteps.split(",")]
    out: dict[str, object] = {"weights": weights_id, "task": args.task, "items": args.items, "draws": args.draws}
    for kind in ("train", "held_out"):
        ex = _examples(kind, args)
        n = len(ex["target"])
        with torch.inference_mode():
            x = video_tensor(ex["target"][None], -1.0, 1.0, "cpu")[0].permute(
                1, 0, 2, 3
            )  # (1, 3, N, H, W) -> (N, 3, H, W)
            z = bundle.vae.encode(x).latent_dist.mean * bundle.latent_scale  # (N, C, h, w)
            z0 = z.permute(1, 0, 2, 3)[None]  # (N, C, h, w) -> (1, C, N, h, w)
            context = bundle.clip_context(ex["reference"])[None]  # (N, D) -> (1, N, D)
            pose = bundle.poctr(video_tensor(ex["pose"][None], 0.0, 1.0, "cpu"))
            appearance = bundle.unet.appearance_features(video_tensor(ex["reference"][None], -1.0, 1.0, "cpu"))
            scores = {"vae": _score(decode(bundle, z0), ex)}
            for t in timesteps:
                a = abar[t].float()
                x0 = torch.zeros_like(z0)
                for k in range(args.draws):
                    eps = torch.randn(z0.shape, generator=torch.Generator().manual_seed(k))
                    zt = a.sqrt() * z0 + (1 - a).sqrt() * eps
                    v = bundle.unet(zt, torch.full((1,), t), context, pose_features=pose, appearance=appearance).sample
                    x0 += (a.sqrt() * zt - (1 - a).sqrt() * v) / args.draws
                scores[f"t{t}"] = _score(decode(bundle, x0), ex)
        out[kind] = {"frames": n, **scores}
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
