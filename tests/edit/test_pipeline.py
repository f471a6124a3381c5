"""The Python API, ``MotionFollowerPipeline``: the CLI's defaults and stages, typed errors, one path."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from clirun import mfollow

from mfollow import EditRequest, MotionFollowerPipeline
from mfollow.io.video import probe
from mfollow.models.presets import get_preset
from mfollow.runtime.errors import MediaError, UsageError


@pytest.fixture(scope="module")
def world(synth_world: Callable[..., Path]) -> Path:
    return synth_world(6, 12)


def given(world: Path) -> dict[str, Path]:
    p = world / "pair"
    return {"source_poses": p / "source_poses.json", "edit_poses": p / "edit_poses.json",
            "source_masks": p / "source_masks", "edit_masks": p / "edit_masks"}  # fmt: skip


@pytest.mark.slow
def test_same_output_as_the_cli(world: Path, tmp_path: Path) -> None:
    p = world / "pair"
    pipe = MotionFollowerPipeline.from_pretrained(world / "bundle")
    report = pipe(p / "source.mp4", p / "target.mp4", output=tmp_path / "api.mp4", steps=2, size=64,
                  frames=6, **given(world))  # fmt: skip
    assert report["frames"] == 6 and report["preset"] == "tiny" and report["steps"] == 2
    out = tmp_path / "default.mp4"
    default = pipe(p / "source.mp4", p / "target.mp4", output=out, size=64, frames=2, **given(world))
    assert default["steps"] == get_preset("tiny").steps  # no steps given: the preset's
    assert default["warp_person"] is get_preset("tiny").warp_person is True  # and its --warp-person
    # pose images carry no keypoints to move the person along: the default is then off, not an error
    images = pipe(p / "source.mp4", p / "target.mp4", output=tmp_path / "images.mp4", size=64, frames=2,
                  **{**given(world), "edit_poses": p / "edit_masks"})  # fmt: skip
    assert images["warp_person"] is False
    assert get_preset("sd15").warp_person is False
    args = [
        str(p / "source.mp4"),
        str(p / "target.mp4"),
        "-o",
        str(tmp_path / "cli.mp4"),
        "--steps",
        "2",
        "--size",
        "64",
        "--frames",
        "6",
        "--preset",
        "tiny",
        "--weights",
        str(world / "bundle"),
        "--json",
    ]
    for key, path in given(world).items():
        args += [f"--{key.replace('_', '-')}", str(path)]
    r = mfollow("edit", *args)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["weights"] == report["weights"]
    assert (tmp_path / "api.mp4").read_bytes() == (tmp_path / "cli.mp4").read_bytes()  # one path


def test_defaults_are_the_clis_and_errors_are_typed(world: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "empty"))  # no sd15 installed: the bundled model
    pipe = MotionFollowerPipeline.from_pretrained()
    assert pipe.bundle.preset == "tiny" and pipe.bundled_default
    assert EditRequest().steps is None and EditRequest().max_frames == 24 and EditRequest().guidance == "paper"
    p = world / "pair"
    with pytest.raises(UsageError, match="is the input SRC"):
        pipe(p / "source.mp4", output=p / "source.mp4", **given(world))
    with pytest.raises(MediaError, match="no such file"):
        pipe(tmp_path / "none.mp4", output=tmp_path / "o.mp4", **given(world))
    with pytest.raises(UsageError, match="unknown edit option"):
        pipe(p / "source.mp4", output=tmp_path / "o.mp4", stpes=3)
    assert not (tmp_path / "o.mp4").exists()


def test_long_with_a_project_and_notes(world: Path, tmp_path: Path) -> None:
    p = world / "pair"
    notes: list[str] = []
    ticks: list[tuple[int, int]] = []
    pipe = MotionFollowerPipeline.from_pretrained(str(world / "bundle"))
    report = pipe(p / "source.mp4", p / "target.mp4", output=tmp_path / "long.mp4", long=True, window=8, overlap=3,
                  steps=2, size=64, project=tmp_path / "proj", note=notes.append,
                  progress=lambda done, total: ticks.append((done, total)), **given(world))  # fmt: skip
    assert report["windows"] == [[0, 8], [4, 12]] and ticks == [(1, 2), (2, 2)]
    assert json.loads((tmp_path / "proj" / "result.json").read_text())["output"] == str(tmp_path / "long.mp4")
    assert probe(tmp_path / "long.mp4").frame_count == 12 and notes == []


def test_what_the_output_is_not_is_said(world: Path, tmp_path: Path) -> None:
    """--fit trim dropping source frames, and a size padded to even sides, are said on the notes
    (stderr in the CLI) and in the report, not done silently."""
    import shutil

    import numpy as np
    from PIL import Image

    p = world / "pair"
    pipe = MotionFollowerPipeline.from_pretrained(world / "bundle")
    short = tmp_path / "short_masks"
    shutil.copytree(p / "edit_masks", short)
    for extra in sorted(short.iterdir())[5:]:
        extra.unlink()  # 5 edit masks for a 12-frame source
    notes: list[str] = []
    paths = {**given(world), "edit_masks": short}
    report = pipe(p / "source.mp4", p / "target.mp4", tmp_path / "t.mp4", size=64, note=notes.append, **paths)
    assert (report["frames"], report["source_frames"]) == (5, 12)
    assert any("the output has 5 of the source's 12 frames" in n and "--fit loop" in n for n in notes), notes
    odd = tmp_path / "odd"  # a folder of 333x251 frames (H.264 cannot hold odd sides)
    odd.mkdir()
    for i in range(12):
        Image.fromarray(np.full((251, 333, 3), 20 * i, np.uint8)).save(odd / f"frame_{i:02d}.png")
    notes.clear()
    report = pipe(odd, p / "target.mp4", tmp_path / "o.mp4", size=64, note=notes.append, **given(world))
    assert report["size"] == [334, 252] and (probe(tmp_path / "o.mp4").width, probe(tmp_path / "o.mp4").height) == (
        334,
        252,
    )
    assert any("the source's 333x251 padded" in n for n in notes), notes
    assert not any("of the source's" in n for n in notes)  # nothing dropped here


def test_the_api_shows_progress_by_default(world: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = world / "pair"
    pipe = MotionFollowerPipeline.from_pretrained(world / "bundle")
    pipe(p / "source.mp4", p / "target.mp4", tmp_path / "a.mp4", size=64, steps=2, frames=4, **given(world))
    shown = capsys.readouterr().err
    assert "edit" in shown and "2/2" in shown  # not a terminal: plain lines of steps done
    pipe(p / "source.mp4", p / "target.mp4", tmp_path / "b.mp4", size=64, steps=2, frames=4, progress=None,
         **given(world))  # fmt: skip
    assert capsys.readouterr().err == ""


def test_what_dooms_an_edit_is_said_before_sampling(world: Path, tmp_path: Path) -> None:
    """Masks covering most of the frame, an aligned skeleton far outside it, and the bundled puppet
    model on real footage are warned of before sampling (the notes, then ``warnings`` in the report
    and on the report page); a sound edit warns of nothing."""
    import shutil

    import numpy as np

    from mfollow.preprocess.masks.files import mask_name, write_mask
    from mfollow.preprocess.pose.keypoints import PoseSequence

    p = world / "pair"
    pipe = MotionFollowerPipeline.from_pretrained(world / "bundle")
    sound = pipe(p / "source.mp4", p / "target.mp4", tmp_path / "ok.mp4", size=64, steps=1, progress=None,
                 **given(world))  # fmt: skip
    assert sound["warnings"] == []
    full = tmp_path / "full_masks"
    full.mkdir()
    for i in range(12):
        write_mask(full / mask_name(i), np.ones((64, 64), bool))
    below = tmp_path / "below.json"
    poses = PoseSequence.load(p / "edit_poses.json")
    poses.map_points(lambda a: a + np.array([0.0, 0.9] + [0.0] * (a.shape[-1] - 2))).save(below)
    calls: list[str] = []
    report = pipe(p / "source.mp4", p / "target.mp4", tmp_path / "doomed.mp4", size=64, steps=1, progress=None,
                  note=calls.append, project=tmp_path / "proj", preview_every=1, **{**given(world), "edit_masks": full,
                                                                   "edit_poses": below})  # fmt: skip
    warned = report["warnings"]
    assert any(w.startswith("M_e (the edit person) covers 100% of the frame") for w in warned), warned
    assert any("the aligned skeleton reaches far outside the frame" in w for w in warned), warned
    assert [f"warning: {w}" for w in warned] == [c for c in calls if c.startswith("warning: ")]
    from mfollow.report import ReportSettings, write_report

    page = tmp_path / "page.html"
    write_report(tmp_path / "proj", page, ReportSettings(max_side=64))
    assert "Warnings (found before sampling)" in page.read_text() and "covers 100% of the frame" in page.read_text()
    real = tmp_path / "clip.mp4"  # no pair.json beside it: not the synthetic world
    shutil.copy(p / "source.mp4", real)
    bundled = MotionFollowerPipeline.from_pretrained()
    report = bundled(real, p / "target.mp4", tmp_path / "b.mp4", size=64, steps=1, progress=None, **given(world))
    assert any("the bundled tiny demo model knows only the synthetic puppets" in w for w in report["warnings"])


def test_the_puppet_segdit_on_real_footage_is_warned_of(world: Path, tmp_path: Path) -> None:
    """Choosing the bundled SegDiT for a source that is not a synthetic pair says what it is."""
    import shutil

    from mfollow.preprocess.stages import pose_stage

    p = world / "pair"
    real = tmp_path / "clip.mp4"  # no pair.json beside it
    shutil.copy(p / "source.mp4", real)
    project = tmp_path / "proj"
    pose_stage(project, real, "source", p / "source_poses.json")
    pose_stage(project, p / "target.mp4", "target", p / "target_poses.json")
    pipe = MotionFollowerPipeline.from_pretrained(world / "bundle")
    report = pipe(real, p / "target.mp4", tmp_path / "o.mp4", project=project, edit_mask_backend="segdit",
                  source_masks=p / "source_masks", size=64, steps=1, progress=None)  # fmt: skip
    assert report["mask_backend"]["edit"] == "segdit"
    assert any(w.startswith("M_e came from the bundled SegDiT") for w in report["warnings"]), report["warnings"]


@pytest.mark.slow
def test_a_folder_output_holds_the_frames_the_video_encodes(world: Path, tmp_path: Path) -> None:
    """``output`` without a suffix: the edit's frames as lossless PNGs (what the .mp4 of the same
    edit encodes), replacing a previous output atomically."""
    import numpy as np

    from mfollow.io.media import media_frames

    p = world / "pair"
    pipe = MotionFollowerPipeline.from_pretrained(world / "bundle")
    options = {"steps": 2, "size": 64, "frames": 4, "progress": None, **given(world)}
    video = pipe(p / "source.mp4", None, output=tmp_path / "v.mp4", **options)
    folder = pipe(p / "source.mp4", None, output=tmp_path / "frames", **options)
    names = sorted(f.name for f in (tmp_path / "frames").iterdir())
    assert names == ["00000.png", "00001.png", "00002.png", "00003.png"]
    assert folder["size"] == video["size"] == [64, 64] and folder["output"] == str(tmp_path / "frames")
    png = np.stack(list(media_frames(tmp_path / "frames"))).astype(float)
    mp4 = np.stack(list(media_frames(tmp_path / "v.mp4"))).astype(float)
    assert png.shape == mp4.shape == (4, 64, 64, 3)
    assert 10 * np.log10(255**2 / ((png - mp4) ** 2).mean()) > 30  # the same frames, one of them through H.264
    again = pipe(p / "source.mp4", None, output=tmp_path / "frames", **{**options, "frames": 2})
    assert again["frames"] == 2 and sorted(f.name for f in (tmp_path / "frames").iterdir()) == names[:2]
    assert [f.name for f in tmp_path.iterdir() if f.name.startswith(".")] == []  # no staging left behind


def test_the_frame_folder_writer_is_atomic(tmp_path: Path) -> None:
    import numpy as np

    from mfollow.io.frame_folder import FrameFolderWriter

    out = tmp_path / "out"
    with FrameFolderWriter(out, 5, 3) as w:  # odd sides are kept: PNG needs no padding
        w.write(np.full((3, 5, 3), 7, np.uint8))
    with pytest.raises(RuntimeError), FrameFolderWriter(out, 5, 3) as w:
        w.write(np.zeros((3, 5, 3), np.uint8))
        raise RuntimeError("killed")
    assert [f.name for f in tmp_path.iterdir()] == ["out"] and [f.name for f in out.iterdir()] == ["00000.png"]
    with pytest.raises(MediaError, match="expected"), FrameFolderWriter(out, 5, 3) as w:
        w.write(np.zeros((4, 5, 3), np.uint8))
    from PIL import Image

    assert np.asarray(Image.open(out / "00000.png")).tolist() == np.full((3, 5, 3), 7).tolist()


@pytest.mark.slow
def test_a_caller_under_inference_mode_can_load_and_edit(world: Path, tmp_path: Path) -> None:
    """Hosts that run their work under ``torch.inference_mode()`` (ComfyUI runs every node so):
    the weights are loaded as normal tensors and the guidance's gradients still flow."""
    import torch

    p = world / "pair"
    with torch.inference_mode():
        pipe = MotionFollowerPipeline.from_pretrained(world / "bundle")
        assert not any(t.is_inference() for t in pipe.bundle.unet.parameters())
        report = pipe(p / "source.mp4", None, output=tmp_path / "o.mp4", steps=2, size=64, frames=2,
                      progress=None, **given(world))  # fmt: skip
    assert report["frames"] == 2 and report["guidance"] == "paper"
