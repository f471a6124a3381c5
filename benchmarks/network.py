"""Network size and forward cost on this machine. Prints JSON.

    python benchmarks/network.py                 # parameter counts + tiny and sd15 forwards
    python benchmarks/network.py --case tiny     # one measurement (run in its own process)

Parameter counts come from the sd15 preset built on the meta device. Each forward runs in a fresh
process so its peak resident memory (ru_maxrss) is its own: random weights, float32, no grad.
tiny: 24 frames at 128x128 (latents 16x16); sd15: 8 frames at 256x256 (latents 32x32).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

CASES = {"tiny": (24, 128), "sd15": (8, 256)}


def counts() -> dict[str, float]:
    import torch

    from mfollow.models.bundle import ModelBundle  # noqa: F401  (import cost excluded)
    from mfollow.models.controllers import PoseController
    from mfollow.models.presets import SD15
    from mfollow.models.unet3d import UNet3D

    with torch.device("meta"):
        unet, poctr = UNet3D(**SD15.unet), PoseController(**SD15.poctr)
        from diffusers import AutoencoderKL
        from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

        vae = AutoencoderKL(**SD15.vae)
        clip = CLIPVisionModelWithProjection(CLIPVisionConfig(**SD15.image_encoder))

    def n(params: object) -> float:
        return round(sum(p.numel() for p in params) / 1e6, 3)  # type: ignore[attr-defined]

    named = list(unet.named_parameters())
    return {
        "unet_spatial_M": n(
            p for k, p in named if ".motion_modules." not in k and not k.startswith("appearance_adapter.")
        ),
        "motion_modules_M": n(p for k, p in named if ".motion_modules." in k),
        "rectr_M": n(p for k, p in named if k.startswith("appearance_adapter.")),
        "poctr_M": n(poctr.parameters()),
        "vae_M": n(vae.parameters()),
        "image_encoder_M": n(clip.parameters()),
    }


def forward(case: str) -> dict[str, object]:
    import torch

    from mfollow.models.controllers import PoseController
    from mfollow.models.presets import get_preset
    from mfollow.models.unet3d import UNet3D

    frames, size = CASES[case]
    preset = get_preset(case)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    unet, poctr = UNet3D(**preset.unet).eval(), PoseController(**preset.poctr).eval()
    build = time.perf_counter() - t0
    g = torch.Generator().manual_seed(0)
    latent = size // preset.vae_factor
    x = torch.randn(1, preset.unet.get("in_channels", 4), frames, latent, latent, generator=g)
    ctx = torch.randn(1, frames, preset.unet["cross_attention_dim"], generator=g)
    poses = torch.rand(1, 3, frames, size, size, generator=g)
    source = torch.rand(1, 3, frames, size, size, generator=g) * 2 - 1
    times = []
    with torch.no_grad():
        for _ in range(2 if case == "tiny" else 1):
            t0 = time.perf_counter()
            unet(x, 500, ctx, pose_features=poctr(poses), appearance=unet.appearance_features(source))
            times.append(time.perf_counter() - t0)
    return {
        "case": case,
        "frames": frames,
        "size": size,
        "build_seconds": round(build, 2),
        "forward_seconds": round(min(times), 3),
        "peak_rss_MiB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": torch.get_num_threads(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", choices=sorted(CASES))
    ap.add_argument("--skip-sd15", action="store_true", help="only the tiny forward (about 6 GB less memory)")
    args = ap.parse_args()
    if args.case:
        print(json.dumps(forward(args.case)))
        return
    out: dict[str, object] = {"benchmark": "network", "sd15_parameters": counts(), "cpus": os.cpu_count()}
    out["machine"] = platform.machine()
    for case in ["tiny"] + ([] if args.skip_sd15 else ["sd15"]):
        r = subprocess.run([sys.executable, __file__, "--case", case], capture_output=True, text=True, check=True)
        out[case] = json.loads(r.stdout.strip().splitlines()[-1])
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
