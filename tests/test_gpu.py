"""The same pipeline on a CUDA device (skipped where there is none; CI has none).

Each test runs a CPU reference and the CUDA run with TF32 turned off, so both compute in float32
and differ only by kernel rounding: sampling, an edit interrupted and resumed, and one training
step of each stage.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mfollow.edit.inputs import EditInputs
from mfollow.edit.resume import StateStore
from mfollow.edit.run import run_edit
from mfollow.edit.settings import EditSettings
from mfollow.io.video import read_frames
from mfollow.models.bundle import ModelBundle
from mfollow.sampling.state import SamplerSettings
from mfollow.synth import make_pair
from mfollow.synth.files import write_pair
from mfollow.training import TrainSettings, train
from mfollow.training import data as D

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

FAST = SamplerSettings(steps=3, cfg=2.0, guidance="paper", guidance_scale=1.0, window=8, overlap=3)


@pytest.fixture(autouse=True)
def _float32() -> Iterator[None]:
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pair")
    write_pair(make_pair(2, frames=12, size=64, camera="pan"), out)
    return out


def _inputs(pair: Path) -> EditInputs:
    return EditInputs(
        pair / "source.mp4", pair / "source_poses.json", pair / "edit_poses.json", pair / "source_masks",
        pair / "edit_masks",
    )  # fmt: skip


def _frames(path: Path) -> np.ndarray:
    return np.stack(list(read_frames(path))).astype(np.int16)


def test_edit_on_cuda_matches_cpu_and_resumes_bit_identically(tmp_path: Path, pair: Path) -> None:
    s_cpu = EditSettings(sampler=FAST, short_side=64)
    s_gpu = EditSettings(sampler=FAST, short_side=64, device="cuda")
    run_edit(ModelBundle.random("tiny", seed=0).eval(), _inputs(pair), s_cpu, tmp_path / "cpu.mp4")
    report = run_edit(ModelBundle.random("tiny", seed=0).eval(), _inputs(pair), s_gpu, tmp_path / "gpu.mp4")
    assert report["frames"] == 12 and report["windows"] == [[0, 8], [4, 12]]
    diff = np.abs(_frames(tmp_path / "cpu.mp4") - _frames(tmp_path / "gpu.mp4"))
    assert diff.mean() < 1.0 and diff.max() <= 16  # 8-bit frames after a lossy encode

    store = StateStore(tmp_path / "state.safetensors", "key")

    def interrupt(event: dict) -> None:
        if event["step"] == 2:
            raise KeyboardInterrupt

    bundle = ModelBundle.random("tiny", seed=0).eval()
    with pytest.raises(KeyboardInterrupt):
        run_edit(bundle, _inputs(pair), s_gpu, tmp_path / "resumed.mp4", store=store, progress=interrupt)
    resumed = run_edit(bundle, _inputs(pair), s_gpu, tmp_path / "resumed.mp4", store=store)
    assert resumed["resumed_from_step"] == 2
    diff = np.abs(_frames(tmp_path / "gpu.mp4") - _frames(tmp_path / "resumed.mp4"))
    assert diff.max() == 0  # deterministic kernels (mfollow.runtime.determinism): bit-identical on CUDA too


@pytest.mark.parametrize("stage", ["vae", "image", "video", "mask"])
def test_training_on_cuda_matches_cpu(stage: str, tmp_path: Path) -> None:
    """Batches and noise are drawn on the CPU, so the first step's loss is the same computation
    on either device."""
    items = D.synth_items(5, 2, 6, 64)
    base = dict(stage=stage, steps=1, batch=2, lr=1e-3, size=64, clip_length=3, synth_pairs=2, synth_frames=6)
    cpu = train(TrainSettings(**base), tmp_path / "cpu", items=items)  # type: ignore[arg-type]
    gpu = train(TrainSettings(**base, device="cuda"), tmp_path / "gpu", items=items)  # type: ignore[arg-type]
    assert gpu["loss"] == pytest.approx(cpu["loss"], rel=1e-4)
    assert (tmp_path / "gpu" / ("segdit" if stage == "mask" else "bundle")).is_dir()


def test_mixed_precision_on_cuda_is_finite_and_near_float32(tmp_path: Path, pair: Path) -> None:
    """--dtype auto on CUDA: the networks in bfloat16 (float16 before Ampere), the latents and
    guidance in float32; the frames stay near float32's."""
    from mfollow.runtime.devices import auto_dtype

    half = auto_dtype("cuda")
    assert half in ("bfloat16", "float16")
    s32 = EditSettings(sampler=FAST, short_side=64, device="cuda")
    s16 = EditSettings(sampler=FAST, short_side=64, device="cuda", dtype=half)
    run_edit(ModelBundle.random("tiny", seed=0).eval(), _inputs(pair), s32, tmp_path / "f32.mp4")
    report = run_edit(ModelBundle.random("tiny", seed=0).eval(), _inputs(pair), s16, tmp_path / "f16.mp4")
    assert report["dtype"] == half
    diff = np.abs(_frames(tmp_path / "f32.mp4") - _frames(tmp_path / "f16.mp4"))
    assert diff.mean() < 2.0 and diff.max() <= 48


