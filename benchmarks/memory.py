"""The memory planner's coefficients: what each part of an edit holds, in bytes per frame and
working pixel, measured on random weights in float32 (what ``mfollow/models/presets.py``'s
``memory_*`` fields hold and ``mfollow/edit/plan.py`` scales). Prints JSON. Each measurement runs
in a fresh process: the peak of the process's resident memory (CPU, Linux: its peak reset just
before the work) or of the CUDA allocator during the work, minus before it, the networks and the
conditioning already built.

    python benchmarks/memory.py                       # tiny (24 frames, 256²) and sd15 (8 frames, 256²)
    python benchmarks/memory.py --preset tiny         # one preset
    python benchmarks/memory.py --device cuda         # on a GPU

Parts: ``pass`` (one U-Net pass without grad: the reconstruction's, or the unconditional one),
``pair`` (the two as one call of batch 2, :func:`mfollow.sampling.passes.paired_predictions`),
``guided_ckpt`` / ``guided_full`` (the editing pass with the consistency guidance's gradient,
:func:`mfollow.sampling.passes.edit_prediction`, with and without activation checkpointing; F_r
held), ``decode`` (the VAE decoding the frames, per frame decoded at once); ``parameters``: each
network's parameter count (on the meta device).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from sampler import DEVICE, _device_name, sync

SIZES = {"tiny": (24, 256), "sd15": (8, 256)}
PARTS = ("pass", "pair", "guided_ckpt", "guided_full", "decode")


def _status_mib(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MiB."""
    with open("/proc/self/status", encoding="ascii") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith(field + ":")) / 1024


def _reset_peak() -> float:
    """Start a new peak window; returns the memory in use now (the window's base). On the CPU the
    process's peak resident memory (VmHWM) is reset to its current value (``clear_refs`` 5), so
    that building the networks does not hide a smaller part's peak."""
    sync()
    if DEVICE.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()
        return torch.cuda.memory_allocated() / 2**20
    with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
        fh.write("5")
    return _status_mib("VmRSS")


def _peak_growth(base: float) -> float:
    """MiB over ``base`` at the peak (the CUDA allocator's peak, or the process's resident peak)."""
    sync()
    if DEVICE.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated() / 2**20 - base
    return _status_mib("VmHWM") - base


def measure(preset: str, part: str) -> dict[str, Any]:
    import torch

    from mfollow.models.presets import SCHEDULER, get_preset
    from mfollow.sampling.ddim import initial_noise, schedule
    from mfollow.sampling.passes import edit_prediction, features_of, paired_predictions, predict
    from mfollow.sampling.state import SamplerSettings

    frames, size = SIZES[preset]
    pixels = frames * size * size
    p = get_preset(preset)
    if part == "decode":
        from diffusers import AutoencoderKL

        torch.manual_seed(0)
        with torch.device(DEVICE):
            vae = AutoencoderKL(**p.vae).eval().requires_grad_(False)
        lat = size // p.vae_factor
        z = torch.randn(frames, p.vae["latent_channels"], lat, lat, device=DEVICE)
        base = _reset_peak()
        with torch.no_grad():
            vae.decode(z)
        return {"MiB": round(_peak_growth(base), 1), "bytes_per_pixel": round(_peak_growth(base) * 2**20 / pixels)}

    from sampler import _setup

    unet, c, shape = _setup(preset, frames, size)
    timesteps, _ = schedule(SCHEDULER, 25)
    t = timesteps[5]
    z = initial_noise(0, frames, shape).to(DEVICE)
    if part.startswith("guided"):
        if part == "guided_ckpt":
            unet.enable_gradient_checkpointing()
        with torch.no_grad():
            F_r = features_of(predict(unet, z, t, c.context, c.pose_r, c))
    base = _reset_peak()
    if part == "pass":
        with torch.no_grad():
            predict(unet, z, t, c.context, c.pose_r, c)
    elif part == "pair":
        paired_predictions(unet, z, z, t, c)
    else:
        edit_prediction(unet, z, t, c, SamplerSettings(cfg=1.0), F_r, True)  # the guided pass alone
    grown = _peak_growth(base)
    return {"MiB": round(grown, 1), "bytes_per_pixel": round(grown * 2**20 / pixels)}


def parameters(preset: str) -> dict[str, int]:
    """Each network's parameter count, built on the meta device (no memory, no initialisation)."""
    import torch
    from diffusers import AutoencoderKL
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from mfollow.models.controllers import PoseController
    from mfollow.models.presets import get_preset
    from mfollow.models.unet3d import UNet3D

    p = get_preset(preset)
    with torch.device("meta"):
        nets = {"unet": UNet3D(**p.unet), "poctr": PoseController(**p.poctr), "vae": AutoencoderKL(**p.vae),
                "image_encoder": CLIPVisionModelWithProjection(CLIPVisionConfig(**p.image_encoder))}  # fmt: skip
    return {name: sum(x.numel() for x in net.parameters()) for name, net in nets.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", choices=tuple(SIZES), action="append")
    ap.add_argument("--device", default=DEVICE)
    ap.add_argument("--one", nargs=2, metavar=("PRESET", "PART"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:  # a child: the device came in MFOLLOW_BENCH_DEVICE (sampler.DEVICE)
        print(json.dumps(measure(*args.one)))
        return
    out: dict[str, Any] = {"benchmark": "memory", "device": _device_name(args.device), "cpus": os.cpu_count(),
                           "machine": platform.machine()}  # fmt: skip
    for preset in args.preset or tuple(SIZES):
        frames, size = SIZES[preset]
        row: dict[str, Any] = {"frames": frames, "size": size, "parameters": parameters(preset)}
        for part in PARTS:
            r = subprocess.run([sys.executable, __file__, "--one", preset, part], capture_output=True, text=True,
                               env={**os.environ, "MFOLLOW_BENCH_DEVICE": args.device})  # fmt: skip
            row[part] = (
                json.loads(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else {"error": r.stderr[-300:]}
            )
            print(preset, part, row[part], file=sys.stderr)
        out[preset] = row
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
