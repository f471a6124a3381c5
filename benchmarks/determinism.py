"""Is an edit reproducible run to run on this device, and does an interrupted one resume exactly?
Prints JSON.

    python benchmarks/determinism.py                 # cuda when present, else cpu
    python benchmarks/determinism.py --device cpu

A 3-step ``paper`` edit (CFG 2) of a 12-frame 64x64 synthetic pair in windows of 8 (overlap 3),
tiny preset with random weights: run twice, and once interrupted after step 2 and resumed from
its checkpoint; the largest and mean per-pixel differences (0-255) from the first run. Two
trials: ``pytorch_defaults`` (the edit without :func:`mfollow.runtime.determinism.deterministic_kernels`)
and ``mfollow`` (``run_edit`` as the commands call it). Warnings PyTorch raised about operations
without a deterministic implementation are listed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import warnings
from pathlib import Path


def main() -> None:
    import torch

    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mfollow-determinism-") as folder:
        print(json.dumps(_measure(Path(folder), args.device), indent=2))


def _measure(tmp: Path, device: str) -> dict[str, object]:
    """The two trials in ``tmp``; the JSON report."""
    import numpy as np
    import torch

    from mfollow.edit import run as editing
    from mfollow.edit.inputs import EditInputs
    from mfollow.edit.resume import StateStore
    from mfollow.edit.settings import EditSettings
    from mfollow.io.video import read_frames
    from mfollow.models.bundle import ModelBundle
    from mfollow.sampling.state import SamplerSettings
    from mfollow.synth import make_pair
    from mfollow.synth.files import write_pair

    p = tmp / "pair"
    write_pair(make_pair(2, frames=12, size=64, camera="pan"), p)
    inputs = EditInputs(
        p / "source.mp4", p / "source_poses.json", p / "edit_poses.json", p / "source_masks", p / "edit_masks"
    )
    sampler = SamplerSettings(steps=3, cfg=2.0, guidance="paper", guidance_scale=1.0, window=8, overlap=3)
    s = EditSettings(sampler=sampler, short_side=64, device=device)
    bundle = ModelBundle.random("tiny", seed=0).eval()

    def defaults(out: Path, store: StateStore | None = None, progress=None) -> None:  # type: ignore[no-untyped-def]
        editing.run_edit(bundle, inputs, s, out, store=store, progress=progress, deterministic=False)

    def mfollow(out: Path, store: StateStore | None = None, progress=None) -> None:  # type: ignore[no-untyped-def]
        editing.run_edit(bundle, inputs, s, out, store=store, progress=progress)

    def frames(path: Path) -> np.ndarray:
        return np.stack(list(read_frames(path))).astype(np.int16)

    def stop(event: dict) -> None:
        if event["step"] == 2:
            raise KeyboardInterrupt

    report: dict[str, object] = {"benchmark": "determinism", "device": device}
    if device.startswith("cuda"):
        report["device"] = f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name, edit in (("pytorch_defaults", defaults), ("mfollow", mfollow)):
            edit(tmp / f"{name}-a.mp4")
            edit(tmp / f"{name}-b.mp4")
            store = StateStore(tmp / f"{name}.safetensors", name)
            with contextlib.suppress(KeyboardInterrupt):
                edit(tmp / f"{name}-r.mp4", store, stop)
            edit(tmp / f"{name}-r.mp4", store)
            a = frames(tmp / f"{name}-a.mp4")
            rerun, resumed = np.abs(a - frames(tmp / f"{name}-b.mp4")), np.abs(a - frames(tmp / f"{name}-r.mp4"))
            report[name] = {
                "rerun_max": int(rerun.max()), "rerun_mean": round(float(rerun.mean()), 4),
                "resumed_max": int(resumed.max()), "resumed_mean": round(float(resumed.mean()), 4),
            }  # fmt: skip
    flagged = {str(w.message).split(".")[0] for w in caught if "determinis" in str(w.message)}
    report["nondeterministic_ops"] = sorted(flagged)
    return report


if __name__ == "__main__":
    main()
