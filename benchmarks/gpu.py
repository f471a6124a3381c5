"""The full-size edit's cost and precision: the sd15 preset on random weights at the paper's sizes
on a GPU, and the ratios that need none on the CPU. Prints JSON. Each case runs in a fresh process.

    python benchmarks/gpu.py --device cuda        # the GPU set (one H100: under 8 minutes)
    python benchmarks/gpu.py                      # the CPU set (small sizes)
    python benchmarks/gpu.py --case cpu-tiny-edit # one case (or several, comma-separated)

GPU cases (``--device cuda``; ``auto`` is ``--dtype auto``, bfloat16 where the card has it):

- ``w24-512-auto``: one 24-frame 512² window at the sd15 default of 25 guided steps (CFG 3.5):
  seconds per step and per window, peak CUDA memory allocated and reserved, run as the memory
  planner chooses for the card's free memory (its choices and estimate in ``plan``);
- ``w24-512-auto-12GiB``: the same, 3 steps, planned for 12 GiB (``--max-memory 12GiB``: a 12 GB card);
- ``w24-512-float32``: the same window in float32, 3 steps (seconds per step, peaks);
- ``w8-512-auto`` / ``w8-512-float32``: 8 frames (the paper's 9.8 GB row), 3 steps;
- ``largest-auto``: one guided step at 32, 40, 48, 56, 64 frames until one does not fit;
- ``long-600-auto``: ``run_edit`` of a 600-frame clip at 512², 2 steps, windows of 24 (overlap 8),
  from a still source with poses and masks on disk: whole-run peak (flat in the length?).
- ``w24-512-auto-compile`` (only when named: its compiling may take minutes): the 24-frame
  window's U-Net through ``torch.compile``, 4 steps; ``first_step_seconds`` includes the compiling,
  ``seconds_per_step`` is the median (``compiled vs eager`` against ``w24-512-auto``). On the
  2-core CPU the compiling of the tiny U-Net's guided passes alone (12 frames at 256²) did not end
  within 15 minutes, against 12 s for 4 eager steps: no option for it until a GPU measures a win.

CPU cases (the ratios): ``cpu-sd15-{float32,bfloat16}`` (sd15, 8 frames at 128², 2 guided steps:
seconds per step, peak RSS growth, the final latents' difference and the losses step by step);
``cpu-tiny-{float32,bfloat16}`` (tiny, 24 frames at 256², 2 steps); ``cpu-{sd15,tiny}-float32-lean``
(the leanest way: checkpointing, passes one by one; against the planner's choice for the machine's
free memory, ``planned vs lean``); ``cpu-tiny-edit`` (the bundled
tiny model's edit of a synthetic pair in float32 and bfloat16 through ``run_edit``: the largest and
mean pixel difference of the frames, and the ground-truth silhouette-free PSNR of each against the
pair's true edit).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

CFG = 3.5
DEVICE = os.environ.get("MFOLLOW_BENCH_DEVICE", "cpu")
GPU_CASES = ("w24-512-auto", "w24-512-auto-12GiB", "w24-512-float32", "w8-512-auto", "w8-512-float32", "largest-auto",
             "long-600-auto")  # fmt: skip
CPU_CASES = ("cpu-sd15-float32", "cpu-sd15-bfloat16", "cpu-sd15-float32-lean", "cpu-tiny-float32", "cpu-tiny-bfloat16",
             "cpu-tiny-float32-lean", "cpu-tiny-edit")  # fmt: skip


def _peak() -> dict[str, float]:
    if DEVICE.startswith("cuda"):
        import torch

        return {"peak_allocated_GiB": round(torch.cuda.max_memory_allocated() / 2**30, 3),
                "peak_reserved_GiB": round(torch.cuda.max_memory_reserved() / 2**30, 3)}  # fmt: skip
    return {"peak_rss_MiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def _sync() -> None:
    if DEVICE.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _dtype(name: str) -> str:
    from mfollow.runtime.devices import auto_dtype

    return auto_dtype(DEVICE) if name == "auto" else name


def window(
    preset: str,
    frames: int,
    size: int,
    dtype: str,
    steps: int,
    measured: int,
    budget: str | None = None,
    lean: bool = False,
    compiled: bool = False,
) -> dict[str, Any]:
    """``measured`` guided steps of one window (of a ``steps``-step schedule, from its second step:
    the first is pure noise and unguided), random weights in ``dtype``, latents in float32, run
    as the memory planner chooses for ``budget`` (``--max-memory``; None: the device's free
    memory), or with ``lean`` the leanest way (checkpointing, passes one by one: the edit's way
    before the planner); ``compiled``: the U-Net through ``torch.compile``."""
    import torch
    from sampler import _setup  # benchmarks/sampler.py: random networks and conditioning at a size

    from mfollow.edit.plan import Footprint, MemoryPlan, estimate, parse_size, plan_memory
    from mfollow.models.presets import SCHEDULER, get_preset
    from mfollow.runtime.memory import available_bytes
    from mfollow.sampling.ddim import initial_noise, schedule
    from mfollow.sampling.sampler import sample
    from mfollow.sampling.state import Conditioning, SamplerSettings, SamplerState

    p, dt = get_preset(preset), getattr(torch, _dtype(dtype))
    w = Footprint(frames, size, size, _dtype(dtype), kind=DEVICE.split(":")[0])
    plan = MemoryPlan(checkpointing=True, batch_passes=False) if lean else plan_memory(
        p, w, parse_size(budget) if budget else available_bytes(DEVICE))  # fmt: skip
    # the planner's estimate of the sampling (the networks all resident, as here; VAE and CLIP included)
    need = estimate(p, w, checkpointing=plan.checkpointing, offload=False, batch_passes=plan.batch_passes,
                    decode_chunk=1)  # fmt: skip
    unet, c32, _ = _setup(preset, frames, size)  # float32 networks and conditioning on DEVICE
    unet.to(dt)
    if plan.checkpointing:
        unet.enable_gradient_checkpointing()
    net = torch.compile(unet) if compiled else unet  # OptimizedModule: attributes reach the U-Net
    cond = Conditioning(c32.context.to(dt), c32.pose_r.to(dt), c32.pose_e.to(dt), [a.to(dt) for a in c32.appearance],
                        c32.M_e, c32.M_r, c32.M_e_latent)  # fmt: skip  # masks stay float32
    del c32
    lat = size // p.vae_factor
    timesteps, abar = schedule(SCHEDULER, steps)
    z = initial_noise(0, frames, (p.unet.get("in_channels", 4), lat, lat)).to(DEVICE)
    settings = SamplerSettings(steps=steps, cfg=CFG, guidance="paper", window=frames, overlap=0,
                               batch_passes=plan.batch_passes)  # fmt: skip
    times: list[float] = []
    losses: list[list[float]] = []
    last = [0.0]

    def tick(event: dict[str, Any]) -> None:
        _sync()
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now
        losses.append([round(v, 6) for pair in event["losses"] for v in pair])

    if DEVICE.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    _sync()
    last[0] = time.perf_counter()
    out = sample(net, SamplerState(z.clone(), z.clone(), 1), timesteps[: 1 + measured], abar, lambda w: cond,
                 settings, callback=tick)  # fmt: skip
    per_step = sorted(times)[len(times) // 2]
    with tempfile.NamedTemporaryFile(suffix=".pt", delete=False, dir=os.environ.get("MFOLLOW_BENCH_TMP")) as f:
        torch.save(out.z_e.cpu(), f.name)  # for the parent's comparison across dtypes
    return {"dtype": _dtype(dtype), "frames": frames, "size": size, "steps_measured": measured,
            "seconds_per_step": round(per_step, 3), "seconds_per_window": round(per_step * (steps - 1), 1),
            "first_step_seconds": round(times[0], 3),
            "losses_per_step": losses, "latents": f.name, **_peak(),
            "plan": {"checkpointing": plan.checkpointing, "batch_passes": plan.batch_passes, "budget": budget,
                     "estimate_GiB": round(need / 2**30, 3)}}  # fmt: skip


def largest(dtype: str) -> dict[str, Any]:
    import torch

    fits: dict[int, Any] = {}
    for frames in (32, 40, 48, 56, 64):
        try:
            r = window("sd15", frames, 512, dtype, 25, 1)
            fits[frames] = {k: r[k] for k in ("seconds_per_step", "peak_allocated_GiB")}
        except torch.cuda.OutOfMemoryError:
            fits[frames] = "out of memory"
            break
        finally:
            torch.cuda.empty_cache()
    return {"dtype": _dtype(dtype), "one_step_at_512": fits}


def long_edit(frames: int, size: int, dtype: str, steps: int) -> dict[str, Any]:
    """``run_edit`` over ``frames`` frames: a still source, a 24-frame synthetic pair's poses and
    masks repeated to the length (written to disk as an edit reads them)."""
    import numpy as np
    import torch
    from PIL import Image

    from mfollow.edit.inputs import EditInputs
    from mfollow.edit.run import run_edit
    from mfollow.edit.settings import EditSettings
    from mfollow.io.media import media_frames
    from mfollow.models.bundle import ModelBundle
    from mfollow.preprocess.masks.files import mask_name, read_masks, write_mask
    from mfollow.preprocess.pose.keypoints import PoseSequence
    from mfollow.sampling.state import SamplerSettings
    from mfollow.synth import make_pair
    from mfollow.synth.files import write_pair

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_pair(make_pair(0, frames=24, size=size, camera="none"), root / "pair")
        Image.fromarray(next(iter(media_frames(root / "pair" / "source.mp4")))).save(root / "still.png")
        for name in ("source_poses", "edit_poses"):
            seq = PoseSequence.load(root / "pair" / f"{name}.json")
            tiled = {k: np.concatenate([getattr(seq, k)] * -(-frames // 24))[:frames]
                     for k in ("body", "feet", "hands", "box")}  # fmt: skip
            face = None if seq.face is None else np.concatenate([seq.face] * -(-frames // 24))[:frames]
            PoseSequence(seq.width, seq.height, face=face, **tiled).save(root / f"{name}.json")
        for name in ("source_masks", "edit_masks"):
            masks = read_masks(root / "pair" / name)
            (root / name).mkdir()
            for i in range(frames):
                write_mask(root / name / mask_name(i), masks[i % 24])
        bundle = ModelBundle.random("sd15" if size >= 256 else "tiny", 0).eval()
        inputs = EditInputs(root / "still.png", root / "source_poses.json", root / "edit_poses.json",
                            root / "source_masks", root / "edit_masks")  # fmt: skip
        s = EditSettings(sampler=SamplerSettings(steps=steps, cfg=CFG, window=24, overlap=8), short_side=size,
                         device=DEVICE, dtype=_dtype(dtype), composite=False)  # fmt: skip
        if DEVICE.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        report = run_edit(bundle, inputs, s, root / "out.mp4", work_dir=root)
        _sync()
    return {"frames": report["frames"], "windows": len(report["windows"]), "dtype": _dtype(dtype),
            "seconds": round(time.perf_counter() - start, 1), **_peak()}  # fmt: skip


def tiny_edit() -> dict[str, Any]:
    """The bundled model's edit of a synthetic pair in float32 and bfloat16 (CPU): the frames'
    difference and each one's PSNR against the pair's true edit."""
    import numpy as np

    from mfollow.edit.inputs import EditInputs
    from mfollow.edit.run import run_edit
    from mfollow.edit.settings import EditSettings
    from mfollow.io.media import media_frames
    from mfollow.models.loading import load_bundle
    from mfollow.models.presets import get_preset
    from mfollow.sampling.state import SamplerSettings
    from mfollow.synth import make_pair
    from mfollow.synth.files import write_pair

    spec = get_preset("tiny")
    with tempfile.TemporaryDirectory() as tmp:
        pair = Path(tmp) / "pair"
        write_pair(make_pair(7, frames=24, size=128, camera="pan"), pair)
        inputs = EditInputs(pair / "source.mp4", pair / "source_poses.json", pair / "edit_poses.json",
                            pair / "source_masks", pair / "edit_masks")  # fmt: skip
        truth = np.stack(list(media_frames(pair / "edit_gt.mp4"))).astype(float)
        out: dict[str, Any] = {}
        frames = {}
        for dtype in ("float32", "bfloat16"):
            bundle, _ = load_bundle("tiny", None)
            s = EditSettings(sampler=SamplerSettings(steps=spec.steps, cfg=spec.cfg, guidance="paper",
                             guidance_scale=spec.default_guidance_scale("paper")), short_side=128, dtype=dtype,
                             warp_person=spec.warp_person)  # fmt: skip
            start = time.perf_counter()
            run_edit(bundle, inputs, s, Path(tmp) / dtype)  # a folder of PNG frames: no codec in between
            seconds = time.perf_counter() - start
            frames[dtype] = np.stack(list(media_frames(Path(tmp) / dtype))).astype(float)
            mse = ((frames[dtype] - truth) ** 2).mean()
            out[dtype] = {"seconds": round(seconds, 2), "psnr_vs_truth": round(10 * np.log10(255**2 / mse), 3)}
        d = np.abs(frames["bfloat16"] - frames["float32"])
        out["pixel_difference"] = {"max": int(d.max()), "mean": round(float(d.mean()), 4)}
        return out


def run_case(case: str) -> dict[str, Any]:
    if case.startswith("cpu-") and case != "cpu-tiny-edit":
        _, preset, dtype, *lean = case.split("-")
        frames, size = (8, 128) if preset == "sd15" else (24, 256)
        return window(preset, frames, size, dtype, 25, 2, lean=bool(lean))
    if case == "cpu-tiny-edit":
        return tiny_edit()
    if case == "w24-512-auto":
        return window("sd15", 24, 512, "auto", 25, 24)
    if case == "w24-512-auto-12GiB":  # a 12 GB card's budget
        return window("sd15", 24, 512, "auto", 25, 3, budget="12GiB")
    if case == "w24-512-auto-compile":
        return window("sd15", 24, 512, "auto", 25, 4, compiled=True)
    if case.startswith(("w24-", "w8-")):
        frames, _, dtype = case[1:].split("-")
        return window("sd15", int(frames), 512, dtype, 25, 3)
    if case == "largest-auto":
        return largest("auto")
    if case == "long-600-auto":
        return long_edit(600, 512, "auto", 2)
    raise SystemExit(f"unknown case {case!r}")


def _compare(results: dict[str, Any], a: str, b: str) -> dict[str, Any] | None:
    """The latents' difference between two cases of the same window, and the ratios."""
    import torch

    if a not in results or b not in results or "latents" not in results[a] or "latents" not in results[b]:
        return None
    ra, rb = results[a], results[b]
    out: dict[str, Any] = {"time_ratio": round(ra["seconds_per_step"] / rb["seconds_per_step"], 3)}
    if ra["steps_measured"] == rb["steps_measured"]:  # the same steps: their latents compare
        za, zb = torch.load(ra["latents"]), torch.load(rb["latents"])
        d = (za - zb).abs()
        out |= {"latent_max_abs_diff": round(float(d.max()), 5), "latent_mean_abs_diff": round(float(d.mean()), 5),
                "latent_mean_abs": round(float(zb.abs().mean()), 5)}  # fmt: skip
    for key in ("peak_allocated_GiB", "peak_rss_MiB"):
        if key in ra:
            out[f"{key}_ratio"] = round(ra[key] / rb[key], 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--case", help="cases, comma-separated (default: the device's set)")
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args()
    if os.environ.get("MFOLLOW_BENCH_CASE"):
        print(json.dumps(run_case(os.environ["MFOLLOW_BENCH_CASE"])))
        return
    cases = args.case.split(",") if args.case else list(GPU_CASES if args.device.startswith("cuda") else CPU_CASES)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            env = {**os.environ, "MFOLLOW_BENCH_CASE": case, "MFOLLOW_BENCH_DEVICE": args.device,
                   "MFOLLOW_BENCH_TMP": tmp}  # fmt: skip
            r = subprocess.run([sys.executable, __file__], capture_output=True, text=True, env=env,
                               timeout=args.timeout)  # fmt: skip
            results[case] = json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {
                "error": (r.stderr.strip().splitlines() or ["?"])[-1]}  # fmt: skip
            print(f"{case}: {results[case]}", file=sys.stderr, flush=True)
        pairs = {"sd15 bfloat16 vs float32": ("cpu-sd15-bfloat16", "cpu-sd15-float32"),
                 "tiny bfloat16 vs float32": ("cpu-tiny-bfloat16", "cpu-tiny-float32"),
                 "w8 auto vs float32": ("w8-512-auto", "w8-512-float32"),
                 "sd15 planned vs lean": ("cpu-sd15-float32", "cpu-sd15-float32-lean"),
                 "tiny planned vs lean": ("cpu-tiny-float32", "cpu-tiny-float32-lean"),
                 "compiled vs eager": ("w24-512-auto-compile", "w24-512-auto")}  # fmt: skip
        compared = {name: c for name, (a, b) in pairs.items() if (c := _compare(results, a, b)) is not None}
    for r in results.values():
        r.pop("latents", None)
    import torch

    machine = torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(json.dumps({"device": args.device, "machine": machine, "cores": os.cpu_count(), "torch": torch.__version__,
                      "cases": results, "compared": compared}, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
