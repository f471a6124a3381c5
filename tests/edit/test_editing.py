"""The edit pipeline (tiny random bundle, CPU): timing, audio, length policies, sources, resume."""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from media import make_video
from PIL import Image

from mfollow.edit.inputs import (
    EditInputs,
    case_inputs,
    open_clip,
)
from mfollow.edit.resume import StateStore, run_key
from mfollow.edit.run import run_edit
from mfollow.edit.settings import EditSettings
from mfollow.io.video import probe, read_frames
from mfollow.models.bundle import ModelBundle
from mfollow.preprocess.masks.files import mask_name, write_mask
from mfollow.runtime.errors import MediaError, ProjectError, UsageError
from mfollow.sampling.state import SamplerSettings


@dataclass
class Clip:
    """A whole clip in memory (for inspection and tests; editing reads :class:`ClipSource`)."""

    frames: np.ndarray
    source_poses: np.ndarray
    edit_poses: np.ndarray
    source_masks: np.ndarray
    edit_masks: np.ndarray
    timestamps: list[int]


def load_clip(inputs: EditInputs, s: EditSettings) -> Clip:
    """Every input of a clip read whole (what the edit reads window by window)."""
    c = open_clip(inputs, s)
    parts = {
        name: getattr(c, name).get(0, c.n)
        for name in ("frames", "source_poses", "edit_poses", "source_masks", "edit_masks")
    }
    return Clip(timestamps=c.timestamps, **parts)


FAST = SamplerSettings(steps=2, cfg=2.0, guidance="paper", guidance_scale=1.0)


def inputs_of(pair: Path, **over: Path) -> EditInputs:
    base = dict(
        source=pair / "source.mp4", source_poses=pair / "source_poses.json", edit_poses=pair / "edit_poses.json",
        source_masks=pair / "source_masks", edit_masks=pair / "edit_masks", target=pair / "target.mp4",
    )  # fmt: skip
    return EditInputs(**{**base, **over})  # type: ignore[arg-type]


def settings(**over: object) -> EditSettings:
    return EditSettings(**{"sampler": FAST, "short_side": 64, **over})  # type: ignore[arg-type]


def test_edit_keeps_source_timing_and_is_reproducible(tmp_path: Path, bundle: ModelBundle, pair: Path) -> None:
    report = run_edit(bundle, inputs_of(pair), settings(), tmp_path / "a.mp4")
    info, src = probe(tmp_path / "a.mp4"), probe(pair / "source.mp4")
    assert report["frames"] == 12 and info.frame_count == 12
    assert info.timestamps == src.timestamps and info.time_base == src.time_base
    run_edit(bundle, inputs_of(pair), settings(), tmp_path / "b.mp4")
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()
    run_edit(bundle, inputs_of(pair), settings(seed=1), tmp_path / "c.mp4")
    assert (tmp_path / "a.mp4").read_bytes() != (tmp_path / "c.mp4").read_bytes()


def test_one_window_long_equals_edit(tmp_path: Path, bundle: ModelBundle, pair: Path) -> None:
    run_edit(bundle, inputs_of(pair), settings(max_frames=24), tmp_path / "edit.mp4")
    store = StateStore(tmp_path / "state.safetensors", "k")
    run_edit(bundle, inputs_of(pair), settings(), tmp_path / "long.mp4", store=store)
    assert (tmp_path / "edit.mp4").read_bytes() == (tmp_path / "long.mp4").read_bytes()
    assert not store.path.exists()  # a finished run leaves no checkpoint


