"""Synthesis speed: render and write one pair (three videos, poses, masks). Prints JSON.

python benchmarks/synth.py --frames 600 --size 256
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from mfollow.synth import make_pair
from mfollow.synth.files import write_pair


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        pair = make_pair(args.seed, frames=args.frames, size=args.size, camera="pan")
        render_only = time.perf_counter()
        for f in range(0, args.frames, max(1, args.frames // 50)):
            pair.source.render(f)
        render_sample = time.perf_counter() - render_only
        t0 = time.perf_counter()
        write_pair(pair, Path(tmp) / "pair")
        total = time.perf_counter() - start
        write = time.perf_counter() - t0
    print(
        json.dumps(
            {
                "benchmark": "synth",
                "frames_per_video": args.frames,
                "size": args.size,
                "seconds_total": round(total - render_sample, 3),
                "seconds_write_pair": round(write, 3),
                "frames_per_second": round(3 * args.frames / write, 1),
                "cpus": os.cpu_count(),
                "machine": platform.processor() or platform.machine(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