def test_offload_on_cuda_moves_each_model_in_its_phase(tmp_path: Path, pair: Path) -> None:
    """--offload on CUDA: hooks see only the phase's models with their weights on the GPU, and
    the frames are bit-identical to the run with every model resident."""
    bundle = ModelBundle.random("tiny", seed=0).eval()
    seen: set[tuple[str, frozenset[str]]] = set()

    def on_gpu() -> frozenset[str]:
        return frozenset(n for n, m in bundle.modules().items() if next(m.parameters()).is_cuda)

    watched = {**bundle.modules(), "vae": bundle.vae.decoder}
    hooks = [m.register_forward_pre_hook(lambda m, a, n=n: seen.add((n, on_gpu()))) for n, m in watched.items()]
    s = EditSettings(sampler=FAST, short_side=64, device="cuda")
    try:
        run_edit(bundle, _inputs(pair), replace(s, offload=True), tmp_path / "offload.mp4")
    finally:
        for h in hooks:
            h.remove()
    assert seen == {("image_encoder", frozenset({"image_encoder"})), ("poctr", frozenset({"poctr", "unet"})),
                    ("unet", frozenset({"unet"})), ("vae", frozenset({"vae"}))}  # fmt: skip
    run_edit(ModelBundle.random("tiny", seed=0).eval(), _inputs(pair), s, tmp_path / "resident.mp4")
    assert (tmp_path / "offload.mp4").read_bytes() == (tmp_path / "resident.mp4").read_bytes()


@pytest.mark.parametrize("checkpointing", [True, False])
def test_the_planners_estimate_bounds_the_peak_on_cuda(tmp_path: Path, pair: Path, checkpointing: bool) -> None:
    """What the memory planner expects of a tiny edit (the networks and the sampling or decoding,
    mfollow.edit.plan.estimate) is at least the CUDA allocator's peak while it runs, with and
    without activation checkpointing."""
    from mfollow.edit.plan import Footprint, estimate
    from mfollow.models.presets import TINY

    s = EditSettings(sampler=FAST, short_side=64, device="cuda", checkpointing=checkpointing, decode_chunk=4)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    run_edit(ModelBundle.random("tiny", seed=0).eval(), _inputs(pair), s, tmp_path / "o.mp4")
    peak = torch.cuda.max_memory_allocated() - base
    w = Footprint(FAST.window, 64, 64, "float32", kind="cuda")
    need = estimate(TINY, w, checkpointing=checkpointing, offload=False, batch_passes=True, decode_chunk=4)
    assert 0 < peak <= need, (peak, need)
