"""``mfollow synth`` and ``mfollow eval`` through the real CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from clirun import mfollow, one_line_error
from media import make_video


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "pair"
    r = mfollow("synth", str(out), "--seed", "4", "--frames", "10", "--size", "64", "--camera", "pan", "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["frames"] == 10 and report["camera"] == "pan" and report["source_motion"] != report["target_motion"]
    return out


@pytest.mark.slow
def test_synth_writes_the_layout_and_is_reproducible(pair_dir: Path, tmp_path: Path) -> None:
    names = {p.name for p in pair_dir.iterdir()}
    assert names == {
        "source.mp4", "target.mp4", "edit_gt.mp4", "source_poses.json", "target_poses.json", "edit_poses.json",
        "source_masks", "target_masks", "edit_masks", "pair.json",
    }  # fmt: skip
    assert len(list((pair_dir / "edit_masks").iterdir())) == 10
    again = tmp_path / "again"
    assert (
        mfollow(
            "synth", str(again), "--seed", "4", "--frames", "10", "--size", "64", "--camera", "pan", "-q"
        ).returncode
        == 0
    )
    for name in ("source_poses.json", "edit_poses.json", "target_poses.json", "pair.json"):
        assert (again / name).read_bytes() == (pair_dir / name).read_bytes()


@pytest.mark.slow
def test_eval_source_against_ground_truth_and_itself(pair_dir: Path, tmp_path: Path) -> None:
    r = mfollow(
        "eval", str(pair_dir / "source.mp4"), str(pair_dir / "edit_gt.mp4"),
        "--fg-masks", str(pair_dir / "edit_masks"), "--per-frame", str(tmp_path / "t" / "frames.csv"), "--json",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    s = doc["summary"]
    assert doc["frames"] == 10
    for key in ("psnr", "psnr_fg", "psnr_bg", "ssim", "ssim_fg", "ssim_bg", "l1"):
        assert isinstance(s[key], float)
    assert 5 < s["psnr"] < 60 and 0 < s["ssim"] < 1 and s["psnr_fg"] < s["psnr_bg"]
    rows = list(csv.DictReader((tmp_path / "t" / "frames.csv").open()))
    assert len(rows) == 10 and rows[0]["frame"] == "0" and "ssim_fg" in rows[0]
    r = mfollow("eval", str(pair_dir / "edit_gt.mp4"), str(pair_dir / "edit_gt.mp4"), "--json")
    perfect = json.loads(r.stdout)["summary"]
    assert perfect["psnr"] == "inf" and perfect["ssim"] == pytest.approx(1.0) and perfect["l1"] == 0


@pytest.mark.slow
def test_eval_refuses_mismatches_unless_told(pair_dir: Path, tmp_path: Path) -> None:
    ref = pair_dir / "edit_gt.mp4"
    bigger = make_video(tmp_path / "big.mp4", n=10, width=96, height=96)
    one_line_error(mfollow("eval", str(bigger), str(ref)), 4, "96x96 differs", "--resize")
    assert mfollow("eval", str(bigger), str(ref), "--resize", "--json").returncode == 0
    shorter = make_video(tmp_path / "short.mp4", n=6, width=64, height=64)
    one_line_error(mfollow("eval", str(shorter), str(ref)), 4, "6 frames", "--trim")
    r = mfollow("eval", str(shorter), str(ref), "--trim", "--fg-masks", str(pair_dir / "edit_masks"), "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["frames"] == 6
    one_line_error(mfollow("eval", str(ref), str(ref), "--fg-masks", str(tmp_path)), 4, "holds no mask images")


@pytest.mark.slow
def test_unwritable_output_locations_exit_4(pair_dir: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    one_line_error(mfollow("synth", str(blocker / "pair"), "--frames", "2", "--size", "32"), 4, str(blocker))
    ref = str(pair_dir / "edit_gt.mp4")
    one_line_error(mfollow("eval", ref, ref, "--per-frame", str(blocker / "t.csv")), 4, "t.csv")


@pytest.mark.slow
def test_synth_usage_errors_exit_2(tmp_path: Path) -> None:
    one_line_error(mfollow("synth", str(tmp_path / "x"), "--fps", "abc"), 2, "--fps")
    one_line_error(mfollow("synth", str(tmp_path / "x"), "--camera", "dolly"), 2, "dolly")
    one_line_error(mfollow("synth", str(tmp_path / "x"), "--frames", "0"), 2, "--frames")
