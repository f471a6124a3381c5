"""`mfollow long` in one process and under torchrun: wall time, sampling time, traffic. Prints JSON.

    python benchmarks/distributed.py                          # 1 vs 2 processes, CPU
    python benchmarks/distributed.py --ranks 1 2 --frames 56 --steps 4 --device cpu

A synthetic puppet pair (seed 6) edited by the bundled tiny model at 128 px with `paper` guidance,
in windows of ``--window`` frames overlapping by ``--overlap`` (the defaults give 7 windows), with
``OMP_NUM_THREADS=1`` in every process (torchrun's default for several workers; the one-process
run gets the same so that the two compute the same bits and compare like for like). For each
layout: the command's wall time (start-up, model loads and the write included), rank 0's
``sample`` time from the report, whether the decoded frames equal the one-process run's, and the
bytes rank 0 sent per step for the blend (the seams' contributions) and gathered in all (the
checkpoint after every step and the final state).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--frames", type=int, default=56)
    ap.add_argument("--window", type=int, default=12)
    ap.add_argument("--overlap", type=int, default=4)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mfollow-distributed-") as folder:
        print(json.dumps(_measure(Path(folder), args), indent=2))


def _measure(tmp: Path, args: argparse.Namespace) -> dict[str, object]:
    import numpy as np

    from mfollow.io.video import read_frames
    from mfollow.sampling.windows import layout
    from mfollow.synth import make_pair
    from mfollow.synth.files import write_pair

    pair = tmp / "pair"
    write_pair(make_pair(6, frames=args.frames, size=128, camera="pan"), pair)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")} | {"OMP_NUM_THREADS": "1"}
    common = [
        str(pair / "source.mp4"), str(pair / "target.mp4"),
        "--source-poses", str(pair / "source_poses.json"), "--edit-poses", str(pair / "edit_poses.json"),
        "--source-masks", str(pair / "source_masks"), "--edit-masks", str(pair / "edit_masks"),
        "--steps", str(args.steps), "--window", str(args.window), "--overlap", str(args.overlap),
        "--device", args.device, "--json", "-q",
    ]  # fmt: skip
    runs: dict[str, dict[str, object]] = {}
    first = None
    for n in args.ranks:
        out = tmp / f"out-{n}.mp4"
        launcher = [sys.executable, "-m", "mfollow"]
        if n > 1:
            launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(n)]
            launcher += ["-m", "mfollow"]
        cmd = [*launcher, "long", *common, "-o", str(out), "-p", str(tmp / f"proj-{n}")]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            raise SystemExit(f"{n} process(es) failed: {r.stderr[-2000:]}")
        doc = json.loads(r.stdout)
        frames = read_frames(out)
        first = frames if first is None else first
        exchange = doc.get("exchange") or {}
        runs[str(n)] = {
            "wall_s": round(wall, 2),
            "sample_s": doc["timings"]["sample"],
            "identical_to_first": bool(np.array_equal(first, frames)),
            "blend_bytes_sent_per_step": round(exchange.get("bytes_sent", 0) / args.steps),
            "bytes_gathered": exchange.get("bytes_gathered", 0),
        }
    base = runs[str(args.ranks[0])]
    for r_ in runs.values():
        r_["wall_ratio"] = round(float(r_["wall_s"]) / float(base["wall_s"]), 3)  # type: ignore[arg-type]
        r_["sample_ratio"] = round(float(r_["sample_s"]) / float(base["sample_s"]), 3)  # type: ignore[arg-type]
    return {
        "frames": args.frames,
        "windows": len(layout(args.frames, args.window, args.overlap)),
        "window": args.window,
        "overlap": args.overlap,
        "steps": args.steps,
        "size": 128,
        "device": args.device,
        "omp_num_threads": 1,
        "cpu_count": os.cpu_count(),
        "runs": runs,
    }


if __name__ == "__main__":
    main()
