"""The training loop shared by every stage: seeded, resumable bit for bit, checkpointed into its
run directory, distributed through PyTorch's DistributedDataParallel when launched by ``torchrun``.

Run directory::

    RUN/settings.json        the settings of the run (a resumed run must match, ``steps`` aside)
    RUN/checkpoint/          model.safetensors (every module of the run), optim.safetensors
                             (AdamW moments), state.json (steps done); replaced atomically
    RUN/log.csv              step, loss, seconds
    RUN/loss.png             the loss curve (moving average), redrawn at every checkpoint
    RUN/bundle/              the exported model bundle (stages vae, image, video)
    RUN/segdit/              the exported SegDiT (stage mask)

Every batch and every noise draw is a function of (seed, step, rank, micro-batch), so a resumed
run draws exactly what the uninterrupted run draws.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mfollow.io.atomic import atomic_write_json, atomic_write_text
from mfollow.runtime.distributed import join
from mfollow.runtime.errors import ProjectError, UsageError
from mfollow.training import data
from mfollow.training.export import export_bundle, export_segdit
from mfollow.training.objectives import alphas_cumprod, diffusion_loss, mask_loss, vae_loss
from mfollow.training.plot import plot_losses
from mfollow.training.settings import LR_SCHEDULES, RESUMABLE_CHANGES, STAGES, Stage, TrainSettings

__all__ = ["LR_SCHEDULES", "RESUMABLE_CHANGES", "STAGES", "Stage", "TrainSettings", "train"]


# ----------------------------------------------------------------------------- the trainee
class Trainee(nn.Module):
    """The modules of one stage and its loss: ``forward(batch, generator) -> loss``. Wrapped in
    DistributedDataParallel when several processes train together."""

    def __init__(
        self,
        stage: Stage,
        modules: dict[str, nn.Module],
        bundle: Any | None,
        region_weight: float = 0.0,
    ) -> None:
        super().__init__()
        self.stage = stage
        self.region_weight = region_weight
        self.nets = nn.ModuleDict(modules)
        self._bundle = bundle  # frozen helpers (VAE, CLIP) live here, outside the DDP module tree
        self._abar = None if bundle is None else alphas_cumprod(bundle.scheduler_config)

    def forward(self, batch: dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        if self.stage == "vae":
            weight = None
            if self.region_weight:
                weight = 1.0 + self.region_weight * batch["mask"][:, None].float()  # (B, H, W) -> (B, 1, H, W)
            return vae_loss(self.nets["vae"], batch["frame"], generator, weight=weight)
        if self.stage == "mask":
            return mask_loss(self.nets["segdit"], batch["frame"], batch["pose"], batch["mask"])
        b = self._bundle
        assert b is not None and self._abar is not None
        target, reference = batch["target"], batch["reference"]  # (B, 3, F, H, W) in [-1, 1]
        bsz, _, frames, h, w = target.shape
        with torch.no_grad():
            flat = target.permute(0, 2, 1, 3, 4).reshape(bsz * frames, 3, h, w)  # (B, 3, F, H, W) -> (B*F, 3, H, W)
            z = b.vae.encode(flat).latent_dist.mean * b.latent_scale  # (B*F, C, h', w')
            z0 = z.reshape(bsz, frames, *z.shape[1:]).permute(0, 2, 1, 3, 4)  # -> (B, C, F, h', w')
            weight = None
            if self.region_weight:
                weight = 1.0 + self.region_weight * latent_region(batch["region"], b.vae_factor)
        references = batch["reference_uint8"].reshape(-1, h, w, 3).cpu().numpy()  # (B, F, H, W, 3) -> (B*F, H, W, 3)
        context = b.clip_context(references).reshape(bsz, frames, -1)  # frozen: (B*F, D) -> (B, F, D)
        return diffusion_loss(
            self.nets["unet"],
            self.nets["poctr"],
            z0,
            reference,
            batch["target_pose"],
            context,
            self._abar,
            generator,
            weight=weight,
        )


def latent_region(region: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, F, H, W) bool pixel masks -> (B, 1, F, H/factor, W/factor) float: 1 where the latent
    pixel's cell holds any masked pixel (a max-pool over each factor x factor cell)."""
    bsz, frames, h, w = region.shape
    flat = region.reshape(bsz * frames, 1, h, w).float()  # (B, F, H, W) -> (B*F, 1, H, W)
    cells = torch.nn.functional.max_pool2d(flat, factor)  # (B*F, 1, H/f, W/f)
    return cells.reshape(bsz, frames, 1, h // factor, w // factor).permute(0, 2, 1, 3, 4)  # -> (B, 1, F, h, w)


def _video(x: np.ndarray, lo: float, hi: float, device: str) -> torch.Tensor:
    """uint8 (B, F, H, W, 3) -> float (B, 3, F, H, W) in [lo, hi]."""
    t = torch.from_numpy(np.ascontiguousarray(x)).to(device).permute(0, 4, 1, 2, 3).float()
    return t / 255.0 * (hi - lo) + lo


def _image(x: np.ndarray, lo: float, hi: float, device: str) -> torch.Tensor:
    """uint8 (B, H, W, 3) -> float (B, 3, H, W) in [lo, hi]."""
    return _video(x[:, None], lo, hi, device)[:, :, 0]


def _draw(s: TrainSettings, items: list[data.Item], step: int, rank: int, micro: int) -> dict[str, torch.Tensor]:
    """The batch of (step, rank, micro-batch) as tensors on the device."""
    rng = data.batch_rng(s.seed, step, rank, micro)
    dev = s.device
    if s.stage == "vae":
        f = data.frame_batch(items, rng, s.batch, masks=s.region_weight > 0)
        out = {"frame": _image(f["frame"], -1.0, 1.0, dev)}
        if s.region_weight:
            out["mask"] = torch.from_numpy(f["mask"]).to(dev)  # (B, H, W) bool
        return out
    if s.stage == "mask":
        m = data.mask_batch(items, rng, s.batch)
        return {
            "frame": _image(m["frame"], -1.0, 1.0, dev),
            "pose": _image(m["pose"], 0.0, 1.0, dev),
            "mask": torch.from_numpy(m["mask"]).to(dev),
        }
    if s.stage == "image":
        pairs = data.clip_batch(items, rng, s.batch, 1, s.edit_rate)
    else:
        _, pairs = data.video_stage_batch(items, rng, s.batch, s.clip_length, s.edit_rate)
    out = {
        "reference": _video(pairs["reference"], -1.0, 1.0, dev),
        "reference_uint8": torch.from_numpy(pairs["reference"]),
        "target": _video(pairs["target"], -1.0, 1.0, dev),
        "target_pose": _video(pairs["target_pose"], 0.0, 1.0, dev),
    }
    if s.region_weight:
        if "region" not in pairs:
            raise UsageError("--region-weight needs person masks (folder data: NAME/masks/)")
        out["region"] = torch.from_numpy(pairs["region"]).to(dev)  # (B, F, H, W) bool
    return out


def _generator(s: TrainSettings, step: int, rank: int, micro: int) -> torch.Generator:
    key = int(np.random.SeedSequence([s.seed, step, rank, micro, 7]).generate_state(1, np.uint64)[0] >> 1)
    return torch.Generator().manual_seed(key)  # on the CPU: the same draws whatever the device


# ----------------------------------------------------------------------------- set-up
def build_models(s: TrainSettings) -> tuple[dict[str, nn.Module], Any]:
    """(every module of the run by name, the bundle or None) from ``--init`` or a fresh start."""
    if s.stage == "mask":
        from mfollow.preprocess.masks.segdit import SEGDIT_SIZES, SegDiT

        if s.init:
            return {"segdit": SegDiT.from_pretrained(s.init).to(s.device).train()}, None
        if s.segdit_size not in SEGDIT_SIZES:
            raise UsageError(f"unknown SegDiT size {s.segdit_size!r}; choose from {', '.join(SEGDIT_SIZES)}")
        torch.manual_seed(s.seed)  # module initialisers draw from the global generator
        return {"segdit": SegDiT(**SEGDIT_SIZES[s.segdit_size]).to(s.device)}, None  # type: ignore[arg-type]
    from mfollow.models.bundle import ModelBundle, load_component

    if s.init:  # its preset was checked by TrainSettings.check
        bundle = ModelBundle.from_pretrained(Path(s.init))
    elif s.preset == "sd15":
        from mfollow.training.base import sd15_base_bundle

        bundle = sd15_base_bundle()
    else:
        bundle = ModelBundle.random(s.preset, seed=s.seed)
    if s.vae:  # a retrained autoencoder under a trained U-Net (the U-Net then adapts to its latents)
        bundle.vae = load_component(Path(s.vae), "vae")
    bundle.to(s.device, torch.float32)
    return bundle.modules(), bundle


def trainable_parameters(s: TrainSettings, modules: dict[str, nn.Module]) -> list[tuple[str, nn.Parameter]]:
    """Freeze everything, then unfreeze what the stage trains; (qualified name, parameter) pairs."""
    for m in modules.values():
        m.requires_grad_(False).eval()
    chosen: list[tuple[str, nn.Parameter]] = []

    def take(prefix: str, module: nn.Module, keep: Callable[[str], bool] = lambda n: True) -> None:
        module.train()
        for n, p in module.named_parameters():
            if keep(n):
                p.requires_grad_(True)
                chosen.append((f"{prefix}.{n}", p))

    if s.stage in ("vae", "mask"):
        name = "vae" if s.stage == "vae" else "segdit"
        take(name, modules[name])
    elif s.stage == "image":  # PoCtr, ReCtr and the U-Net's spatial layers; motion modules bypassed
        take("unet", modules["unet"], lambda n: ".motion_modules." not in n)
        take("poctr", modules["poctr"])
        modules["unet"].motion_bypass = True  # type: ignore[assignment]
    else:  # video: only the motion modules
        take("unet", modules["unet"], lambda n: ".motion_modules." in n)
        modules["unet"].motion_bypass = False  # type: ignore[assignment]
    return chosen


# ----------------------------------------------------------------------------- checkpoints
def _save_checkpoint(run: Path, modules: dict[str, nn.Module], opt: torch.optim.Optimizer, step: int) -> None:
    """Write ``checkpoint.new/`` completely, then swap it in: a crash leaves the old one usable."""
    from safetensors.torch import save_file

    new, cur, old = run / "checkpoint.new", run / "checkpoint", run / "checkpoint.old"
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir()
    tensors = {f"{k}.{n}": t.detach().cpu().contiguous() for k, m in modules.items() for n, t in m.state_dict().items()}
    save_file(tensors, str(new / "model.safetensors"))
    moments: dict[str, torch.Tensor] = {}
    for i, st in opt.state_dict()["state"].items():
        for name, value in st.items():
            moments[f"{i}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    save_file(moments, str(new / "optim.safetensors"))
    atomic_write_json(new / "state.json", {"step": step})
    shutil.rmtree(old, ignore_errors=True)
    if cur.exists():
        cur.rename(old)
    new.rename(cur)
    shutil.rmtree(old, ignore_errors=True)


def _load_checkpoint(run: Path, modules: dict[str, nn.Module], opt: torch.optim.Optimizer) -> int:
    """Restore the newest complete checkpoint; returns the steps it holds (0 when none)."""
    from safetensors.torch import load_file

    folder = next((d for d in (run / "checkpoint", run / "checkpoint.old") if (d / "state.json").is_file()), None)
    if folder is None:
        return 0
    try:
        tensors = load_file(str(folder / "model.safetensors"))
        moments = load_file(str(folder / "optim.safetensors"))
        step = int(json.loads((folder / "state.json").read_text())["step"])
    except (OSError, ValueError, KeyError) as exc:
        raise ProjectError(f"{folder}: unreadable checkpoint ({exc})", hint="pass --restart to start over") from exc
    for k, m in modules.items():
        prefix = f"{k}."
        m.load_state_dict({n[len(prefix) :]: t for n, t in tensors.items() if n.startswith(prefix)}, strict=True)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in moments.items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": opt.state_dict()["param_groups"]})
    return step


def _read_log(run: Path, upto: int) -> list[tuple[int, float, float]]:
    """The log's rows for steps <= ``upto`` (rows a crash left beyond the checkpoint are dropped)."""
    path = run / "log.csv"
    rows = []
    if path.is_file():
        for line in path.read_text().splitlines()[1:]:
            parts = line.split(",")
            if len(parts) == 3 and int(parts[0]) <= upto:
                rows.append((int(parts[0]), float(parts[1]), float(parts[2])))
    return rows


def _write_log(run: Path, rows: list[tuple[int, float, float]]) -> None:

    atomic_write_text(run / "log.csv", "step,loss,seconds\n" + "".join(f"{a},{b:.6g},{c:.3f}\n" for a, b, c in rows))


def _weights_hash(params: list[tuple[str, nn.Parameter]]) -> str:
    h = hashlib.sha256()
    for name, p in params:
        h.update(name.encode())
        h.update(p.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------- the loop
def train(
    settings: TrainSettings,
    run: Path,
    *,
    restart: bool = False,
    items: list[data.Item] | None = None,
    data_cache: Path | None = None,
    data_workers: int = 1,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Train one stage into ``run`` (resuming from its checkpoint) and export the result.
    ``data_workers`` processes render synthetic data (the same arrays as one).

    Returns a JSON-ready summary: steps, last loss, the export folder and its weights hash.
    """
    s = settings
    s.check()
    if run.exists() and not run.is_dir():
        raise UsageError(f"{run}: exists and is not a folder; choose another RUN_DIR")
    dist = join(s.device)  # torchrun's process group (DistributedDataParallel), or a group of one
    try:
        run.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ProjectError(f"{run}: cannot create the run folder ({exc.strerror or exc})") from exc
    recorded = run / "settings.json"
    if restart and dist.main:
        for p in ("checkpoint", "checkpoint.old", "checkpoint.new", "log.csv", "loss.png", "settings.json"):
            target = run / p
            shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(missing_ok=True)
    dist.barrier()
    if recorded.is_file():
        before = json.loads(recorded.read_text())
        now = asdict(s)
        defaults = asdict(TrainSettings(stage=s.stage))  # settings added since the run began
        changed = sorted(k for k in now if k not in RESUMABLE_CHANGES and before.get(k, defaults[k]) != now[k])
        if changed:
            raise ProjectError(
                f"{run}: holds a run with other settings ({', '.join(changed)})",
                hint="use another run folder, the same settings, or --restart",
            )
    elif dist.main:
        atomic_write_json(recorded, asdict(s))

    if items is None:
        if s.data == "synth":
            synth = (s.seed + 1000, s.synth_pairs, s.synth_frames, s.size)
            if data_cache is None:
                items = data.synth_items(*synth, workers=data_workers)
            else:  # rank 0 renders (or resumes) the cache; every rank then maps the same files
                items = data.open_cache(
                    dist.on_main(lambda: data.synth_cache(*synth, data_cache, workers=data_workers))
                )
        else:
            items = data.folder_items(Path(s.data), s.size, need_masks=s.stage == "mask" or s.region_weight > 0)
    modules, bundle = build_models(s)
    params = trainable_parameters(s, modules)
    if s.checkpointing and "unet" in modules:
        modules["unet"].gradient_checkpointing = True  # type: ignore[assignment]
    opt = torch.optim.AdamW([p for _, p in params], lr=s.lr, weight_decay=0.0)
    done = _load_checkpoint(run, modules, opt)
    rows = _read_log(run, done)
    trainee: nn.Module = Trainee(s.stage, {k: modules[k] for k in _trained_modules(s)}, bundle, s.region_weight)
    if dist.world > 1:
        trainee = nn.parallel.DistributedDataParallel(trainee)
    started = time.perf_counter()
    loss_value = rows[-1][1] if rows else float("nan")
    for step in range(done, s.steps):
        opt.zero_grad(set_to_none=True)
        total = 0.0
        for micro in range(s.grad_accum):
            batch = _draw(s, items, step, dist.rank, micro)
            loss = trainee(batch, _generator(s, step, dist.rank, micro)) / s.grad_accum
            if not torch.isfinite(loss):
                raise ProjectError(f"training diverged at step {step + 1} (loss {loss.item()})", hint="lower --lr")
            loss.backward()
            total += float(loss.detach())
        torch.nn.utils.clip_grad_norm_([p for _, p in params], 1.0)
        for group in opt.param_groups:
            group["lr"] = learning_rate(s, step)
        opt.step()
        loss_value = total
        rows.append((step + 1, total, time.perf_counter() - started))
        last = step + 1 == s.steps
        if (step + 1) % s.checkpoint_every == 0 or last:
            if dist.main:
                _save_checkpoint(run, modules, opt, step + 1)
                _write_log(run, rows)
                plot_losses(rows, run / "loss.png", title=f"mfollow train --stage {s.stage}")
            dist.barrier()
        if callback is not None:
            callback({"step": step + 1, "steps": s.steps, "loss": total})
    digest = _weights_hash(params)
    if dist.world > 1:
        atomic_write_json(run / f"rank-{dist.rank}.json", {"rank": dist.rank, "weights_sha256": digest})
    export = _export(s, run, modules, bundle, items) if dist.main else None
    dist.barrier()
    return {
        "stage": s.stage,
        "steps": s.steps,
        "resumed_from": done,
        "loss": loss_value,
        "export": None if export is None else str(export),
        "weights_sha256": digest,
        "world_size": dist.world,
        "seconds": round(time.perf_counter() - started, 3),
    }


def learning_rate(s: TrainSettings, step: int) -> float:
    """The learning rate of (0-based) ``step``: ``--lr`` throughout, or a cosine from ``--lr`` at
    the first step towards 0 after the last (lr * (1 + cos(pi * step / steps)) / 2). The cosine
    spans the run's current ``--steps``: continuing a run with more steps stretches what is left."""
    if s.lr_schedule == "cosine":
        return s.lr * 0.5 * (1.0 + math.cos(math.pi * step / s.steps))
    return s.lr


def _trained_modules(s: TrainSettings) -> tuple[str, ...]:
    """The modules inside the trainee (and, launched by torchrun, under DistributedDataParallel)."""
    return {"vae": ("vae",), "mask": ("segdit",), "image": ("unet", "poctr"), "video": ("unet", "poctr")}[s.stage]


def _export(s: TrainSettings, run: Path, modules: dict[str, nn.Module], bundle: Any, items: list[data.Item]) -> Path:
    """Save the trained model for use: ``RUN/segdit`` or ``RUN/bundle`` (replaced atomically)."""

    if s.stage == "mask":
        return export_segdit(modules["segdit"], run / "segdit")
    if s.stage == "vae":
        from mfollow.training.export import fit_latent_scale

        fit_latent_scale(bundle.vae, items, s.seed, s.device)
    bundle.unet.motion_bypass = False
    return export_bundle(bundle, run / "bundle")
