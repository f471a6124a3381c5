"""``mfollow train`` (registered by :mod:`mfollow.cli`): one training stage into a run folder."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from mfollow.cli.common import (
    DebugOpt,
    DeviceOpt,
    JsonOpt,
    ProgressOpt,
    QuietOpt,
    SeedOpt,
    emit_json,
    guard,
    renamed,
    stderr_line,
)
from mfollow.runtime.devices import check_device


class StageChoice(StrEnum):
    vae = "vae"
    image = "image"
    video = "video"
    mask = "mask"


class TrainPreset(StrEnum):
    tiny = "tiny"
    sd15 = "sd15"


class LrSchedule(StrEnum):
    constant = "constant"
    cosine = "cosine"


def train(
    run_dir: Annotated[Path, typer.Argument(help="Run folder: settings, checkpoint, log.csv, loss.png, the export.")],
    stage: Annotated[
        StageChoice, typer.Option("--stage", help="image (stage 1), video (stage 2), mask (SegDiT), vae.")
    ],
    preset: Annotated[TrainPreset, typer.Option("--preset", help="Network size.")] = TrainPreset.tiny,
    data: Annotated[
        str, typer.Option("--data", help="'synth' (the puppet world) or a folder of prepared videos.")
    ] = "synth",
    data_cache: Annotated[
        Path | None,
        typer.Option(
            "--data-cache",
            help="Folder keeping rendered synthetic data between runs (read memory-mapped; a render resumes).",
        ),
    ] = None,
    data_workers: Annotated[
        int, typer.Option("--data-workers", min=1, help="Synthetic data: processes rendering it (same data).")
    ] = 1,
    synth_pairs: Annotated[int, typer.Option("--synth-pairs", help="Synthetic data: number of puppet pairs.")] = 64,
    synth_frames: Annotated[int, typer.Option("--synth-frames", help="Synthetic data: frames per pair.")] = 48,
    init: Annotated[
        Path | None, typer.Option("--init", help="Start from this bundle (or SegDiT folder for --stage mask).")
    ] = None,
    vae: Annotated[
        Path | None,
        typer.Option("--vae", help="Stage image/video: take the autoencoder from this bundle instead of --init's."),
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="Total optimiser steps (raise it to continue a run).")] = 1000,
    batch: Annotated[int, typer.Option("--batch-size", help="Examples per step and process.")] = 8,
    batch_alias: Annotated[int | None, typer.Option("--batch", hidden=True)] = None,  # the old spelling
    grad_accum: Annotated[int, typer.Option("--grad-accum", help="Micro-batches accumulated per step.")] = 1,
    lr: Annotated[float, typer.Option("--lr", help="AdamW learning rate (the paper: 1e-5).")] = 1e-5,
    lr_schedule: Annotated[
        LrSchedule, typer.Option("--lr-schedule", help="constant, or cosine (down to 0 over --steps).")
    ] = LrSchedule.constant,  # type: ignore[assignment]
    size: Annotated[int, typer.Option("--size", help="Square frame size in pixels (a multiple of 32).")] = 128,
    clip_length: Annotated[int, typer.Option("--clip-length", help="Frames per clip (--stage video).")] = 8,
    checkpoint_every: Annotated[int, typer.Option("--checkpoint-every", help="Steps between checkpoints.")] = 100,
    segdit_size: Annotated[str, typer.Option("--segdit-size", help="SegDiT size: tiny or full.")] = "tiny",
    checkpointing: Annotated[
        bool, typer.Option("--checkpointing", help="Activation checkpointing in the U-Net (less memory).")
    ] = False,
    edit_rate: Annotated[
        float,
        typer.Option(
            "--edit-rate", help="Synthetic data: probability that a target is the ground-truth edit (0 to 1)."
        ),
    ] = 0.5,
    region_weight: Annotated[
        float,
        typer.Option(
            "--region-weight",
            help="Extra loss weight on the persons (image/video: M_r and M_e; vae: the frame's person).",
        ),
    ] = 0.0,
    restart: Annotated[bool, typer.Option("--restart", help="Discard the run's checkpoint and start over.")] = False,
    seed: SeedOpt = 0,
    device: DeviceOpt = "cpu",  # type: ignore[assignment]
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    progress: ProgressOpt = "auto",  # type: ignore[assignment]
    debug: DebugOpt = False,
) -> None:
    """Train one stage into a run folder (resumable: run the same command again).

    Example: mfollow train run/ --stage image --init vae/bundle. Launch with
    'torchrun --nproc-per-node N -m mfollow train ...' to train on N processes
    (DistributedDataParallel; gloo on CPU, nccl on CUDA).
    """
    with guard(debug):
        from mfollow.training import TrainSettings

        dev = getattr(device, "value", str(device))
        check_device(dev)
        settings = TrainSettings(
            stage=stage.value,  # type: ignore[arg-type]
            preset=preset.value,
            steps=steps,
            batch=renamed(batch, batch_alias, option="--batch-size", old="--batch", default=8),
            grad_accum=grad_accum,
            lr=lr,
            lr_schedule=lr_schedule.value,
            size=size,
            clip_length=clip_length,
            checkpoint_every=checkpoint_every,
            seed=seed,
            data=data if data == "synth" else str(Path(data).resolve()),
            synth_pairs=synth_pairs,
            synth_frames=synth_frames,
            init=None if init is None else str(init.resolve()),
            vae=None if vae is None else str(vae.resolve()),
            segdit_size=segdit_size,
            device=dev,
            checkpointing=checkpointing,
            edit_rate=edit_rate,
            region_weight=region_weight,
        )
        settings.check()  # before torch and the training loop load: a bad option costs no time
        from mfollow.runtime.distributed import is_main_process
        from mfollow.runtime.progress import Reporter
        from mfollow.training import train as run_training

        main = is_main_process()
        mode = getattr(progress, "value", str(progress))
        reporter = Reporter(mode, quiet=quiet or not main)  # type: ignore[arg-type]
        with reporter.task(f"train {stage.value}", steps) as tick:
            summary = run_training(
                settings,
                run_dir,
                restart=restart,
                data_cache=data_cache,
                data_workers=data_workers,
                callback=lambda e: tick(e["step"], e["steps"]),
            )
        if main:
            if json_out:
                emit_json(summary)
            else:
                stderr_line(
                    f"train {stage.value}: {summary['steps']} steps, loss {summary['loss']:.4g}; "
                    f"exported to {summary['export']}",
                    quiet=quiet,
                )


def register(app: typer.Typer) -> None:
    app.command()(train)
