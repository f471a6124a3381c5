"""Checkpoints, the official import, the model bundle, the weights resolver and downloads."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from official import write_official

from mfollow.models.bundle import ModelBundle
from mfollow.models.checkpoint import load_state_dict, save_state_dict
from mfollow.models.official import import_official, inspect_file
from mfollow.models.unet3d import UNet3D
from mfollow.runtime.errors import WeightsError
from mfollow.weights import download as WD
from mfollow.weights import registry as W
from mfollow.weights import stamps as WS


class RunsCode:  # unpickling this would run a shell command
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo unpickled",))


class NotATensor:  # pickling this needs code execution
    pass


@pytest.fixture(scope="module")
def tiny_bundle() -> ModelBundle:
    bundle = ModelBundle.random("tiny", seed=0)
    g = torch.Generator().manual_seed(1)
    for p in list(bundle.unet.parameters()) + list(bundle.poctr.parameters()):
        p.data = torch.randn(p.shape, generator=g)  # no zero-initialised tensors: every key matters
    return bundle


@pytest.fixture
def official_dir(tmp_path: Path, tiny_bundle: ModelBundle) -> Path:
    out = tmp_path / "official"
    write_official(tiny_bundle.unet.state_dict(), tiny_bundle.poctr.state_dict(), out)
    return out


@pytest.fixture(autouse=True)
def _isolated_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(W.ENV_VAR, raising=False)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))


# --------------------------------------------------------------------------- official import
def test_official_roundtrip_reproduces_every_tensor(
    tmp_path: Path, official_dir: Path, tiny_bundle: ModelBundle
) -> None:
    state = torch.load(official_dir / "denoising_unet.pth", weights_only=True)
    state["module.conv_in.weight"] = state.pop("conv_in.weight")  # as a DataParallel save would name it
    torch.save(state, official_dir / "denoising_unet.pth")
    census = import_official(official_dir, tmp_path / "mf", preset="tiny")
    unet = UNet3D.from_pretrained(str(tmp_path / "mf" / "unet"))
    ref, got = tiny_bundle.unet.state_dict(), unet.state_dict()
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    poctr = load_state_dict(tmp_path / "mf" / "poctr" / "diffusion_pytorch_model.safetensors")
    assert all(torch.equal(poctr[k], v) for k, v in tiny_bundle.poctr.state_dict().items())
    c = census["unet"]
    assert c.renamed == {"module.conv_in.weight": "conv_in.weight"}
    assert len(c.dropped) == 42 and all(k.endswith("pos_encoder.pe") for k in c.dropped)  # 21 modules x 2
    assert c.ok and c.matched == len(ref) and census["poctr"].matched == 16
    assert (tmp_path / "mf" / W.STAMP).is_file()


def test_import_refuses_mismatches_and_writes_nothing(tmp_path: Path, official_dir: Path) -> None:
    with pytest.raises(WeightsError, match="shape mismatches") as err:
        import_official(official_dir, tmp_path / "mf", preset="sd15")  # tiny files, full-size model
    assert "another preset" in str(err.value)
    state = torch.load(official_dir / "denoising_unet.pth", weights_only=True)
    del state["conv_out.bias"]
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, official_dir / "denoising_unet.pth")
    with pytest.raises(WeightsError, match=r"1 required keys missing, e\.g\. conv_out\.bias"):
        import_official(official_dir, tmp_path / "mf", preset="tiny")
    with pytest.raises(WeightsError, match=r"1 unexpected keys, e\.g\. extra\.weight"):
        import_official(official_dir, tmp_path / "mf", preset="tiny", allow_missing=True)
    assert not (tmp_path / "mf").exists()
    census = import_official(official_dir, tmp_path / "mf", preset="tiny", allow_missing=True, allow_unexpected=True)
    assert census["unet"].missing == ["conv_out.bias"] and census["unet"].unexpected == ["extra.weight"]
    (official_dir / "poctr.pth").unlink()
    with pytest.raises(WeightsError, match=r"missing poctr\.pth"):
        import_official(official_dir, tmp_path / "mf2", preset="tiny")


def test_a_wrong_position_table_is_refused(tmp_path: Path, official_dir: Path) -> None:
    state = torch.load(official_dir / "motion_module.pth", weights_only=True)
    key = next(k for k in state if k.endswith("pos_encoder.pe"))
    state[key] = state[key] + 1
    torch.save(state, official_dir / "motion_module.pth")
    with pytest.raises(WeightsError, match="positional table differs"):
        import_official(official_dir, tmp_path / "mf", preset="tiny")


def test_base_weights_fill_keys_the_release_lacks(tmp_path: Path, official_dir: Path, tiny_bundle: ModelBundle) -> None:
    state = torch.load(official_dir / "denoising_unet.pth", weights_only=True)
    base = {"conv_out.bias": state.pop("conv_out.bias") + 5}
    torch.save(state, official_dir / "denoising_unet.pth")
    import_official(official_dir, tmp_path / "mf", preset="tiny", base=base)
    got = load_state_dict(tmp_path / "mf" / "unet" / "diffusion_pytorch_model.safetensors")
    assert torch.equal(got["conv_out.bias"], base["conv_out.bias"])


# ------------------------------------------------------------------------------- bad files
def test_bad_checkpoint_files(tmp_path: Path, official_dir: Path) -> None:
    good = official_dir / "poctr.pth"
    (tmp_path / "trunc.pth").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    save_state_dict({"a": torch.ones(3)}, tmp_path / "ok.safetensors")
    (tmp_path / "trunc.safetensors").write_bytes((tmp_path / "ok.safetensors").read_bytes()[:-4])
    torch.save({"a": NotATensor()}, tmp_path / "code.pth")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    torch.save({"a": RunsCode()}, tmp_path / "runs.pth")
    cases = {
        "trunc.pth": "corrupt or truncated",
        "trunc.safetensors": "not a valid safetensors file",
        "code.pth": "needs code execution",
        "runs.pth": "needs code execution to load (it imports posix.system)",
        "list.pth": "not a dict of tensors",
        "missing.pth": "no such weights file",
    }
    for name, message in cases.items():
        with pytest.raises(WeightsError, match=re.escape(message)) as err:
            load_state_dict(tmp_path / name)
        assert name in str(err.value)
        assert "weights_only" not in str(err.value) and "will likely succeed" not in str(err.value)
    assert torch.equal(load_state_dict(tmp_path / "ok.safetensors")["a"], torch.ones(3))


def test_inspect_reports_against_the_right_network(tmp_path: Path, official_dir: Path) -> None:
    which, census = inspect_file(official_dir / "motion_module.pth", "tiny")
    assert which == "unet" and census.matched == 21 * 26 and len(census.dropped) == 42 and not census.unexpected
    assert census.dtypes == {"float32": 546}
    half = tmp_path / "half.pth"
    torch.save({k: v.half() for k, v in torch.load(official_dir / "poctr.pth", weights_only=True).items()}, half)
    which, census = inspect_file(half, "tiny")
    assert (
        which == "poctr"
        and census.matched == 16
        and census.dtype_mismatches == dict.fromkeys([k for k in torch.load(half, weights_only=True)], "float16")
    )
    which, census = inspect_file(official_dir / "poctr.pth", "sd15")
    assert which == "poctr" and census.matched == 0 and len(census.shape_mismatches) == 16


# ------------------------------------------------------------------------------- the bundle
def test_bundle_roundtrip(tmp_path: Path, tiny_bundle: ModelBundle) -> None:
    tiny_bundle.save_pretrained(tmp_path / "b")
    back = ModelBundle.from_pretrained(tmp_path / "b")
    assert back.preset == "tiny" and back.scheduler_config["prediction_type"] == "v_prediction"
    for name, module in tiny_bundle.modules().items():
        a, b = module.state_dict(), back.modules()[name].state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert not any(p.requires_grad for p in back.unet.parameters())
    emb = back.clip_context(np.zeros((3, 40, 60, 3), np.uint8))
    assert emb.shape == (3, 32) and torch.allclose(emb[0], emb[2])
    poctr_file = tmp_path / "b" / "poctr" / "diffusion_pytorch_model.safetensors"
    save_state_dict({**load_state_dict(poctr_file), "extra.weight": torch.zeros(1)}, poctr_file)
    with pytest.raises(WeightsError, match=r"0 missing and 1 unexpected keys, e\.g\. extra\.weight"):
        ModelBundle.from_pretrained(tmp_path / "b")
    shutil.rmtree(tmp_path / "b" / "poctr")
    with pytest.raises(WeightsError, match="component missing"):
        ModelBundle.from_pretrained(tmp_path / "b")
    with pytest.raises(WeightsError, match="not a model bundle"):
        ModelBundle.from_pretrained(tmp_path)


# ------------------------------------------------------------------------------- resolver
def _install(root: Path, name: str, folder: Path | None = None) -> Path:
    folder = folder or root / name
    for f in W.get_component(name).files:
        (folder / f.path).parent.mkdir(parents=True, exist_ok=True)
        (folder / f.path).write_text(f"{name}:{f.path}")
    return folder


def test_resolver_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "sd-vae-ft-mse"
    with pytest.raises(WeightsError, match="mfollow weights download sd-vae-ft-mse"):
        W.resolve(name)
    # the Hugging Face cache, read offline
    comp = W.get_component(name)
    snap = tmp_path / "hf-cache" / "models--stabilityai--sd-vae-ft-mse" / "snapshots" / comp.revision
    _install(tmp_path, name, snap)
    assert W.locate(name).origin == "hf-cache" and W.resolve(name) == snap
    data = _install(W.data_dir(), name)
    assert W.locate(name).origin == "data-dir" and W.resolve(name) == data
    monkeypatch.setenv(W.ENV_VAR, str(tmp_path / "env"))
    env = _install(tmp_path / "env", name)
    assert W.resolve(name) == env
    explicit = _install(tmp_path / "explicit", name)
    assert (
        W.locate(name, tmp_path / "explicit").origin == "explicit"
        and W.resolve(name, tmp_path / "explicit") == explicit
    )


def test_incomplete_and_official_components_say_what_to_do(tmp_path: Path) -> None:
    folder = _install(W.data_dir(), "dwpose")
    (folder / "yolox_l.onnx").unlink()
    with pytest.raises(WeightsError, match=r"incomplete: yolox_l\.onnx missing"):
        W.resolve("dwpose")
    with pytest.raises(WeightsError, match="weights import --official"):
        W.resolve("motionfollower")
    with pytest.raises(WeightsError, match="unknown weights component"):
        W.resolve("sd3")


# ------------------------------------------------------------------------------ downloads
@pytest.fixture
def fake_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, object]:
    """A local stand-in for the Hub: serves files from a folder, records every request."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    served = tmp_path / "hub"
    calls: list[tuple[str, str, str | None]] = []

    commits: dict[str, str] = {}  # the commit the fake hub resolves a revision to -> that revision

    def model_info(repo_id: str, revision: str | None) -> object:
        """The hub's file list at a revision: LFS files with their SHA-256, small ones with a blob id."""
        import hashlib
        from types import SimpleNamespace

        folder = served / repo_id / (revision or "main")
        if not folder.is_dir():
            raise LocalEntryNotFoundError(f"{repo_id}@{revision} not on the fake hub")
        is_commit = revision is not None and len(revision) == 40
        commit = revision if is_commit else hashlib.sha1(f"{repo_id}@{revision}".encode()).hexdigest()
        commits[commit] = revision or "main"
        siblings = []
        for f in sorted(p for p in folder.rglob("*") if p.is_file()):
            data, rel = f.read_bytes(), f.relative_to(folder).as_posix()
            if f.suffix in (".safetensors", ".bin", ".onnx", ".pt"):
                lfs = SimpleNamespace(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
                siblings.append(SimpleNamespace(rfilename=rel, size=len(data), lfs=lfs, blob_id="0" * 40))
            else:
                blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
                siblings.append(SimpleNamespace(rfilename=rel, size=len(data), lfs=None, blob_id=blob))
        return SimpleNamespace(sha=commit, siblings=siblings)

    def hf_hub_download(
        repo_id: str, filename: str, *, revision: str | None = None, local_dir: str, **kw: object
    ) -> str:
        calls.append((repo_id, filename, revision))
        src = served / repo_id / commits.get(str(revision), revision or "main") / filename
        if not src.is_file():
            raise LocalEntryNotFoundError(f"{repo_id}/{filename} not on the fake hub")
        dst = Path(local_dir) / filename
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        (Path(local_dir) / ".cache").mkdir(exist_ok=True)  # like the real local_dir metadata
        return str(dst)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", hf_hub_download)
    monkeypatch.setattr(WD, "_model_info", model_info)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the fake hub is local
    return {"root": served, "calls": calls, "commits": commits}


def _serve(hub: dict[str, object], name: str, content: dict[str, bytes] | None = None) -> None:
    comp = W.get_component(name)
    for f in comp.files:
        path = Path(hub["root"]) / str(comp.repo_id) / str(comp.revision) / f.path  # type: ignore[arg-type]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes((content or {}).get(f.path, f.path.encode()))


def test_download_installs_pinned_files_with_a_stamp(fake_hub: dict[str, object]) -> None:
    _serve(fake_hub, "sd-vae-ft-mse")
    folder = WD.download("sd-vae-ft-mse")
    comp = W.get_component("sd-vae-ft-mse")
    assert fake_hub["calls"] == [(comp.repo_id, f.path, comp.revision) for f in comp.files]
    assert W.locate("sd-vae-ft-mse").origin == "data-dir" and folder == W.data_dir() / "sd-vae-ft-mse"
    assert sorted(p.name for p in folder.iterdir()) == [W.STAMP, "config.json", "diffusion_pytorch_model.safetensors"]
    assert WS.verify("sd-vae-ft-mse") == {"config.json": "ok", "diffusion_pytorch_model.safetensors": "ok"}
    (folder / "config.json").write_text("tampered")
    with pytest.raises(WeightsError, match="does not match"):
        WS.verify("sd-vae-ft-mse")


def test_tagged_download_is_resolved_to_a_commit_checked_by_hub_hashes(fake_hub: dict[str, object]) -> None:
    """sd-image-variations is named by a tag: the download resolves it to the commit, prefers the
    safetensors files, checks each file against the hub's hashes and records them."""
    root = Path(fake_hub["root"]) / "lambdalabs/sd-image-variations-diffusers" / "v2.0"  # type: ignore[arg-type]
    for rel in ("unet/config.json", "image_encoder/config.json", "unet/diffusion_pytorch_model.bin",
                "unet/diffusion_pytorch_model.safetensors", "image_encoder/pytorch_model.bin"):  # fmt: skip
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(rel.encode())
    folder = WD.download("sd-image-variations")
    fetched = [c[1] for c in fake_hub["calls"]]  # type: ignore[union-attr]
    assert fetched == ["unet/config.json", "unet/diffusion_pytorch_model.safetensors", "image_encoder/config.json",
                       "image_encoder/pytorch_model.bin"]  # fmt: skip  # no safetensors encoder at this commit
    commit = next(c[2] for c in fake_hub["calls"])  # type: ignore[index]
    assert len(commit) == 40 and commit != "v2.0"
    stamp = json.loads((folder / W.STAMP).read_text())
    assert stamp["revision"] == commit and stamp["requested_revision"] == "v2.0"
    assert set(stamp["files"]) == set(fetched) and W.locate("sd-image-variations").path == folder
    assert WS.verify("sd-image-variations")["unet/diffusion_pytorch_model.safetensors"] == "ok"
    # the hub lists one content and serves another: refused, nothing installed
    import huggingface_hub

    served = huggingface_hub.hf_hub_download

    def tampered(repo_id: str, filename: str, **kw: object) -> str:
        path = Path(served(repo_id, filename, **kw))  # type: ignore[arg-type]
        path.write_bytes(b"tampered")
        return str(path)

    shutil.rmtree(folder)
    huggingface_hub.hf_hub_download = tampered  # type: ignore[assignment]
    try:
        with pytest.raises(WeightsError, match="does not match"):
            WD.download("sd-image-variations")
    finally:
        huggingface_hub.hf_hub_download = served
    assert not (W.data_dir() / "sd-image-variations").exists()


def test_download_checks_sha256_and_leaves_nothing_on_failure(fake_hub: dict[str, object]) -> None:
    _serve(fake_hub, "dwpose")  # served bytes are not the real models: the pinned hashes fail
    with pytest.raises(WeightsError, match=r"SHA-256 .* does not match the expected 7860ae79"):
        WD.download("dwpose")
    assert not W.data_dir().exists() or not any(W.data_dir().iterdir())
    with pytest.raises(WeightsError, match=r"cannot read lambdalabs/sd-image-variations-diffusers@v2\.0 from the hub"):
        WD.download("sd-image-variations")  # nothing served for it
    with pytest.raises(WeightsError, match="cannot be downloaded automatically"):
        WD.download("segdit")


@pytest.fixture
def fake_https(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """A local stand-in for plain HTTPS sources: serves ``{url: bytes}``, else a URLError."""
    import io
    import urllib.error

    served: dict[str, bytes] = {}

    def urlopen(request: object, timeout: float) -> io.BytesIO:
        url = request.full_url  # type: ignore[attr-defined]
        assert request.get_header("User-agent", "").startswith("mfollow/")  # type: ignore[attr-defined]
        if url not in served:
            raise urllib.error.URLError("404 Not Found")
        return io.BytesIO(served[url])

    monkeypatch.setattr(WD, "_urlopen", urlopen)
    return served


def test_https_download_checks_full_and_prefix_hashes(fake_https: dict[str, bytes], monkeypatch) -> None:
    import hashlib

    a, b = b"alpha" * 1000, b"beta" * 7
    sha_a, sha_b = hashlib.sha256(a).hexdigest(), hashlib.sha256(b).hexdigest()
    web = W.Component(
        "web",
        "two files served over HTTPS",
        (
            W.WeightFile("a.bin", url="https://example.org/a-x.bin", sha256_prefix=sha_a[:8]),
            W.WeightFile("sub/b.bin", sha_b, len(b), url="https://example.org/v1/b.bin"),
        ),
    )
    monkeypatch.setitem(W.REGISTRY, "web", web)
    assert web.downloadable and web.source == "https://example.org (pinned by SHA-256)"
    fake_https.update({"https://example.org/a-x.bin": a, "https://example.org/v1/b.bin": b})
    folder = WD.download("web")
    assert (folder / "a.bin").read_bytes() == a and (folder / "sub" / "b.bin").read_bytes() == b
    stamp = json.loads((folder / W.STAMP).read_text())
    assert stamp["files"]["a.bin"] == {"size": len(a), "sha256": sha_a}
    assert WS.verify("web") == {"a.bin": "ok", "sub/b.bin": "ok"} and W.resolve("web") == folder
    (folder / "a.bin").write_bytes(b"tampered")
    with pytest.raises(WeightsError, match=r"a\.bin: SHA-256 .* does not match"):
        WS.verify("web")
    # the published prefix alone (no stamp) still catches a wrong file
    (folder / W.STAMP).unlink()
    with pytest.raises(WeightsError, match=rf"does not match {sha_a[:8]}\.\.\."):
        WS.verify("web")


def test_https_download_failures_leave_nothing(fake_https: dict[str, bytes], monkeypatch) -> None:
    comp = W.get_component("lpips-alex")
    fake_https.update({f.url: b"not the weights" for f in comp.files})  # type: ignore[misc]
    with pytest.raises(WeightsError, match=r"lpips-alex/alexnet-owt-7be5be79\.pth: SHA-256 .* expected 7be5be79\.\.\."):
        WD.download("lpips-alex")
    fake_https.clear()
    with pytest.raises(WeightsError, match=r"cannot download https://download\.pytorch\.org/.*404"):
        WD.download("lpips-alex")
    assert not W.data_dir().exists() or not any(W.data_dir().iterdir())
    monkeypatch.setitem(W.REGISTRY, "plain", W.Component("plain", "", (W.WeightFile("x", url="http://a/x"),)))
    with pytest.raises(WeightsError, match="only https:// sources"):
        WD.download("plain")
    with pytest.raises(WeightsError, match="mfollow weights download fid-inception"):
        W.resolve("fid-inception")


def test_known_sha256_is_verified_without_a_stamp(tmp_path: Path) -> None:
    _install(tmp_path / "w", "dwpose")
    with pytest.raises(WeightsError, match=r"yolox_l\.onnx: SHA-256"):
        WS.verify("dwpose", tmp_path / "w")


def test_offline_mode_refuses_downloads_before_trying() -> None:
    with pytest.raises(WeightsError, match="HF_HUB_OFFLINE=1"):
        WD.download("sd-vae-ft-mse")


def test_tests_cannot_reach_the_network() -> None:
    import socket

    with pytest.raises(RuntimeError, match="network"):
        socket.create_connection(("huggingface.co", 443), timeout=1)
    assert os.environ["HF_HUB_OFFLINE"] == "1"


# ----------------------------------------------------------------- the authors' Drive folder
def _fake_drive(official_dir: Path, calls: list[str], omit: str | None = None):  # type: ignore[no-untyped-def]
    """A stand-in for gdown: 'downloads' the official files into a nested folder, as the release is."""

    def fetch(folder_id: str, output: Path) -> list[Path]:
        calls.append(folder_id)
        nested = output / "MotionFollower checkpoints"
        nested.mkdir(parents=True)
        for f in official_dir.iterdir():
            if f.name != omit:
                shutil.copyfile(f, nested / f.name)
        (nested / "README.txt").write_text("not a checkpoint")
        return sorted(nested.iterdir())

    return fetch


def test_official_download_imports_with_census_and_stamps_hashes(tmp_path: Path, official_dir: Path) -> None:
    from mfollow.io.hashing import sha256_file
    from mfollow.weights.drive import OFFICIAL_DRIVE_FOLDER, download_official

    calls: list[str] = []
    folder = download_official(tmp_path / "w", preset="tiny", fetch=_fake_drive(official_dir, calls))
    assert calls == [OFFICIAL_DRIVE_FOLDER] == ["1yWRNmd4-vbJfV1Ji_zhpNSwNpuJVat7o"]
    assert folder == tmp_path / "w" / "motionfollower" and sorted(p.name for p in (tmp_path / "w").iterdir()) == [
        "motionfollower"
    ]  # no staging left
    stamp = json.loads((folder / W.STAMP).read_text())
    assert stamp["source"] == f"google-drive:{OFFICIAL_DRIVE_FOLDER}"
    assert stamp["downloaded"]["poctr.pth"]["sha256"] == sha256_file(official_dir / "poctr.pth")
    assert WS.verify("motionfollower", tmp_path / "w")["unet/diffusion_pytorch_model.safetensors"] == "ok"
    with pytest.raises(WeightsError, match=r"holds no poctr\.pth"):
        download_official(tmp_path / "v", preset="tiny", fetch=_fake_drive(official_dir, [], omit="poctr.pth"))
    assert list((tmp_path / "v").iterdir()) == []  # nothing half-installed
    with pytest.raises(WeightsError, match="U-Net"):  # the census: tiny files are not the sd15 network
        download_official(tmp_path / "u", preset="sd15", fetch=_fake_drive(official_dir, []))
    assert list((tmp_path / "u").iterdir()) == []


def test_gdown_is_called_for_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    from mfollow.weights.drive import fetch_drive_folder

    seen: dict[str, object] = {}

    def download_folder(**kw: object) -> list[str]:
        seen.update(kw)
        (tmp_path / "f.pth").write_bytes(b"x")
        return [str(tmp_path / "f.pth")]

    monkeypatch.setitem(sys.modules, "gdown", types.SimpleNamespace(download_folder=download_folder))
    assert fetch_drive_folder("abc", tmp_path) == [tmp_path / "f.pth"]
    assert seen["id"] == "abc" and seen["output"] == str(tmp_path)

    def broken(**kw: object) -> None:
        raise RuntimeError("Cannot retrieve the folder information from the link.")

    monkeypatch.setitem(sys.modules, "gdown", types.SimpleNamespace(download_folder=broken))
    with pytest.raises(WeightsError, match="Cannot retrieve the folder information") as err:
        fetch_drive_folder("abc", tmp_path)
    assert "weights import --official" in str(err.value)
    monkeypatch.setitem(sys.modules, "gdown", None)  # not installed
    with pytest.raises(WeightsError, match="needs gdown"):
        fetch_drive_folder("abc", tmp_path)


def test_download_all_for_sd15_fetches_what_is_missing(tmp_path: Path, monkeypatch, capsys) -> None:
    from mfollow.cli import main

    fetched: list[str] = []

    def fake_download(name: str, to: Path | None = None, progress: object = None) -> Path:
        fetched.append(name)
        return (to or W.data_dir()) / name

    monkeypatch.setattr(WD, "download", fake_download)
    monkeypatch.setattr(WD, "check_downloadable", W.get_component)  # gdown need not be installed here
    vae = tmp_path / "w" / "sd-vae-ft-mse"  # already installed: skipped
    vae.mkdir(parents=True)
    for f in W.get_component("sd-vae-ft-mse").files:
        (vae / f.path).write_text("x")
    assert main(["weights", "download", "--all-for", "sd15", "--to", str(tmp_path / "w"), "--json"]) == 0
    assert fetched == ["sd-image-variations", "dwpose", "motionfollower"]
    doc = json.loads(capsys.readouterr().out)
    assert doc["already_installed"] == ["sd-vae-ft-mse"] and set(doc["installed"]) == set(fetched)
    assert main(["weights", "download"]) == 2


def test_download_without_gdown_says_so_before_anything(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import importlib.util

    from mfollow.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "gdown" else real(n, *a))
    monkeypatch.setattr(WD, "download", lambda *a, **k: pytest.fail("nothing may be downloaded"))
    assert main(["weights", "download", "sd-vae-ft-mse", "motionfollower"]) == 3
    assert "needs gdown" in capsys.readouterr().err