def test_interrupted_run_resumes_bit_identically(tmp_path: Path, bundle: ModelBundle, pair: Path) -> None:
    s = settings(sampler=SamplerSettings(steps=4, cfg=2.0, window=8, overlap=3))
    run_edit(bundle, inputs_of(pair), s, tmp_path / "full.mp4")
    store = StateStore(tmp_path / "state.safetensors", "run-key")

    def interrupt(event: dict) -> None:
        if event["step"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_edit(bundle, inputs_of(pair), s, tmp_path / "out.mp4", store=store, progress=interrupt)
    assert store.path.is_file() and not (tmp_path / "out.mp4").exists()
    with pytest.raises(ProjectError, match="different inputs or settings"):
        StateStore(store.path, "other-key").load()
    report = run_edit(bundle, inputs_of(pair), s, tmp_path / "out.mp4", store=store)
    assert report["resumed_from_step"] == 2 and report["windows"] == [[0, 8], [4, 12]]
    assert (tmp_path / "out.mp4").read_bytes() == (tmp_path / "full.mp4").read_bytes()


def test_spill_lives_in_the_work_dir_and_stale_ones_go(
    tmp_path: Path, bundle: ModelBundle, pair: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several windows spill their conditioning into ``work_dir`` (the project's ``long/``, which
    `mfollow clean` empties), not the system's temporary folder; a killed run's spill goes."""
    import tempfile

    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))
    work = tmp_path / "proj" / "long"
    (work / ".spill-killed").mkdir(parents=True)
    seen: list[list[str]] = []

    def look(event: dict) -> None:
        seen.append(sorted(p.name for p in work.iterdir()))

    s = settings(sampler=SamplerSettings(steps=2, cfg=2.0, window=8, overlap=3))
    run_edit(bundle, inputs_of(pair), s, tmp_path / "o.mp4", progress=look, work_dir=work)
    assert len(seen[0]) == 1 and seen[0][0].startswith(".spill-") and seen[0] != [".spill-killed"]
    assert list(work.iterdir()) == [] and list(system_tmp.iterdir()) == []


def test_run_key_ignores_what_only_shapes_the_written_frames(pair: Path) -> None:
    key = run_key(inputs_of(pair), settings(), "w")
    assert run_key(inputs_of(pair), settings(composite=False, composite_margin=3, output_size="working"), "w") == key
    assert run_key(inputs_of(pair), settings(seed=1), "w") != key and run_key(inputs_of(pair), settings(), "v") != key
    assert run_key(inputs_of(pair, edit_masks=pair / "source_masks"), settings(), "w") != key


def test_audio_is_carried_over(tmp_path: Path, bundle: ModelBundle, pair: Path) -> None:
    src = make_video(tmp_path / "talk.mp4", n=12, width=64, height=64, audio="aac", time_base=Fraction(1, 24))
    report = run_edit(bundle, inputs_of(pair, source=src), settings(), tmp_path / "out.mp4")
    info = probe(tmp_path / "out.mp4")
    assert report["frames"] == 12 and info.audio[0].codec == "aac"
    assert abs(info.audio[0].duration - probe(src).duration) <= 1 / 24


def test_length_policies(tmp_path: Path, bundle: ModelBundle, pair: Path) -> None:
    short = tmp_path / "short_masks"
    short.mkdir()
    for p in sorted((pair / "edit_masks").iterdir())[:5]:
        (short / p.name).write_bytes(p.read_bytes())
    poses = tmp_path / "short_poses"
    poses.mkdir()
    for i in range(5):  # pose images: a folder works as well as JSON
        Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(poses / f"frame_{i}.png")
    inputs = inputs_of(pair, edit_poses=poses, edit_masks=short)
    assert len(load_clip(inputs, settings(fit="trim")).frames) == 5
    loop = load_clip(inputs, settings(fit="loop"))
    assert len(loop.frames) == 12 and np.array_equal(loop.edit_poses[7], loop.edit_poses[2])
    hold = load_clip(inputs, settings(fit="hold"))
    assert np.array_equal(hold.edit_masks[11], hold.edit_masks[4])
    with pytest.raises(UsageError, match="more than one window"):
        load_clip(inputs_of(pair), settings(max_frames=8))
    with pytest.raises(MediaError, match="5 source masks for 12 frames"):
        load_clip(inputs_of(pair, source_masks=short), settings())
    part = load_clip(inputs_of(pair), settings(start=4, frames=5))
    assert len(part.frames) == 5 and part.timestamps[0] == 0
    np.testing.assert_array_equal(part.frames, read_frames(pair / "source.mp4", 4, 9))


def test_still_image_source_takes_the_target_timing(tmp_path: Path, bundle: ModelBundle, pair: Path) -> None:
    frame = read_frames(pair / "source.mp4", 0, 1)[0]
    Image.fromarray(frame).save(tmp_path / "person.png")
    masks = tmp_path / "m"
    masks.mkdir()
    write_mask(masks / mask_name(0), np.asarray(Image.open(pair / "source_masks" / "frame_00000.png")) > 0)
    poses = tmp_path / "p"
    poses.mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(poses / "frame_0.png")
    inputs = inputs_of(pair, source=tmp_path / "person.png", source_poses=poses, source_masks=masks)
    run_edit(bundle, inputs, settings(), tmp_path / "out.mp4")
    out, tgt = probe(tmp_path / "out.mp4"), probe(pair / "target.mp4")
    assert out.frame_count == tgt.frame_count and out.timestamps == tgt.timestamps


def test_official_case_layout(tmp_path: Path, bundle: ModelBundle, pair: Path) -> None:
    case = tmp_path / "case-1"
    frames = read_frames(pair / "source.mp4")
    for name in ("source_images", "source_poses", "target_aligned_poses", "source_masks", "predicted_masks"):
        (case / name).mkdir(parents=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(case / "source_images" / f"frame_{i}.png")
        for folder in ("source_poses", "target_aligned_poses"):
            Image.fromarray(np.zeros_like(f)).save(case / folder / f"frame_{i}.png")
        (case / "source_masks" / f"frame_{i}.png").write_bytes((pair / "source_masks" / mask_name(i)).read_bytes())
        (case / "predicted_masks" / f"frame_{i}.png").write_bytes((pair / "edit_masks" / mask_name(i)).read_bytes())
    report = run_edit(bundle, case_inputs(case), settings(), tmp_path / "out.mp4")
    info = probe(tmp_path / "out.mp4")
    assert report["frames"] == 12 and info.average_fps == 8  # the official cases' frame rate
    with pytest.raises(MediaError, match="not an official case folder"):
        case_inputs(tmp_path)


def test_output_at_the_source_size(tmp_path: Path, bundle: ModelBundle, pair: Path) -> None:
    from mfollow.io.video import read_frames as frames_of

    wide = make_video(tmp_path / "wide.mp4", n=12, width=96, height=64, time_base=Fraction(1, 24))
    inputs = inputs_of(pair, source=wide)
    report = run_edit(bundle, inputs, settings(composite=False), tmp_path / "src.mp4")
    assert report["size"] == [96, 64] and report["working_size"] == [128, 64]
    assert (probe(tmp_path / "src.mp4").width, probe(tmp_path / "src.mp4").height) == (96, 64)
    run_edit(bundle, inputs, settings(output_size="working"), tmp_path / "work.mp4")
    assert (probe(tmp_path / "work.mp4").width, probe(tmp_path / "work.mp4").height) == (128, 64)
    # the rows that the crop cut away (top and bottom) are the source's own
    out, src = frames_of(tmp_path / "src.mp4").astype(int), frames_of(wide).astype(int)
    assert np.abs(out[:, :4] - src[:, :4]).mean() < 6 and np.abs(out[:, 20:44] - src[:, 20:44]).mean() > 20


@pytest.fixture
def written(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """The frames every edit hands to its video encoder (before the lossy encoding)."""
    from mfollow.edit import output
    from mfollow.io.video import VideoWriter

    frames: list[np.ndarray] = []

    class Recording(VideoWriter):
        def write(self, frame: np.ndarray, pts: int) -> None:
            frames.append(frame.astype(int))
            super().write(frame, pts)

    monkeypatch.setattr(output, "VideoWriter", Recording)
    return frames


@pytest.mark.parametrize("output_size", ["source", "working"])
def test_composite_keeps_the_source_outside_the_people(
    tmp_path: Path, bundle: ModelBundle, pair: Path, output_size: str, written: list[np.ndarray]
) -> None:
    from mfollow.edit.compositing import person_alpha
    from mfollow.preprocess.masks.files import read_masks

    a = run_edit(bundle, inputs_of(pair), settings(output_size=output_size), tmp_path / "a.mp4")
    comp, written[:] = np.stack(written), []
    b = run_edit(bundle, inputs_of(pair), settings(output_size=output_size, composite=False), tmp_path / "b.mp4")
    raw = np.stack(written)
    assert a["composite_margin"] == 1 and b["composite_margin"] is None
    src = read_frames(pair / "source.mp4").astype(int)  # 64x64: the working size too
    alpha = person_alpha(read_masks(pair / "edit_masks"), read_masks(pair / "source_masks"), 1)
    away, people, band = alpha == 0, alpha == 1, (alpha > 0) & (alpha < 1)
    assert away.mean() > 0.5 and people.mean() > 0.02 and band.any()
    assert np.array_equal(comp[away], src[away]) and np.abs(raw - src)[away].mean() > 20  # the source's own
    assert np.array_equal(comp[people], raw[people])  # the model's own
    # in the band, between the two: alpha * raw + (1 - alpha) * source, rounded
    expected = alpha[..., None] * raw + (1 - alpha[..., None]) * src
    assert np.abs(comp - expected)[band].max() <= 1


def test_composite_at_the_size_of_a_cropped_source(
    tmp_path: Path, bundle: ModelBundle, pair: Path, written: list[np.ndarray]
) -> None:
    wide = make_video(tmp_path / "wide.mp4", n=12, width=96, height=64, time_base=Fraction(1, 24))
    run_edit(bundle, inputs_of(pair, source=wide), settings(), tmp_path / "comp.mp4")
    comp, written[:] = np.stack(written), []
    run_edit(bundle, inputs_of(pair, source=wide), settings(composite=False), tmp_path / "raw.mp4")
    raw, src = np.stack(written), read_frames(wide).astype(int)
    assert comp.shape == raw.shape == src.shape == (12, 64, 96, 3)
    same = (comp == src).all(-1)  # (F, H, W): pixels that are exactly the source's
    assert same[:, :4].all() and same[:, -4:].all()  # rows the crop cut away
    assert 0.5 < same.mean() < 0.95 and (raw == src).all(-1).mean() < 0.3  # most of the rest, not all
    people = (comp == raw).all(-1) & ~same
    assert people.mean() > 0.02  # somewhere the model's own pixels, untouched


def test_warp_pastes_the_source_person_moved_into_the_edit_pose(
    tmp_path: Path, bundle: ModelBundle, pair: Path, written: list[np.ndarray]
) -> None:
    """--warp: on the pixels :func:`warp_person` moves inside M_e, the output is the source
    person's own pixels (half over the model's on their edge), which land on the world's
    ground-truth edit person; everywhere else, the model's."""
    from mfollow.edit.compositing import composite, feathered_alpha
    from mfollow.preprocess.masks.files import read_masks
    from mfollow.preprocess.masks.morphology import erode
    from mfollow.preprocess.pose.keypoints import PoseSequence
    from mfollow.preprocess.pose.warp import warp_person

    s = settings(output_size="working", composite=False, sampler=SamplerSettings(steps=1, cfg=1.0, guidance="none"))
    a = run_edit(bundle, inputs_of(pair), replace(s, warp_person=True), tmp_path / "a.mp4")
    warped, written[:] = np.stack(written), []
    b = run_edit(bundle, inputs_of(pair), s, tmp_path / "b.mp4")
    raw, written[:] = np.stack(written), []
    assert a["warp_person"] and not b["warp_person"]
    src = read_frames(pair / "source.mp4")  # 64x64: the working size too
    M_r, M_e = read_masks(pair / "source_masks"), read_masks(pair / "edit_masks")
    sp, ep = PoseSequence.load(pair / "source_poses.json"), PoseSequence.load(pair / "edit_poses.json")
    pasted = np.zeros(M_r.shape, dtype=bool)
    for f in range(12):
        person, moved = warp_person(src[f], M_r[f], sp, ep, f)
        pasted[f] = moved & M_e[f]
        assert (moved & ~M_e[f]).any()  # the warp reaches past M_e here: left out
        expected = composite(person, raw[f].astype(np.uint8), feathered_alpha(pasted[f]))
        assert np.array_equal(warped[f], expected)
    assert np.array_equal(warped[~pasted], raw[~pasted])  # the model's own everywhere else
    assert pasted.sum() > 0.7 * M_e.sum()
    truth = read_frames(pair / "edit_gt.mp4").astype(int)
    inner = erode(pasted)  # wholly the source's pixels
    assert np.abs(warped - truth)[inner].mean() < 16 < 40 < np.abs(raw - truth)[inner].mean()
    # pose images carry no keypoints to move along: refused before sampling
    folder = tmp_path / "edit_pose_images"
    folder.mkdir()
    for i, frame in enumerate(load_clip(inputs_of(pair), s).edit_poses):
        Image.fromarray(frame).save(folder / f"frame_{i}.png")
    with pytest.raises(UsageError, match="pose images"):
        run_edit(bundle, inputs_of(pair, edit_poses=folder), replace(s, warp_person=True), tmp_path / "c.mp4")
    assert not written and not (tmp_path / "c.mp4").exists()


def test_deterministic_kernels_only_on_cuda_and_restored(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    import torch

    from mfollow.runtime.determinism import deterministic_kernels

    assert not torch.are_deterministic_algorithms_enabled()
    with deterministic_kernels(torch.device("cpu")):
        assert not torch.are_deterministic_algorithms_enabled()
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    with deterministic_kernels(torch.device("cuda")):  # only flips flags; needs no GPU
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.is_deterministic_algorithms_warn_only_enabled()
        assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"  # the user's value is kept
    assert not torch.are_deterministic_algorithms_enabled()


def test_official_defaults_to_the_releases_50_steps() -> None:
    """Under ``--guidance official`` the default is the release's 50 steps (its schedule is written
    in step indices of a 50-step run); an explicit ``--steps`` wins; other guidance keeps the
    preset's default. The run's settings and the progress total agree."""
    from mfollow.edit.plan import MemoryPlan
    from mfollow.edit.request import OFFICIAL_STEPS, EditRequest
    from mfollow.models.presets import SD15, TINY

    for spec in (TINY, SD15):
        assert EditRequest(guidance="official").sampling_steps(spec) == OFFICIAL_STEPS == 50
        assert EditRequest(guidance="official", steps=7).sampling_steps(spec) == 7
        assert EditRequest(guidance="paper").sampling_steps(spec) == spec.sampling_steps(None)
    inputs = EditInputs(Path("s.mp4"), Path("a.json"), Path("b.json"), Path("m"), Path("e"))
    assert EditRequest(guidance="official").settings(TINY, inputs, "cpu", None, MemoryPlan()).sampler.steps == 50


def test_release_noise_runs_one_window_only(tmp_path: Path, bundle: ModelBundle, pair: Path) -> None:
    """``noise="release"``: the edit runs and differs from keyed noise; several windows (or a
    resumable store) are refused, and ``long`` with it is refused in the preflight."""
    from mfollow.edit.preflight import preflight
    from mfollow.edit.request import EditRequest

    keyed = run_edit(bundle, inputs_of(pair), settings(), tmp_path / "keyed.mp4")
    release = run_edit(bundle, inputs_of(pair), settings(noise="release"), tmp_path / "release.mp4")
    assert keyed["frames"] == release["frames"] == 12
    assert (tmp_path / "keyed.mp4").read_bytes() != (tmp_path / "release.mp4").read_bytes()
    windows = settings(noise="release", sampler=replace(FAST, window=8, overlap=3))
    with pytest.raises(UsageError, match="one window"):
        run_edit(bundle, inputs_of(pair), windows, tmp_path / "w.mp4")
    request = EditRequest(source=pair / "source.mp4", target=pair / "target.mp4", output=tmp_path / "l.mp4",
                          long=True, noise="release")  # fmt: skip
    with pytest.raises(UsageError, match="--noise release"):
        preflight(request)


def test_offload_keeps_each_model_on_the_device_only_in_its_phase(
    tmp_path: Path, bundle: ModelBundle, pair: Path
) -> None:
    """``offload``: forward hooks see each model run only while it is the phase's (the CLIP encoder
    alone for the context, PoCtr and the U-Net's ReCtr for the conditioning, the U-Net alone while
    sampling, the VAE alone to decode), and the frames are the ones made with every model resident."""
    calls: list[tuple[str, frozenset[str]]] = []
    watched = {**bundle.modules(), "vae": bundle.vae.decoder}  # the VAE decodes through .decode()
    hooks = [
        module.register_forward_pre_hook(lambda m, a, name=name: calls.append((name, bundle.resident)))
        for name, module in watched.items()
    ]
    try:
        report = run_edit(bundle, inputs_of(pair), settings(offload=True), tmp_path / "offload.mp4")
    finally:
        for h in hooks:
            h.remove()
    phases = {name: {frozenset(r) for n, r in calls if n == name} for name in bundle.modules()}
    assert phases == {
        "image_encoder": {frozenset({"image_encoder"})},
        "poctr": {frozenset({"poctr", "unet"})},
        "unet": {frozenset({"unet"})},  # sampling: nothing else on the device
        "vae": {frozenset({"vae"})},
    }
    assert [n for n, _ in calls if n == "poctr"] == ["poctr"] * 2 * len(report["windows"])  # once per window
    run_edit(bundle, inputs_of(pair), settings(), tmp_path / "resident.mp4")
    assert bundle.resident == frozenset(bundle.modules())
    assert (tmp_path / "offload.mp4").read_bytes() == (tmp_path / "resident.mp4").read_bytes()
    assert run_key(inputs_of(pair), settings(offload=True), "w") == run_key(inputs_of(pair), settings(), "w")


@pytest.mark.parametrize("rotation", [0, 90])
def test_a_video_and_a_folder_of_its_frames_reach_the_same_working_frames(tmp_path: Path, rotation: int) -> None:
    """The same pixels give the same working frames (so the same edit) whether a video or a folder
    of frames holds them: one resize for both (found when the ComfyUI nodes, which pass frame
    folders, differed from `mfollow edit` by up to 61/255 on photographs)."""
    from mfollow.edit.inputs import _cover_crop
    from mfollow.io.media import media_frames
    from mfollow.io.video import FramePolicy, iter_frames, working_geometry

    rng = np.random.default_rng(0)
    make_video(tmp_path / "v.mp4", n=3, width=150, height=100, rotation=rotation,
               frames=[rng.integers(0, 256, (100, 150, 3), dtype=np.uint8) for _ in range(3)])  # fmt: skip
    decoded = list(media_frames(tmp_path / "v.mp4"))  # upright, at the source's size
    h, w = decoded[0].shape[:2]
    geo = working_geometry(w, h, FramePolicy(short_side=64))
    assert (geo.scaled_w, geo.scaled_h) != (w, h)  # a resize happens
    from_video = list(iter_frames(tmp_path / "v.mp4", policy=FramePolicy(short_side=64)))
    from_images = [_cover_crop(Image.fromarray(f), (geo.width, geo.height)) for f in decoded]
    assert all(np.array_equal(a, b) for a, b in zip(from_video, from_images, strict=True))
