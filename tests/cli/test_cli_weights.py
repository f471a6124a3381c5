"""``mfollow weights ...`` through the real CLI (no network: HF_HUB_OFFLINE=1)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from clirun import cli_env, one_line_error
from official import write_official

from mfollow.models.bundle import ModelBundle


def run(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = cli_env("MFOLLOW_DEBUG", "MFOLLOW_WEIGHTS")
    env.update(XDG_DATA_HOME=str(home / "xdg"), HF_HUB_CACHE=str(home / "hf"), HF_HUB_OFFLINE="1")
    return subprocess.run(
        [sys.executable, "-m", "mfollow", *args], capture_output=True, text=True, env=env, timeout=300
    )


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("official")
    bundle = ModelBundle.random("tiny", seed=3)
    write_official(bundle.unet.state_dict(), bundle.poctr.state_dict(), out)
    return out


@pytest.mark.slow
def test_list_import_verify(tmp_path: Path, official: Path) -> None:
    r = run("weights", "list", "--json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    rows = {c["name"]: c for c in json.loads(r.stdout)["components"]}
    assert {n: c["state"] for n, c in rows.items()} == dict.fromkeys(
        ["sd-image-variations", "sd-vae-ft-mse", "dwpose", "motionfollower"], "missing"
    ) | dict.fromkeys(["lpips-alex", "lpips-vgg", "fid-inception", "fvd-i3d"], "missing") | dict.fromkeys(
        ["segdit", "tiny"], "present"
    )
    assert rows["lpips-vgg"]["source"] == "https://download.pytorch.org, raw.githubusercontent.com (pinned by SHA-256)"
    assert rows["motionfollower"]["source"] == "Google Drive folder 1yWRNmd4-vbJfV1Ji_zhpNSwNpuJVat7o (gdown), imported"
    assert rows["tiny"]["origin"] == rows["segdit"]["origin"] == "bundled"  # shipped with the package
    r = run("weights", "import", "--official", str(official), "--preset", "tiny", "--json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["census"]["unet"]["missing"] == [] and len(doc["census"]["unet"]["dropped"]) == 42
    r = run("weights", "list", "--json", home=tmp_path)
    (mf,) = [c for c in json.loads(r.stdout)["components"] if c["name"] == "motionfollower"]
    assert mf["state"] == "present" and mf["origin"] == "data-dir" and mf["path"] == doc["installed"]
    r = run("weights", "verify", "--json", home=tmp_path)
    assert r.returncode == 0 and set(json.loads(r.stdout)["verified"]["motionfollower"].values()) == {"ok"}
    weights_file = Path(doc["installed"]) / "unet" / "diffusion_pytorch_model.safetensors"
    weights_file.write_bytes(weights_file.read_bytes()[:-1] + b"\0")
    one_line_error(run("weights", "verify", "motionfollower", home=tmp_path), 3, "does not match")


@pytest.mark.slow
def test_inspect(tmp_path: Path, official: Path) -> None:
    r = run("weights", "inspect", str(official / "motion_module.pth"), "--preset", "tiny", "--json", home=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["model"] == "unet" and doc["matched"] == 546 and doc["unexpected"] == []
    r = run("weights", "inspect", str(official / "poctr.pth"), home=tmp_path)
    assert r.returncode == 0 and "16 shape mismatches" in r.stdout


@pytest.mark.slow
def test_weights_errors_exit_3(tmp_path: Path, official: Path) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    one_line_error(run("weights", "inspect", str(bad), home=tmp_path), 3, str(bad), "corrupt")
    one_line_error(
        run("weights", "import", "--official", str(tmp_path), home=tmp_path), 3, "missing denoising_unet.pth"
    )
    one_line_error(run("weights", "import", "--official", str(official), home=tmp_path), 3, "shape mismatches")
    one_line_error(run("weights", "download", "segdit", home=tmp_path), 3, "cannot be downloaded")
    one_line_error(run("weights", "download", "sd-vae-ft-mse", "-q", home=tmp_path), 3, "HF_HUB_OFFLINE=1")
    one_line_error(run("weights", "download", "sd4", home=tmp_path), 3, "unknown weights component")
    for argv in (["weights", "verify"], ["weights", "list"]):
        typo = [*argv, "--weights", str(tmp_path / "wieghts")]  # a typo must not fall through to other roots
        one_line_error(run(*typo, home=tmp_path), 3, "wieghts: no such folder")
    r = run("weights", "verify", home=tmp_path)  # only the bundled demo model is installed
    assert r.returncode == 0, r.stderr
    rows = [line.split() for line in r.stdout.splitlines()]
    assert {row[0] for row in rows} == {"tiny", "segdit"} and {row[1] for row in rows} == {"ok"}
    torch.save({"x": torch.zeros(1)}, tmp_path / "tiny.pth")
    assert run("weights", "inspect", str(tmp_path / "tiny.pth"), home=tmp_path).returncode == 0
