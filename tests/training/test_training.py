"""Training: which parameters each stage trains, hybrid batches, bit-identical resume, the run
folder, folder data, distributed data parallel on two CPU processes."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from mfollow.runtime.errors import MediaError, ProjectError, UsageError
from mfollow.training import TrainSettings, train
from mfollow.training import data as D
from mfollow.training.loop import build_models, trainable_parameters

SIZE, FRAMES, PAIRS = 64, 6, 3


@pytest.fixture(scope="module")
def items(tmp_path_factory: pytest.TempPathFactory) -> list[D.Item]:
    return D.synth_items(5, PAIRS, FRAMES, SIZE, tmp_path_factory.mktemp("cache"))


def settings(stage: str, **kw: object) -> TrainSettings:
    base = dict(
        stage=stage, steps=1, batch=2, lr=1e-3, size=SIZE, clip_length=3, synth_pairs=PAIRS, synth_frames=FRAMES
    )
    return TrainSettings(**(base | kw))  # type: ignore[arg-type]


def _state(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "checkpoint" / "model.safetensors"))


def _perturbed_init(tmp: Path, stage: str) -> Path | None:
    """A starting point whose every parameter is non-zero noise (zero-initialised projections
    would otherwise block the gradient of the layers before them in a first step)."""
    s = settings(stage)
    modules, bundle = build_models(s)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in modules.values():
            for p in m.parameters():
                p.add_(0.01 * torch.randn(p.shape, generator=g))
    if stage == "mask":
        modules["segdit"].save_pretrained(str(tmp / "init"), safe_serialization=True)
    else:
        bundle.save_pretrained(tmp / "init")
    return tmp / "init"


@pytest.mark.parametrize("stage", ["vae", "image", "video", "mask"])
def test_one_step_changes_exactly_the_stage_parameters(stage: str, items: list[D.Item], tmp_path: Path) -> None:
    init = _perturbed_init(tmp_path, stage)
    s = settings(stage, init=str(init))
    modules, _ = build_models(s)
    before = {f"{k}.{n}": t.clone() for k, m in modules.items() for n, t in m.state_dict().items()}
    trainable = {n for n, _ in trainable_parameters(s, modules)}
    train(s, tmp_path / "run", items=items)
    after = _state(tmp_path / "run")
    assert set(after) == set(before)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed <= trainable  # nothing frozen moved
    # Every trained parameter moved, except the query side of cross-attention: the context is one
    # CLIP token per frame, so its softmax is constant and queries get no gradient (exactly 0 or
    # rounding noise).
    query_side = {k for k in trainable if ".attn2.to_q." in k or ("transformer_blocks" in k and ".norm2." in k)}
    assert trainable - changed <= query_side
    assert len(trainable - query_side) > 0.9 * len(trainable)
    if stage == "image":
        assert not any(".motion_modules." in k for k in changed) and any(k.startswith("poctr.") for k in changed)
        assert any("appearance_adapter" in k for k in changed)  # ReCtr
    if stage == "video":
        assert changed and all(".motion_modules." in k for k in changed)


def test_parallel_rendering_gives_the_same_data() -> None:
    one, two = D.synth_items(5, 2, 4, 32), D.synth_items(5, 2, 4, 32, workers=2)
    for a, b in zip(one, two, strict=True):
        for name in ("frames", "poses", "masks", "edit_frames", "edit_poses", "edit_masks"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name


def _same_items(a: list[D.Item], b: list[D.Item]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for name in D.FIELDS:
            assert np.array_equal(getattr(x, name), getattr(y, name)), name


def test_the_data_cache_is_memory_mapped_and_holds_the_rendered_arrays(tmp_path: Path) -> None:
    fresh = D.synth_items(5, 3, 4, 32)
    cached = D.synth_items(5, 3, 4, 32, tmp_path)
    (folder,) = tmp_path.glob("synth-*")
    assert folder.is_dir() and sorted(p.name for p in folder.iterdir()) == sorted(f"{f}.npy" for f in D.FIELDS)
    assert all(isinstance(getattr(i, f), np.memmap) for i in cached for f in D.FIELDS)  # read from disk, lazily
    _same_items(cached, fresh)
    _same_items(D.synth_items(5, 3, 4, 32, tmp_path), fresh)  # a second run reads the folder


def test_an_interrupted_cache_render_resumes_where_it_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rendered: list[int] = []
    real = D._synth_item

    def crashing(seed: int, count: int, frames: int, size: int, index: int) -> D.Item:
        if index == 3 and not rendered.count(-1):
            rendered.append(-1)
            raise KeyboardInterrupt  # the user's Ctrl-C during pair 3
        rendered.append(index)
        return real(seed, count, frames, size, index)

    monkeypatch.setattr(D, "_synth_item", crashing)
    with pytest.raises(KeyboardInterrupt):
        D.synth_cache(5, 5, 2, 32, tmp_path, every=2)
    (left,) = tmp_path.iterdir()  # the partial folder only: no complete cache, the lock released
    assert left.name.endswith(".partial") and json.loads((left / "rendered.json").read_text()) == {"pairs": 2}
    folder = D.synth_cache(5, 5, 2, 32, tmp_path, every=2)
    # pairs 0-1 were recorded complete; 2 is rendered again, 3 failed once, then 3 and 4
    assert rendered == [0, 1, 2, -1, 2, 3, 4]
    assert not list(tmp_path.glob("*.partial"))
    monkeypatch.setattr(D, "_synth_item", real)
    _same_items(D.open_cache(folder), D.synth_items(5, 5, 2, 32))


def test_a_data_cache_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a folder"):
        D.synth_items(5, 2, 3, 32, tmp_path / "file")
    assert (tmp_path / "file").read_text() == "x"


def test_a_damaged_cache_is_one_clear_error(tmp_path: Path) -> None:
    folder = D.synth_cache(5, 2, 3, 32, tmp_path)
    (folder / "masks.npy").write_bytes(b"not an array")
    with pytest.raises(MediaError, match="delete the folder"):
        D.synth_items(5, 2, 3, 32, tmp_path)


def test_hybrid_batches_are_image_pairs_at_the_stated_rate(items: list[D.Item]) -> None:
    n = 2000
    kinds = [D.video_stage_batch(items, D.batch_rng(0, step, 0, 0), 1, 3)[0] for step in range(n)]
    rate = sum(kinds) / n
    assert abs(rate - D.IMAGE_PAIR_RATE) < 3 * (0.4 * 0.6 / n) ** 0.5
    image = D.video_stage_batch(items, D.batch_rng(0, kinds.index(True), 0, 0), 2, 3)[1]
    clips = D.video_stage_batch(items, D.batch_rng(0, kinds.index(False), 0, 0), 2, 3)[1]
    assert image["target"].shape == (2, 1, SIZE, SIZE, 3) and clips["target"].shape == (2, 3, SIZE, SIZE, 3)


def test_pairs_come_from_one_clip(items: list[D.Item]) -> None:
    """A target is another frame/clip of the reference's video, or its ground-truth edit at the
    same frame index — never material from another item."""
    rng = D.batch_rng(1, 0, 0, 0)
    for _ in range(50):
        b = D.clip_batch(items, rng, 1, 2)
        ref, tgt = b["reference"][0], b["target"][0]
        owner = [i for i in items if any(np.array_equal(ref[0], f) for f in i.frames)]
        assert owner
        item = owner[0]
        start = next(s for s in range(FRAMES) if np.array_equal(item.frames[s], ref[0]))
        same_edit = item.edit_frames is not None and np.array_equal(tgt, item.edit_frames[start : start + 2])
        other_clip = any(np.array_equal(tgt, item.frames[s : s + 2]) for s in range(FRAMES - 1) if s != start)
        assert same_edit or other_clip


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resume_is_bit_identical(schedule: str, items: list[D.Item], tmp_path: Path) -> None:
    s = settings("image", steps=4, checkpoint_every=2, grad_accum=2, lr_schedule=schedule)
    full = train(s, tmp_path / "full", items=items)
    if schedule == "constant":  # continued with a larger --steps
        part = train(replace(s, steps=2), tmp_path / "part", items=items)
        assert part["steps"] == 2
    else:  # interrupted after the checkpoint of step 2 (the cosine spans --steps: same command again)

        def stop(event: dict[str, object]) -> None:
            if event["step"] == 2:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            train(s, tmp_path / "part", items=items, callback=stop)
    resumed = train(s, tmp_path / "part", items=items)
    assert resumed["resumed_from"] == 2
    a, b = _state(tmp_path / "full"), _state(tmp_path / "part")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert full["weights_sha256"] == resumed["weights_sha256"]
    log = (tmp_path / "part" / "log.csv").read_text().splitlines()
    assert log[0] == "step,loss,seconds" and [r.split(",")[0] for r in log[1:]] == ["1", "2", "3", "4"]
    full_log = (tmp_path / "full" / "log.csv").read_text().splitlines()
    assert [r.split(",")[1] for r in log[1:]] == [r.split(",")[1] for r in full_log[1:]]  # same losses
    assert (tmp_path / "part" / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_learning_rate_schedules() -> None:
    from mfollow.training.loop import learning_rate

    s = settings("image", steps=10, lr=1e-3)
    assert [learning_rate(s, k) for k in (0, 5, 9)] == [1e-3] * 3
    c = replace(s, lr_schedule="cosine")
    assert learning_rate(c, 0) == 1e-3 and learning_rate(c, 5) == pytest.approx(5e-4)
    values = [learning_rate(c, k) for k in range(10)]
    assert all(a > b > 0 for a, b in itertools.pairwise(values))
    with pytest.raises(UsageError, match="unknown --lr-schedule"):
        replace(s, lr_schedule="step").check()


def test_run_folder_refuses_other_settings(items: list[D.Item], tmp_path: Path) -> None:
    train(settings("mask"), tmp_path / "run", items=items)
    with pytest.raises(ProjectError, match="other settings \\(lr\\)"):
        train(settings("mask", lr=5e-4), tmp_path / "run", items=items)
    again = train(settings("mask", lr=5e-4), tmp_path / "run", items=items, restart=True)
    assert again["resumed_from"] == 0
    # a run folder from before a setting existed resumes when the setting keeps its default
    recorded = tmp_path / "run" / "settings.json"
    old = {k: v for k, v in json.loads(recorded.read_text()).items() if k not in ("lr_schedule", "vae")}
    recorded.write_text(json.dumps(old))
    assert train(settings("mask", lr=5e-4, steps=2), tmp_path / "run", items=items)["resumed_from"] == 1
    with pytest.raises(ProjectError, match="other settings \\(lr_schedule\\)"):
        train(settings("mask", lr=5e-4, steps=3, lr_schedule="cosine"), tmp_path / "run", items=items)


def test_exports_load(items: list[D.Item], tmp_path: Path) -> None:
    from mfollow.models.bundle import ModelBundle
    from mfollow.preprocess.masks.segdit import SegDiT

    r = train(settings("vae", steps=2), tmp_path / "vae", items=items)
    bundle = ModelBundle.from_pretrained(Path(r["export"]))
    scale = bundle.vae.config.scaling_factor
    assert scale != 0.18215 and 0.01 < scale < 100  # fitted to the trained latents
    r = train(settings("mask"), tmp_path / "mask", items=items)
    assert isinstance(SegDiT.from_pretrained(r["export"]), SegDiT)


def test_folder_data(tmp_path: Path) -> None:
    from mfollow.synth import make_pair
    from mfollow.synth.files import write_pair

    write_pair(make_pair(3, frames=4, size=64), tmp_path / "pair")
    data = tmp_path / "data" / "clip1"
    data.mkdir(parents=True)
    (data / "video.mp4").write_bytes((tmp_path / "pair" / "source.mp4").read_bytes())
    (data / "poses.json").write_bytes((tmp_path / "pair" / "source_poses.json").read_bytes())
    with pytest.raises(UsageError, match="masks/ missing"):
        D.folder_items(tmp_path / "data", 32, need_masks=True)
    (tmp_path / "pair" / "source_masks").rename(data / "masks")
    items = D.folder_items(tmp_path / "data", 32, need_masks=True)
    assert items[0].frames.shape == (4, 32, 32, 3) and items[0].masks.shape == (4, 32, 32)  # type: ignore[union-attr]
    assert items[0].masks.any() and items[0].edit_frames is None  # type: ignore[union-attr]
    r = train(settings("mask", data=str(tmp_path / "data"), size=32), tmp_path / "run")
    assert r["steps"] == 1
    with pytest.raises(UsageError, match="not found"):
        D.folder_items(tmp_path / "nowhere", 32)


def test_vae_from_another_bundle(items: list[D.Item], tmp_path: Path) -> None:
    """--vae swaps in another bundle's autoencoder: the image stage keeps it frozen and exports it
    (with its latent scale); the vae and mask stages refuse the option."""
    from mfollow.models.bundle import ModelBundle

    init = _perturbed_init(tmp_path, "image")
    other = ModelBundle.random("tiny", seed=3)
    other.vae.register_to_config(scaling_factor=0.77)
    other.save_pretrained(tmp_path / "other")
    r = train(settings("image", init=str(init), vae=str(tmp_path / "other")), tmp_path / "run", items=items)
    out = ModelBundle.from_pretrained(Path(r["export"]))
    assert out.latent_scale == pytest.approx(0.77)
    for (name, a), b in zip(out.vae.state_dict().items(), other.vae.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    mine = ModelBundle.from_pretrained(init).vae.state_dict()
    assert any(not torch.equal(a, b) for a, b in zip(out.vae.state_dict().values(), mine.values(), strict=True))
    for stage in ("vae", "mask"):
        with pytest.raises(UsageError, match="--vae applies"):
            settings(stage, vae=str(tmp_path / "other")).check()


@pytest.mark.slow
def test_cli_train_errors_and_json(tmp_path: Path) -> None:
    from clirun import mfollow, one_line_error

    one_line_error(mfollow("train", str(tmp_path / "r"), "--stage", "mask", "--size", "50"), 2, "multiple of 32")
    no_init = ["train", str(tmp_path / "r0"), "--stage", "mask", "--init", str(tmp_path / "none")]
    one_line_error(mfollow(*no_init), 3, "not a SegDiT folder")
    # found before any data is rendered: with the default 64 pairs of 48 frames that takes minutes
    one_line_error(
        mfollow("train", str(tmp_path / "r0"), "--stage", "image", "--init", str(tmp_path)), 3, "not a model bundle"
    )
    one_line_error(mfollow("train", str(tmp_path / "r0"), "--stage", "image", "--preset", "bogus"), 2, "bogus")
    (tmp_path / "file").write_text("x")
    one_line_error(mfollow("train", str(tmp_path / "file"), "--stage", "vae", "--steps", "1"), 2, "not a folder")
    one_line_error(
        mfollow("train", str(tmp_path / "r"), "--stage", "mask", "--data", str(tmp_path / "x")), 2, "not found"
    )
    args = ["train", str(tmp_path / "r2"), "--stage", "mask", "--steps", "2", "--batch", "2", "--size", "64"]
    args += ["--synth-pairs", "2", "--synth-frames", "4", "--clip-length", "2", "--json", "--progress", "none"]
    args += ["--data-workers", "2", "--data-cache", str(tmp_path / "cache")]
    r = mfollow(*args)
    assert r.returncode == 0, r.stderr
    assert [p.name[:6] for p in (tmp_path / "cache").iterdir()] == ["synth-"]  # complete, no lock left
    summary = json.loads(r.stdout)
    assert summary["steps"] == 2 and Path(summary["export"]).name == "segdit"
    one_line_error(mfollow(*args, "--lr", "1"), 5, "other settings (lr)")


@pytest.mark.slow
def test_distributed_two_processes_end_identical(tmp_path: Path) -> None:
    """torchrun, two CPU processes, gloo: both ranks end with the same weights, which moved."""
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "mfollow", "train", str(run), "--stage", "image", "--steps", "2", "--batch", "1"]
    cmd += ["--size", "64", "--synth-pairs", "2", "--synth-frames", "4", "--lr", "1e-3", "--progress", "none"]
    cmd += ["--data-cache", str(tmp_path / "cache")]  # rank 0 renders it, both ranks map it
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    (cache,) = (tmp_path / "cache").iterdir()
    assert cache.is_dir() and not cache.name.endswith(".partial")
    ranks = [json.loads((run / f"rank-{i}.json").read_text()) for i in (0, 1)]
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    single = train(settings("image", steps=2, batch=1, synth_frames=4, synth_pairs=2), tmp_path / "one")
    assert single["weights_sha256"] != ranks[0]["weights_sha256"]  # the two ranks saw different data


def test_settings_check_their_folders_before_any_data(tmp_path: Path) -> None:
    """`train` calls check() before it renders data, so these cost no time."""
    from mfollow.models.bundle import ModelBundle
    from mfollow.runtime.errors import WeightsError

    with pytest.raises(WeightsError, match="not a model bundle"):
        settings("image", init=str(tmp_path)).check()
    with pytest.raises(WeightsError, match="not a model bundle"):
        settings("image", vae=str(tmp_path)).check()
    with pytest.raises(UsageError, match="bogus"):
        settings("image", preset="bogus").check()
    with pytest.raises(UsageError, match="not found"):
        settings("image", data=str(tmp_path / "none")).check()
    ModelBundle.random("tiny", seed=0).save_pretrained(tmp_path / "tiny")
    with pytest.raises(UsageError, match="'tiny' bundle"):
        settings("image", preset="sd15", init=str(tmp_path / "tiny")).check()
    settings("image", init=str(tmp_path / "tiny")).check()


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_edit_rate_and_the_persons_region(rate: float, items: list[D.Item]) -> None:
    """--edit-rate 1 makes every target the ground-truth edit at the reference's frame index, 0
    never; ``region`` is the union of the reference's person mask and the target's (M_r ∪ M_e)."""
    rng = D.batch_rng(2, 0, 0, 0)
    for _ in range(30):
        b = D.clip_batch(items, rng, 1, 2, rate)
        ref, tgt, region = b["reference"][0], b["target"][0], b["region"][0]
        item = next(i for i in items if any(np.array_equal(ref[0], f) for f in i.frames))
        start = next(s for s in range(FRAMES) if np.array_equal(item.frames[s], ref[0]))
        assert item.edit_frames is not None and item.edit_masks is not None and item.masks is not None
        edit = np.array_equal(tgt, item.edit_frames[start : start + 2])
        assert edit == (rate == 1.0)
        if edit:
            assert np.array_equal(region, item.masks[start : start + 2] | item.edit_masks[start : start + 2])
        else:
            b0 = next(s for s in range(FRAMES - 1) if s != start and np.array_equal(tgt, item.frames[s : s + 2]))
            assert np.array_equal(region, item.masks[start : start + 2] | item.masks[b0 : b0 + 2])
        assert region.any() and not region.all()


def test_latent_region_marks_every_cell_a_masked_pixel_touches() -> None:
    from mfollow.training.loop import latent_region

    region = torch.zeros(1, 2, 32, 32, dtype=torch.bool)
    region[0, 0, 5, 9] = True  # cell (0, 1) of 8 x 8 cells
    region[0, 1, 31, 0] = True  # cell (3, 0)
    cells = latent_region(region, 8)
    assert cells.shape == (1, 1, 2, 4, 4)
    expected = torch.zeros(1, 1, 2, 4, 4)
    expected[0, 0, 0, 0, 1] = expected[0, 0, 1, 3, 0] = 1.0
    assert torch.equal(cells, expected)


def test_weighted_diffusion_loss_is_the_weighted_mean() -> None:
    """Weights of ones give the plain MSE; weights on one latent pixel give the MSE there alone."""
    from mfollow.models.bundle import ModelBundle
    from mfollow.training.objectives import alphas_cumprod, diffusion_loss

    bundle = ModelBundle.random("tiny", seed=0)
    unet, poctr = bundle.unet.eval(), bundle.poctr.eval()
    with torch.no_grad():  # a non-zero PoCtr output, so the pose matters to the prediction
        torch.nn.init.normal_(poctr.conv_out.weight, std=0.1)
    abar = alphas_cumprod(bundle.scheduler_config)
    z0 = torch.randn(2, 16, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    ref = torch.rand(2, 3, 1, 128, 128, generator=torch.Generator().manual_seed(2)) * 2 - 1
    pose = torch.rand(2, 3, 1, 128, 128, generator=torch.Generator().manual_seed(3))
    ctx = torch.randn(2, 1, 32, generator=torch.Generator().manual_seed(4))

    def loss(weight: torch.Tensor | None) -> torch.Tensor:
        with torch.no_grad():
            return diffusion_loss(unet, poctr, z0, ref, pose, ctx, abar, torch.Generator().manual_seed(5), weight)

    plain = loss(None)
    assert torch.allclose(loss(torch.ones(2, 1, 1, 16, 16)), plain, rtol=1e-6)
    assert torch.allclose(loss(torch.full((2, 1, 1, 16, 16), 3.0)), plain, rtol=1e-6)
    one = torch.zeros(2, 1, 1, 16, 16)
    one[1, 0, 0, 2, 3] = 1.0
    spot = loss(one)
    assert not torch.allclose(spot, plain)
    # the same draws, unweighted, at that latent pixel alone
    g = torch.Generator().manual_seed(5)
    t = torch.randint(0, len(abar), (2,), generator=g)
    eps = torch.randn(z0.shape, generator=g)
    keep = (torch.rand((2,), generator=g) >= 0.1).float()
    a = abar[t].float().view(2, 1, 1, 1, 1)
    zt = a.sqrt() * z0 + (1 - a).sqrt() * eps
    v = a.sqrt() * eps - (1 - a).sqrt() * z0
    with torch.no_grad():
        features = dict(pose_features=poctr(pose), appearance=unet.appearance_features(ref))
        pred = unet(zt, t, ctx * keep.view(2, 1, 1), **features)
    expected = ((pred.sample - v) ** 2)[1, :, 0, 2, 3].mean()
    assert torch.allclose(spot, expected, rtol=1e-5)


def test_region_weight_trains_and_is_checked(items: list[D.Item], tmp_path: Path) -> None:
    r = train(settings("image", region_weight=4.0, edit_rate=1.0), tmp_path / "run", items=items)
    assert r["steps"] == 1 and np.isfinite(r["loss"])
    with pytest.raises(UsageError, match="--region-weight applies"):
        settings("mask", region_weight=1.0).check()
    with pytest.raises(UsageError, match="--edit-rate"):
        settings("image", edit_rate=1.5).check()
    with pytest.raises(UsageError, match="--region-weight must"):
        settings("image", region_weight=-1.0).check()


@pytest.mark.slow
def test_vae_loss_weight() -> None:
    """The weighted L1 is sum(w |D(E(x)) - x|) / sum(w) plus the KL term; a uniform weight is the
    plain mean."""
    from mfollow.models.bundle import ModelBundle
    from mfollow.training.objectives import KL_WEIGHT, vae_loss

    vae = ModelBundle.random("tiny", seed=0).vae.float()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1

    def run(**kw: object) -> torch.Tensor:
        return vae_loss(vae, x, torch.Generator().manual_seed(2), **kw)  # type: ignore[arg-type]

    posterior = vae.encode(x).latent_dist
    recon = vae.decode(posterior.sample(generator=torch.Generator().manual_seed(2))).sample
    err = (recon - x).abs()
    full = run()
    assert torch.allclose(full, err.mean() + KL_WEIGHT * posterior.kl().mean(), rtol=1e-6)
    kl = KL_WEIGHT * posterior.kl().mean()
    assert torch.allclose(run(weight=torch.full((2, 1, 32, 32), 5.0)), err.mean() + kl, rtol=1e-6)
    spot = torch.zeros(2, 1, 32, 32)
    spot[1, 0, 4, 7] = 1.0
    assert torch.allclose(run(weight=spot), err[1, :, 4, 7].mean() + kl, rtol=1e-5)


def test_frame_batch_masks_keep_the_draws(items: list[D.Item]) -> None:
    """Asking for masks does not change which frames are drawn, and each mask is its frame's."""
    plain = D.frame_batch(items, np.random.default_rng(3), 6)
    both = D.frame_batch(items, np.random.default_rng(3), 6, masks=True)
    assert np.array_equal(plain["frame"], both["frame"]) and both["mask"].shape == (6, SIZE, SIZE)
    masks_of: dict[bytes, list[np.ndarray]] = {}
    for i in items:
        for pool, masks in ((i.frames, i.masks), (i.edit_frames, i.edit_masks)):
            for f in range(i.length):
                masks_of.setdefault(pool[f].tobytes(), []).append(masks[f])
    for frame, mask in zip(both["frame"], both["mask"], strict=True):
        assert any(np.array_equal(m, mask) for m in masks_of[frame.tobytes()])


def test_train_refuses_sizes_that_are_not_positive_multiples_of_32() -> None:
    from mfollow.runtime.errors import UsageError
    from mfollow.training import TrainSettings

    for size in (0, -32, 48):
        with pytest.raises(UsageError, match=f"--size {size} is not a positive multiple of 32"):
            TrainSettings(stage="vae", size=size).check()
