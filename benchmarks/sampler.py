"""Sampler cost on this machine. Prints JSON. Every case runs in a fresh process.

    python benchmarks/sampler.py                       # everything (sd15 needs ~20 GB of RAM)
    python benchmarks/sampler.py --skip-sd15
    python benchmarks/sampler.py --case step-paper     # one case
    python benchmarks/sampler.py --device cuda         # on a GPU (peaks: CUDA memory allocated)
    python benchmarks/sampler.py --cases lockstep,release --repeat 5   # medians of 5 rounds

Cases (random weights, float32, CPU):

- ``step-none`` / ``step-paper`` / ``step-paper-ckpt``: seconds per sampling step and the peak
  memory growth of one step, tiny preset, 24 frames at 256x256, CFG on;
- ``lockstep`` / ``lockstep-ckpt`` / ``release``: 4 guided steps of mfollow's lockstep sampler
  (without, and with its default gradient checkpointing) against the release's structure at the
  same schedule: a full reconstruction run storing every latent first, then editing with guidance
  features from a second U-Net copy;
- ``long-48`` / ``long-600``: a full ``long`` edit (2 steps) of 48 and 600 frames at 128x128,
  tiny preset: whole-process peak memory, to show it does not grow with the video's length;
- ``sd15-step`` / ``sd15-step-ckpt``: one guided step of the sd15 preset, 8 frames at 256x256.

"Peak growth" is the process's maximum resident set (ru_maxrss) after the measured work minus
the same figure just before it (networks built, inputs ready). With ``--device cuda`` it is the
peak of CUDA memory allocated during the work minus what was allocated before it, the ``long``
cases report the peak of CUDA memory allocated over the whole edit, and times are taken after
synchronising the device, after an untimed warm-up (one guided lockstep step, the same for every
case; ``--warmup on|off`` overrides, off by default on the CPU).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = (
    "step-none", "step-paper", "step-paper-ckpt", "lockstep", "lockstep-ckpt", "release",
    "long-48", "long-600", "sd15-step", "sd15-step-ckpt",
)  # fmt: skip


CFG = 3.5  # classifier-free guidance of every case (the sd15 preset's default)
DEVICE = os.environ.get("MFOLLOW_BENCH_DEVICE", "cpu")  # set by --device, inherited by the case processes
WARMUP = os.environ.get("MFOLLOW_BENCH_WARMUP", "auto")  # set by --warmup: on, off, auto (= on for CUDA)


def maxrss_mib() -> float:
    """Peak memory so far: resident set on CPU, CUDA memory allocated on a GPU."""
    if DEVICE.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sync() -> None:
    if DEVICE.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _setup(preset: str, frames: int, size: int, seed: int = 0):  # type: ignore[no-untyped-def]
    import torch

    from mfollow.models.controllers import PoseController
    from mfollow.models.presets import get_preset
    from mfollow.models.unet3d import UNet3D
    from mfollow.sampling.state import Conditioning

    p = get_preset(preset)
    torch.manual_seed(seed)
    with torch.device(DEVICE):  # built in place (sd15's random init is slow on CPU)
        unet = UNet3D(**p.unet).eval().requires_grad_(False)
        poctr = PoseController(**p.poctr).eval().requires_grad_(False)
    g = torch.Generator(DEVICE).manual_seed(seed)
    lat = size // p.vae_factor
    m_r = torch.zeros(1, 1, frames, size, size, device=DEVICE)
    m_r[..., size // 4 : 3 * size // 4, size // 6 : size // 2] = 1
    m_e = torch.zeros_like(m_r)
    m_e[..., size // 4 : 3 * size // 4, size // 3 : 2 * size // 3] = 1
    with torch.no_grad():
        cond = Conditioning(
            context=torch.randn(1, frames, p.unet["cross_attention_dim"], generator=g, device=DEVICE),
            pose_r=poctr(torch.rand(1, 3, frames, size, size, generator=g, device=DEVICE)),
            pose_e=poctr(torch.rand(1, 3, frames, size, size, generator=g, device=DEVICE)),
            appearance=unet.appearance_features(
                torch.rand(1, 3, frames, size, size, generator=g, device=DEVICE) * 2 - 1
            ),
            M_e=m_e,
            M_r=m_r,
            M_e_latent=torch.nn.functional.interpolate(m_e[0], size=(lat, lat), mode="nearest")[None],
        )
    return unet, cond, (p.unet.get("in_channels", 4), lat, lat)


def run_sampler(preset: str, frames: int, size: int, steps: int, guidance: str, ckpt: bool, measure_steps: int) -> dict:
    from mfollow.models.presets import SCHEDULER
    from mfollow.sampling.ddim import initial_noise, schedule
    from mfollow.sampling.sampler import sample
    from mfollow.sampling.state import SamplerSettings, SamplerState

    unet, cond, shape = _setup(preset, frames, size)
    if ckpt:
        unet.enable_gradient_checkpointing()
    timesteps, abar = schedule(SCHEDULER, steps)
    z = initial_noise(0, frames, shape).to(DEVICE)
    state = SamplerState(z.clone(), z.clone(), 1)  # skip the pure-noise step (no guidance there)
    settings = SamplerSettings(steps=steps, cfg=CFG, guidance=guidance, window=frames, overlap=0)  # type: ignore[arg-type]
    _warm_up(unet, cond, z, timesteps, abar)
    base = _reset_peak()
    times: list[float] = []
    last = [time.perf_counter()]

    def tick(event: dict) -> None:
        sync()
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    sample(unet, state, timesteps[: 1 + measure_steps], abar, lambda w: cond, settings, callback=tick)
    return {
        "seconds_per_step": round(min(times), 3),
        "seconds_total": round(sum(times), 3),
        "peak_growth_MiB": round(maxrss_mib() - base, 1),
    }


def run_release(frames: int, size: int, steps: int) -> dict:
    """The release's structure at the same schedule: reconstruction first (all latents kept),
    then editing with guidance features from a second U-Net copy (the "Estimator")."""
    import torch

    from mfollow.models.presets import SCHEDULER
    from mfollow.sampling.ddim import ddim_step, initial_noise, schedule
    from mfollow.sampling.guidance import consistency_losses, guidance_gradient

    unet, c, shape = _setup("tiny", frames, size)
    timesteps, abar = schedule(SCHEDULER, steps + 1)
    z0 = initial_noise(0, frames, shape).to(DEVICE)
    _warm_up(unet, c, z0, timesteps, abar)
    timesteps = timesteps[1:]  # the same guided steps as the lockstep case
    base = _reset_peak()
    start = time.perf_counter()
    estimator = copy.deepcopy(unet)  # the second U-Net copy
    stored = [z0]
    z = z0
    with torch.no_grad():
        for i, t in enumerate(timesteps):
            a_prev = float(abar[timesteps[i + 1]]) if i + 1 < len(timesteps) else 1.0
            z = ddim_step(
                z,
                unet(z, t, c.context, pose_features=c.pose_r, appearance=c.appearance).sample,
                float(abar[t]),
                a_prev,
                None,
            )
            stored.append(z)
    est_app = estimator.appearance_features(torch.zeros(1, 3, frames, size, size, device=DEVICE))
    x = z0
    for i, t in enumerate(timesteps):
        a_t = float(abar[t])
        a_prev = float(abar[timesteps[i + 1]]) if i + 1 < len(timesteps) else 1.0
        with torch.no_grad():
            v_c = unet(x, t, c.context, pose_features=c.pose_e, appearance=c.appearance).sample
            v_u = unet(x, t, torch.zeros_like(c.context), pose_features=c.pose_e, appearance=c.appearance).sample
            f_r = estimator(stored[i], t, c.context, pose_features=c.pose_r, appearance=est_app).features
        x_req = x.detach().requires_grad_(True)
        f_e = estimator(x_req, t, c.context, pose_features=c.pose_e, appearance=est_app).features
        L_fg, L_bg = consistency_losses([f_e[1], f_e[2]], [f_r[1], f_r[2]], c.M_e, c.M_r)
        g = guidance_gradient(x_req, L_fg, L_bg, c.M_e_latent)
        x = ddim_step(x, v_u + CFG * (v_c - v_u), a_t, a_prev, g)
    sync()
    elapsed = time.perf_counter() - start
    return {"seconds_total": round(elapsed, 3), "peak_growth_MiB": round(maxrss_mib() - base, 1)}


def run_long(frames: int) -> dict:
    from mfollow.edit.inputs import EditInputs
    from mfollow.edit.run import run_edit
    from mfollow.edit.settings import EditSettings
    from mfollow.models.bundle import ModelBundle
    from mfollow.sampling.state import SamplerSettings
    from mfollow.synth import make_pair
    from mfollow.synth.files import write_pair

    with tempfile.TemporaryDirectory() as tmp:
        pair = Path(tmp) / "pair"
        write_pair(make_pair(0, frames=frames, size=128, camera="pan"), pair)
        bundle = ModelBundle.random("tiny", 0).eval()
        inputs = EditInputs(pair / "source.mp4", pair / "source_poses.json", pair / "edit_poses.json",
                            pair / "source_masks", pair / "edit_masks")  # fmt: skip
        settings = EditSettings(sampler=SamplerSettings(steps=2), short_side=128, device=DEVICE)
        start = time.perf_counter()
        run_edit(bundle, inputs, settings, Path(tmp) / "out.mp4")
        return {"seconds_total": round(time.perf_counter() - start, 1), "peak_rss_MiB": round(maxrss_mib(), 1)}


def _warm_up(unet, c, z, timesteps: list[int], abar) -> None:  # type: ignore[no-untyped-def]
    """On CUDA, one untimed guided lockstep step (mfollow's sampler, the same for every case)
    before timing, so one-off start-up work (kernel loading, library handles, the allocator's
    first requests) is outside the totals. Not on the CPU unless asked (``--warmup on``): there
    the peak memory (ru_maxrss) cannot be reset afterwards, so the memory figures of a warmed-up
    CPU run mean nothing."""
    from mfollow.sampling.sampler import sample
    from mfollow.sampling.state import SamplerSettings, SamplerState

    if WARMUP == "on" or (WARMUP == "auto" and DEVICE.startswith("cuda")):
        frames = z.shape[2]
        settings = SamplerSettings(steps=len(timesteps), cfg=CFG, guidance="paper", window=frames, overlap=0)
        sample(unet, SamplerState(z.clone(), z.clone(), 1), timesteps[:2], abar, lambda w: c, settings)
    sync()


def _reset_peak() -> float:
    """Start a new peak window; returns the memory in use now (the window's base)."""
    if DEVICE.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2**20
    return maxrss_mib()


def run_case(case: str) -> dict:
    if case.startswith("step-"):
        guidance = "none" if case == "step-none" else "paper"
        return run_sampler("tiny", 24, 256, 5, guidance, case.endswith("ckpt"), 2)
    if case.startswith("lockstep"):
        return run_sampler("tiny", 24, 256, 5, "paper", case.endswith("ckpt"), 4)
    if case == "release":
        return run_release(24, 256, 4)
    if case.startswith("long-"):
        return run_long(int(case.split("-")[1]))
    if case.startswith("sd15-step"):
        return run_sampler("sd15", 8, 256, 5, "paper", case.endswith("ckpt"), 1)
    raise SystemExit(f"unknown case {case}")


def main() -> None:
    global DEVICE, WARMUP
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", choices=CASES)
    ap.add_argument("--skip-sd15", action="store_true")
    ap.add_argument("--cases", help="comma-separated subset of the cases (default: all)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds allowed per case")
    ap.add_argument("--warmup", choices=("auto", "on", "off"), default=WARMUP, help="untimed warm-up (auto: CUDA)")
    ap.add_argument("--device", default=DEVICE, help="cpu (default) or cuda[:N]")
    ap.add_argument("--repeat", type=int, default=1, help="rounds over the cases: medians and every round")
    args = ap.parse_args()
    DEVICE = os.environ["MFOLLOW_BENCH_DEVICE"] = args.device
    WARMUP = os.environ["MFOLLOW_BENCH_WARMUP"] = args.warmup
    if args.case:
        print(json.dumps(run_case(args.case)))
        return
    out: dict[str, object] = {"benchmark": "sampler", "cpus": os.cpu_count(), "machine": platform.machine()}
    out["device"] = _device_name(args.device)
    chosen = CASES if args.cases is None else tuple(c for c in CASES if c in args.cases.split(","))
    chosen = tuple(c for c in chosen if not (args.skip_sd15 and c.startswith("sd15")))
    runs: list[dict[str, dict]] = []
    for _ in range(args.repeat):  # round robin: every case once per round, so drifts hit all alike
        runs.append({case: _run_process(case, args.timeout) for case in chosen})
    if args.repeat == 1:
        out.update(runs[0])
        out.update(_ratios(runs[0]))
    else:  # medians over the rounds, and every round's figures
        for case in chosen:
            ok = [r[case] for r in runs if "error" not in r[case]]
            keys = ok[0].keys() if ok else ()
            out[case] = {k: statistics.median(r[k] for r in ok) for k in keys} | {"runs": [r[case] for r in runs]}
        per_round = [_ratios(r) for r in runs]
        for name in {k for r in per_round for k in r}:
            values = [r[name] for r in per_round if name in r]
            out[name] = statistics.median(values)
            out[f"{name}_runs"] = values
    print(json.dumps(out, indent=2))


def _run_process(case: str, timeout: float) -> dict:
    """One case in a fresh process: its JSON, or {"error": ...}."""
    try:
        r = subprocess.run([sys.executable, __file__, "--case", case], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"over {timeout} s"}
    return json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {"error": r.stderr[-300:]}


def _ratios(out: dict) -> dict[str, float]:
    """The targets' ratios, from whichever of their cases ran."""

    def ratio(a: str, b: str, key: str) -> dict[str, float]:
        x, y = out.get(a, {}), out.get(b, {})
        return {} if key not in x or key not in y else {"v": round(x[key] / y[key], 3)}

    found = {
        "time_ratio_lockstep_vs_release": ratio("lockstep", "release", "seconds_total"),
        "memory_ratio_defaults_vs_release": ratio("lockstep-ckpt", "release", "peak_growth_MiB"),
        "long_memory_ratio_600_vs_48": ratio("long-600", "long-48", "peak_rss_MiB"),
    }
    return {name: r["v"] for name, r in found.items() if r}


def _device_name(device: str) -> str:
    if not device.startswith("cuda"):
        return "cpu"
    import torch

    return f"{torch.cuda.get_device_name(torch.device(device))}, torch {torch.__version__}"


if __name__ == "__main__":
    main()
