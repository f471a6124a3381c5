"""The bundled demo model (files, recorded hashes, default selection) and ``mfollow demo``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from clirun import cli_env

from mfollow.io.hashing import sha256_file
from mfollow.weights import registry as W
from mfollow.weights import stamps as WS


@pytest.fixture
def bare_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """No user weights anywhere: only what ships with the package."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv(W.ENV_VAR, raising=False)
    return cli_env("MFOLLOW_DEBUG")


@pytest.mark.parametrize("name", ["tiny", "segdit"])
def test_bundled_files_match_their_recorded_hashes(name: str, bare_home: dict[str, str]) -> None:
    loc = W.locate(name)
    assert loc.origin == "bundled" and loc.path == W.BUNDLED / name
    recorded = W.BUNDLED_SHA256[name]
    assert set(recorded) == {f.path for f in W.get_component(name).files}
    for path, sha in recorded.items():
        assert sha256_file(loc.path / path) == sha, path
    assert set(WS.verify(name).values()) == {"ok"}


def test_bundled_model_loads_and_is_the_default(bare_home: dict[str, str]) -> None:
    from mfollow.models.loading import choose_preset, load_bundle
    from mfollow.preprocess.masks.segdit import SegDiT

    assert choose_preset(None) == "tiny"  # no sd15 components installed
    bundle, identity = load_bundle("auto", None)
    assert bundle.preset == "tiny" and len(identity) == 64
    assert bundle.vae.config.scaling_factor != 0.18215  # fitted when the VAE was trained
    sizes = {n: sum(p.numel() for p in m.parameters()) for n, m in bundle.modules().items()}
    assert sizes["unet"] > 1_000_000 and sizes["vae"] > 100_000
    model = SegDiT.from_pretrained(str(W.BUNDLED / "segdit"))
    assert sum(p.numel() for p in model.parameters()) < 1_000_000


@pytest.mark.slow
def test_demo_end_to_end(tmp_path: Path, bare_home: dict[str, str]) -> None:
    out = tmp_path / "demo"
    cmd = [sys.executable, "-m", "mfollow", "demo", str(out), "--frames", "4", "--steps", "2", "--json", "-q"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=bare_home, timeout=300)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report == json.loads((out / "metrics.json").read_text())
    for name in ("result.mp4", "side_by_side.mp4", "pair/edit_gt.mp4", "project/mfollow.json"):
        assert (out / name).is_file(), name
    from mfollow.io.video import probe

    sbs, result = probe(out / "side_by_side.mp4"), probe(out / "result.mp4")
    assert (sbs.display_width, sbs.display_height, sbs.frame_count) == (4 * 128, 128 + 16, 4)
    assert (result.display_width, result.display_height, result.frame_count) == (128, 128, 4)
    m = report["metrics"]
    assert set(m) == {"result", "source_unchanged", "target_unchanged", "ground_truth", "registered"}
    assert set(m.pop("ground_truth")) == {"silhouette_iou"}
    reg = m.pop("registered")  # against the truth registered to the aligned poses
    assert set(reg) == {"offset_px", "result", "source_unchanged"} and len(reg["offset_px"]) == 2
    assert reg["result"] != m["result"] and (out / "pair" / "registered" / "edit_gt.mp4").is_file()
    for scores in m.values():
        assert all(isinstance(scores[k], float) for k in ("psnr", "psnr_fg", "psnr_bg", "ssim", "silhouette_iou"))
        assert 0 <= scores["silhouette_iou"] <= 1
    assert m["result"]["psnr"] < 99  # a generated video is never the ground truth itself
    # a folder that is not a demo's is refused, not overwritten
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    r = subprocess.run([*cmd[:4], str(tmp_path / "mine")], capture_output=True, text=True, env=bare_home)
    assert r.returncode == 2 and "not a demo folder" in r.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    r = subprocess.run([*cmd[:4], str(tmp_path / "mine" / "notes.txt")], capture_output=True, text=True, env=bare_home)
    assert r.returncode == 2 and "is not a folder" in r.stderr
    assert report["settings"]["device"] == "cpu" and report["settings"]["warp_person"] is True
    alone = tmp_path / "alone"  # the model's drawing of the person, without the moved source pixels
    plain = [*cmd[:4], str(alone), *cmd[5:], "--no-warp-person"]
    r = subprocess.run(plain, capture_output=True, text=True, env=bare_home)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["settings"]["warp_person"] is False
    assert (alone / "result.mp4").read_bytes() != (out / "result.mp4").read_bytes()


@pytest.mark.slow
@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_demo_refuses_a_missing_device(tmp_path: Path, bare_home: dict[str, str]) -> None:
    cmd = [sys.executable, "-m", "mfollow", "demo", str(tmp_path / "d"), "--device", "cuda"]
    r = subprocess.run(cmd, capture_output=True, text=True, env=bare_home, timeout=600)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["mfollow: error: --device cuda: no CUDA device is available"]
    assert not (tmp_path / "d").exists()  # refused before any work
