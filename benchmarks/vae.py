"""How well the tiny preset's autoencoder reconstructs held-out puppet frames. Prints JSON.

    python benchmarks/vae.py [--pairs 4] [--frames 16] [--first-seed 10000] [--weights DIR]

Encodes (posterior mean) and decodes every frame of the source and ground-truth edit videos of
``pairs`` held-out synthetic pairs at 128x128 and reports PSNR/SSIM against the frames, on the
whole frame, the person (the world's mask) and the background: the ceiling of any edit the bundled
model makes, whose output passes through this decoder.
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
from mfollow.synth import make_pair

KEYS = ("psnr", "ssim", "psnr_fg", "ssim_fg", "psnr_bg", "ssim_bg")  # fg: the person; bg: the rest


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--first-seed", type=int, default=10_000)
    ap.add_argument("--weights", type=Path, default=None)
    args = ap.parse_args()
    bundle, weights_id = load_bundle("tiny", args.weights)
    rows = []
    started = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.pairs):
        pair = make_pair(seed, frames=args.frames, size=128)
        for role in ("source", "edit"):
            v = pair.video(role)
            rendered = [v.render(f) for f in range(args.frames)]
            video = np.stack([r.rgb for r in rendered])  # (F, H, W, 3) uint8
            x = torch.from_numpy(np.ascontiguousarray(video)).float().permute(0, 3, 1, 2) / 127.5 - 1  # (F, 3, H, W)
            with torch.inference_mode():
                z = bundle.vae.encode(x).latent_dist.mean * bundle.latent_scale  # (F, C, h, w)
                z = z.permute(1, 0, 2, 3).unsqueeze(0)  # (F, C, h, w) -> (1, C, F, h, w)
                out = decode(bundle, z)
            rows += [frame_metrics(o, f, r.mask) for o, f, r in zip(out, video, rendered, strict=True)]
    summary = summarise(rows)
    print(json.dumps({
        "weights": weights_id,
        "pairs": args.pairs,
        "frames": int(summary["frames"]),
        **{k: round(summary[k], 3 if k.startswith("psnr") else 4) for k in KEYS},
        "seconds": round(time.perf_counter() - started, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
