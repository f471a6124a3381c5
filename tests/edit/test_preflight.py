"""Preflight: bad inputs, options and outputs are refused before any model loads, and no output
can be an input. The runs here ask for ``--preset sd15`` with a ``--weights`` folder that holds
none of its components: had a command reached the model load it would exit 3, so an exit 2/4/5
proves the check came first."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from clirun import one_line_error, run

from mfollow.preprocess.pose.backends import mediapipe_available


@pytest.fixture(scope="module")
def world(synth_world: Callable[..., Path]) -> Path:
    root = synth_world(6, 8, "none")
    (root / "no-weights").mkdir(exist_ok=True)
    return root


def given(world: Path, *extra: str) -> list[str]:
    p = world / "pair"
    return [
        "--source-poses", str(p / "source_poses.json"), "--edit-poses", str(p / "edit_poses.json"),
        "--source-masks", str(p / "source_masks"), "--edit-masks", str(p / "edit_masks"),
        "--preset", "sd15", "--weights", str(world / "no-weights"), "--size", "64", "--steps", "1", "-q", *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_output_that_is_an_input_is_refused(world: Path, tmp_path: Path) -> None:
    src = tmp_path / "src.mp4"
    src.write_bytes((world / "pair" / "source.mp4").read_bytes())
    before = src.read_bytes()
    (tmp_path / "link.mp4").symlink_to(src)
    os.link(src, tmp_path / "hard.mp4")
    for out in (src, tmp_path / "link.mp4", tmp_path / "hard.mp4", tmp_path / "sub" / ".." / "src.mp4"):
        one_line_error(run("edit", str(src), "-o", str(out), *given(world)), 2, "is the input SRC")
    tgt = world / "pair" / "target.mp4"
    one_line_error(run("edit", str(src), str(tgt), "-o", str(tgt), *given(world)), 2, "is the input TGT")
    ok = ["-o", str(tmp_path / "ok.mp4"), "-p", str(tmp_path / "p")]  # the control: passes preflight
    one_line_error(run("long", str(src), *ok, *given(world)), 3, "'motionfollower' not found")
    assert src.read_bytes() == before


@pytest.mark.slow
def test_bad_outputs_and_inputs_before_the_model(world: Path, tmp_path: Path) -> None:
    src = str(world / "pair" / "source.mp4")
    folder = tmp_path / "adir.mp4"
    folder.mkdir()
    one_line_error(run("edit", src, "-o", str(folder), *given(world)), 4, "is a folder")
    one_line_error(run("edit", src, "-o", "/proc/x/out.mp4", *given(world)), 4, "cannot write")
    one_line_error(run("long", src, "-o", "/proc/x/out.mp4", "-p", str(tmp_path / "p"), *given(world)), 4)
    one_line_error(run("edit", src, "-o", str(tmp_path / "out.txt"), *given(world)), 2, ".mp4")
    one_line_error(run("edit", src, "-o", str(tmp_path / "o.mp4"), *given(world, "--size", "100")), 2, "multiple")
    missing_tgt = str(tmp_path / "no-target.mp4")
    one_line_error(run("edit", src, missing_tgt, "-o", str(tmp_path / "o.mp4"), *given(world)), 4, "no-target.mp4")
    not_video = tmp_path / "notes.mp4"
    not_video.write_text("hello")
    one_line_error(run("edit", str(not_video), "-o", str(tmp_path / "o.mp4"), *given(world)), 4, "notes.mp4")
    one_line_error(run("edit", "--batch", str(tmp_path / "none.jsonl"), "--shard", "0/2", *given(world)), 2, "K <= N")
    images = given(world, "--edit-poses", str(world / "pair" / "edit_masks"), "--warp-person")  # a folder of images
    one_line_error(run("edit", src, "-o", str(tmp_path / "o.mp4"), *images), 2, "folder of pose images")
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.slow
def test_corrupt_checkpoint_is_a_project_error(world: Path, tmp_path: Path) -> None:
    project = tmp_path / "proj"
    (project / "long").mkdir(parents=True)
    (project / "long" / "state.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    args = [str(world / "pair" / "source.mp4"), "-o", str(tmp_path / "o.mp4"), "-p", str(project)]
    one_line_error(run("long", *args, *given(world)), 5, "unreadable checkpoint", "--restart")


@pytest.mark.slow
def test_batch_paths_are_relative_to_the_jobs_file(world: Path, tmp_path: Path) -> None:
    p = world / "pair"
    jobs_dir = tmp_path / "jobs"
    jobs_dir.mkdir()
    for name in ("source.mp4", "source_poses.json", "edit_poses.json"):
        (jobs_dir / name).write_bytes((p / name).read_bytes())
    common = {"source_poses": "source_poses.json", "edit_poses": "edit_poses.json", "frames": 4,
              "source_masks": str(p / "source_masks"), "edit_masks": str(p / "edit_masks")}  # fmt: skip
    jobs = jobs_dir / "jobs.jsonl"
    options = ["--preset", "tiny", "--weights", str(world / "bundle"), "--size", "64", "--steps", "1", "-q"]

    def write(*lines: dict[str, object]) -> None:
        jobs.write_text("".join(json.dumps({**common, **line}) + "\n" for line in lines))

    write({"source": "source.mp4", "output": "a.mp4"}, {"source": "source.mp4", "output": "source.mp4"})
    before = (jobs_dir / "source.mp4").read_bytes()
    one_line_error(run("edit", "--batch", str(jobs), *options, cwd=tmp_path), 2, "job 1", "input of job 0")
    write({"source": "source.mp4", "output": "a.mp4"}, {"source": "source.mp4", "output": "sub/../a.mp4"})
    one_line_error(run("edit", "--batch", str(jobs), *options, cwd=tmp_path), 2, "also the output of job 0")
    assert (jobs_dir / "source.mp4").read_bytes() == before and not (jobs_dir / "a.mp4").exists()
    write({"source": "source.mp4", "output": "out/a.mp4"})
    r = run("edit", "--batch", str(jobs), *options, cwd=tmp_path)  # run from another folder
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["ok"] and (jobs_dir / "out" / "a.mp4").is_file()


@pytest.mark.slow
def test_auto_pose_backend_reuses_poses_made_by_hand(world: Path, tmp_path: Path) -> None:
    """The headline flow on a machine without DWPose: poses made first into the default project
    are reused by `edit` whatever made them; the JSON says which backend."""
    p = world / "pair"
    out = tmp_path / "out.mp4"
    project = tmp_path / "out.mfollow"  # edit's default project for -o out.mp4
    env = {"XDG_DATA_HOME": str(tmp_path / "no-weights")}
    for role in ("source", "target"):
        r = run("pose", str(p / f"{role}.mp4"), "--role", role, "--keypoints", str(p / f"{role}_poses.json"),
                "-p", str(project), "-q", env=env)  # fmt: skip
        assert r.returncode == 0, r.stderr
    r = run("edit", str(p / "source.mp4"), str(p / "target.mp4"), "-o", str(out), "--source-masks",
            str(p / "source_masks"), "--preset", "tiny", "--weights", str(world / "bundle"), "--size", "64",
            "--steps", "1", "--json", env=env)  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["stages"] == {"pose-source": "reused", "pose-target": "reused", "align": "miss", "mask": "miss"}
    assert doc["pose_backend"] == {"source": "file", "target": "file"}
    assert doc["mask_backend"] == {"source": "file", "edit": "warp" if mediapipe_available() else "hull"}
    assert "weights 'dwpose' not found" not in r.stderr


def test_choose_pose_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from mfollow.preprocess.pose import backends
    from mfollow.runtime.errors import WeightsError

    installed = {"mediapipe": True, "onnxruntime": True}
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if installed.get(name) else real(name, *a)
    )
    monkeypatch.setattr(backends, "dwpose_available", lambda weights=None: False)
    chosen = backends.choose_pose_backend("auto")
    assert chosen.backend == "mediapipe" and "weights download dwpose" in (chosen.note or "")
    monkeypatch.setattr(backends, "dwpose_available", lambda weights=None: True)
    assert backends.choose_pose_backend("auto") == backends.PoseBackendChoice("dwpose")
    monkeypatch.setattr(backends, "dwpose_available", lambda weights=None: False)
    monkeypatch.setattr(backends, "mediapipe_available", lambda: False)
    with pytest.raises(WeightsError, match="no pose estimator") as err:
        backends.choose_pose_backend("auto")
    assert "dwpose" in str(err.value) and "mediapipe" in str(err.value)
    with pytest.raises(WeightsError, match="mediapipe is not installed"):
        backends.choose_pose_backend("mediapipe")


def test_writable_folder_check_leaves_no_folder_behind(tmp_path: Path) -> None:
    from mfollow.io.checks import check_writable_folder
    from mfollow.runtime.errors import MediaError

    check_writable_folder(tmp_path / "a" / "b" / "c", "-o x")
    assert list(tmp_path.iterdir()) == []  # probed where a would be made; nothing made
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("mine")
    check_writable_folder(tmp_path / "mine", "-o x")
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["keep.txt"]  # an existing folder stays as it was
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(MediaError, match="cannot write in"):
        check_writable_folder(tmp_path / "file" / "sub", "-o x")
    with pytest.raises(MediaError, match=r"cannot write in .*\(a name longer than 255 bytes"):
        check_writable_folder(tmp_path / "ok" / ("x" * 300) / "y", "-o x")  # mkdir would fail there
    (tmp_path / "gone").symlink_to(tmp_path / "nowhere")
    with pytest.raises(MediaError, match=r"cannot write in .*gone is a broken link"):
        check_writable_folder(tmp_path / "gone" / "sub", "-o x")  # mkdir would fail there too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "gone", "mine"]


def test_processes_probing_one_missing_folder_at_once_all_pass(tmp_path: Path) -> None:
    """Every rank under torchrun runs the preflight, so several processes probe the same new
    project folder at once: one's removal of the folder it made must not fail another's probe (a
    3-rank `long` failed with exit 5 on a loaded machine, "cannot write in"). Threads stand in for
    the processes (the file system calls release the GIL)."""
    import threading

    from mfollow.io.checks import check_writable_folder

    errors: list[BaseException] = []
    for round_ in range(60):
        start = threading.Barrier(4)
        folder = tmp_path / f"r{round_}" / "project"

        def probe(folder: Path = folder, start: threading.Barrier = start) -> None:
            start.wait()
            for _ in range(20):
                try:
                    check_writable_folder(folder, "project")
                except BaseException as exc:  # collected: the assertion names them
                    errors.append(exc)

        threads = [threading.Thread(target=probe) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    assert all(not any(p.iterdir()) for p in tmp_path.rglob("*") if p.is_dir())  # no probe file left


@pytest.mark.slow
def test_weights_asked_for_must_hold_the_model(world: Path, tmp_path: Path) -> None:
    """An explicit ``--weights`` (or ``MFOLLOW_WEIGHTS``) that is missing, holds no model, or holds
    an unreadable bundle is exit 3 naming it, before any work and with nothing written; the bundled
    demo model runs only when nothing was asked for, and ``--json`` says which weights ran."""
    import shutil

    p = world / "pair"
    base = [str(p / "source.mp4"), str(p / "target.mp4"), "-o", str(tmp_path / "o.mp4"), "--size", "64",
            "--source-poses", str(p / "source_poses.json"), "--edit-poses", str(p / "edit_poses.json"),
            "--source-masks", str(p / "source_masks"), "--edit-masks", str(p / "edit_masks")]  # fmt: skip
    junk = tmp_path / "junk"
    shutil.copytree(world / "bundle", junk)
    (junk / "vae" / "diffusion_pytorch_model.safetensors").write_bytes(b"not weights")
    (tmp_path / "empty").mkdir()
    cases = [
        (["--weights", str(tmp_path / "nowhere")], {}, "no such folder"),
        (["--weights", str(tmp_path / "empty")], {}, "no model there"),
        (["--weights", str(junk)], {}, "diffusion_pytorch_model.safetensors: not a readable safetensors file"),
        ([], {"MFOLLOW_WEIGHTS": str(tmp_path / "nowhere")}, "MFOLLOW_WEIGHTS="),
    ]
    for extra, env, needle in cases:
        one_line_error(run("edit", *base, *extra, env=env), 3, needle)
    assert not (tmp_path / "o.mp4").exists() and not (tmp_path / "o.mfollow").exists()
    r = run("edit", *base, "--weights", str(world / "bundle"), "--steps", "1", "--json", "-q")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["weights_source"] == str(world / "bundle")


def test_from_pretrained_refuses_what_load_would_fail_on(world: Path, tmp_path: Path) -> None:
    import shutil

    from mfollow import MotionFollowerPipeline
    from mfollow.runtime.errors import WeightsError

    junk = tmp_path / "junk"
    shutil.copytree(world / "bundle", junk)
    (junk / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(
        (b"\x10" + b"\0" * 7) + b"{}"
    )  # header too long
    with pytest.raises(WeightsError, match=r"unet/diffusion_pytorch_model\.safetensors"):
        MotionFollowerPipeline.from_pretrained(junk)
    with pytest.raises(WeightsError, match="no such folder"):
        MotionFollowerPipeline.from_pretrained(tmp_path / "nowhere")


BAD_REQUESTS = [  # (CLI options, the same as request fields, the error)
    (["--steps", "0"], {"steps": 0}, "--steps 0: must be at least 1"),
    (["--start", "-1"], {"start": -1}, "--start -1: must be at least 0"),
    (["--seed", "-3"], {"seed": -3}, "--seed -3: must be at least 0"),
    (["--frames", "0"], {"frames": 0}, "--frames 0: must be at least 1"),
    (["--cfg", "-1"], {"cfg": -1.0}, "--cfg -1.0: must not be negative"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("argv", "fields", "message"), BAD_REQUESTS)
def test_the_cli_a_jobs_file_and_the_api_refuse_a_bad_request_alike(
    world: Path, tmp_path: Path, argv: list[str], fields: dict, message: str
) -> None:
    """One validation (``EditRequest.check``) for every way in: the same line and exit code 2 from
    the CLI, from a jobs-file line and from ``MotionFollowerPipeline``, before any stage or model."""
    from mfollow import MotionFollowerPipeline
    from mfollow.runtime.errors import UsageError

    p = world / "pair"
    src, tgt, out = p / "source.mp4", p / "target.mp4", tmp_path / "o.mp4"
    one_line_error(run("edit", str(src), str(tgt), "-o", str(out), *argv), 2, message)
    job = {"source": str(src), "target": str(tgt), "output": str(out), **fields}
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps(job) + "\n")
    r = run("edit", "--batch", str(jobs), "--weights", str(world / "bundle"))
    assert r.returncode == 2, r.stderr
    assert json.loads(r.stdout)["error"].startswith(message) and message in r.stderr
    pipe = MotionFollowerPipeline.from_pretrained(world / "bundle")
    with pytest.raises(UsageError) as caught:
        pipe(src, tgt, out, **fields)
    assert str(caught.value).startswith(message) and caught.value.exit_code == 2
    assert not out.exists() and not (tmp_path / "o.mfollow").exists()


def test_the_request_checks_types_choices_and_combinations() -> None:
    from mfollow.edit.request import EditRequest
    from mfollow.runtime.errors import UsageError

    EditRequest().check()
    bad = [
        ({"steps": "five"}, "--steps: a whole number is needed"),
        ({"steps": True}, "--steps: a whole number is needed"),
        ({"size": 100}, "--size 100 is not a multiple of 64"),
        ({"guidance_scale": float("nan")}, "--guidance-step: a finite number is needed"),
        ({"fit": "stretch"}, "--fit 'stretch': choose from trim, loop, hold"),
        ({"device": "tpu"}, "--device 'tpu': choose from cpu, cuda, mps"),
        ({"camera": "yes"}, "--camera: true or false is needed"),
        ({"source": "a.mp4"}, "SRC: a path is needed"),
        ({"long": True, "window": 8, "overlap": 8}, "--overlap 8 must be smaller than --window 8"),
        ({"long": True, "noise": "release"}, "--noise release draws the release's noise for one window"),
    ]
    for fields, message in bad:
        with pytest.raises(UsageError) as caught:
            EditRequest(**fields).check()  # type: ignore[arg-type]
        assert str(caught.value).startswith(message), (fields, str(caught.value))


def test_a_size_that_cannot_fit_is_refused_in_the_preflight(world: Path, tmp_path: Path) -> None:
    """--size 64000 would need terabytes: refused with the estimate, in the preflight, within a
    second (it used to run the stages for minutes and die with an allocation failure, exit 1)."""
    import time

    from mfollow import MotionFollowerPipeline
    from mfollow.runtime.errors import UsageError

    pipe = MotionFollowerPipeline.from_pretrained(world / "bundle")
    p = world / "pair"
    given_paths = {k: p / v for k, v in (("source_poses", "source_poses.json"), ("edit_poses", "edit_poses.json"),
                                         ("source_masks", "source_masks"), ("edit_masks", "edit_masks"))}  # fmt: skip
    started = time.perf_counter()
    with pytest.raises(UsageError, match=r"--size 64000: a 8-frame window at 64000x64000 needs about [\d.]+ TiB"):
        pipe(p / "source.mp4", p / "target.mp4", tmp_path / "o.mp4", size=64000, **given_paths)
    assert time.perf_counter() - started < 1.0
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.slow
def test_a_corrupt_project_and_a_missing_device_are_found_before_any_stage(world: Path, tmp_path: Path) -> None:
    import torch

    p = world / "pair"
    project = tmp_path / "bad.mfollow"
    project.mkdir()
    (project / "mfollow.json").write_text("{garbage")
    staged = [str(p / "source.mp4"), str(p / "target.mp4"), "-o", str(tmp_path / "o.mp4"), "-p", str(project)]
    one_line_error(run("edit", *staged), 5, "corrupt manifest")
    assert sorted(q.name for q in project.iterdir()) == ["mfollow.json"]  # no stage ran, nothing written
    if not torch.cuda.is_available():
        one_line_error(run("edit", *staged[:4], "--device", "cuda"), 2, "--device cuda: no CUDA device")


def test_a_batch_checks_each_jobs_memory_before_the_model_loads(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mfollow.edit.batch import run_batch
    from mfollow.edit.request import EditRequest
    from mfollow.models import loading

    monkeypatch.setattr(loading, "load_bundle", lambda *a, **k: pytest.fail("the model loaded"))
    p = world / "pair"
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"source": str(p / "source.mp4"), "target": str(p / "target.mp4"),
                                "output": str(tmp_path / "o.mp4")}) + "\n")  # fmt: skip
    results: list[dict] = []
    code = run_batch(jobs, EditRequest(weights=world / "bundle", size=64000), emit=results.append)
    assert code == 2 and "--size 64000: a 8-frame window at 64000x64000 needs about" in results[0]["error"]
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.slow
def test_a_frame_folder_output_never_replaces_what_is_not_a_previous_output(world: Path, tmp_path: Path) -> None:
    """``-o NAME`` without a suffix is a folder of PNG frames: a folder holding anything else, the
    source's own frame folder, or a file of that name are refused in the preflight."""
    src = str(world / "pair" / "source.mp4")
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "notes.txt").write_text("mine")
    one_line_error(run("edit", src, "-o", str(kept), *given(world)), 2, "'notes.txt' and is not a previous output")
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):  # a folder of frames as SRC, named as the writer names its frames
        (frames / f"{i:05d}.png").write_bytes((world / "pair" / "source_masks" / f"frame_{i:05d}.png").read_bytes())
    one_line_error(run("edit", str(frames), "-o", str(frames), *given(world)), 2, "is the input SRC")
    (tmp_path / "afile").write_text("x")
    one_line_error(run("edit", src, "-o", str(tmp_path / "afile"), *given(world)), 4, "is a file")
    assert (kept / "notes.txt").read_text() == "mine" and len(list(frames.iterdir())) == 3
