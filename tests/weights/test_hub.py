"""Bundles on the Hugging Face Hub: ``from_pretrained("org/name")`` through the Hub's cache, and
``save_pretrained`` writing what it loads. No network: the offline loads run huggingface_hub's own
``snapshot_download`` on a cache laid out as the Hub lays it out; the online load replaces only the
transfer (``snapshot_download``) with a local fake hub that fills that cache."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

from mfollow import MotionFollowerPipeline
from mfollow.models.bundle import ModelBundle
from mfollow.runtime.errors import UsageError, WeightsError
from mfollow.weights.hub import BUNDLE_PATTERNS, is_repo_id

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import huggingface_hub.constants

    cache = tmp_path / "hf-cache"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)  # "org/name" is no folder here
    return cache


def _cache_repo(cache: Path, repo_id: str, files: Path, revision: str = "main") -> Path:
    """``files`` laid out in ``cache`` as huggingface_hub caches a repository at ``revision``."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / revision).write_text(COMMIT)
    snap = repo / "snapshots" / COMMIT
    shutil.copytree(files, snap)
    return snap


class _Response:
    """What huggingface_hub's HTTP errors read of a response."""

    headers: dict[str, str] = {}  # noqa: RUF012
    status_code = 404
    request = None


def _same_weights(a: ModelBundle, b: ModelBundle) -> bool:
    sa, sb = a.unet.state_dict(), b.unet.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_a_saved_pipeline_loads_by_name_from_the_cache_offline(tmp_path: Path, hub_cache: Path) -> None:
    saved = MotionFollowerPipeline(ModelBundle.random("tiny", seed=3), "id").save_pretrained(tmp_path / "saved")
    assert sorted(p.name for p in saved.iterdir()) == [
        "image_encoder", "mfollow_bundle.json", "poctr", "scheduler", "unet", "vae",
    ]  # fmt: skip
    assert {p.suffix for p in saved.rglob("*") if p.is_file()} == {".json", ".safetensors"}  # BUNDLE_PATTERNS
    snap = _cache_repo(hub_cache, "mfollow/tiny-test", saved)
    pipe = MotionFollowerPipeline.from_pretrained("mfollow/tiny-test", offline=True)
    assert pipe.bundle.preset == "tiny" and pipe.bundle.source == str(snap)
    assert _same_weights(pipe.bundle, ModelBundle.random("tiny", seed=3))
    with pytest.raises(WeightsError, match="not in the Hugging Face cache"):
        MotionFollowerPipeline.from_pretrained("mfollow/other", offline=True)
    with pytest.raises(WeightsError, match="not in the Hugging Face cache"):  # HF_HUB_OFFLINE=1 (conftest)
        MotionFollowerPipeline.from_pretrained("mfollow/other")


def test_an_online_load_fetches_the_bundle_files_once(
    tmp_path: Path, hub_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import huggingface_hub
    from huggingface_hub.errors import RepositoryNotFoundError

    served = MotionFollowerPipeline(ModelBundle.random("tiny", seed=4), "id").save_pretrained(tmp_path / "served")
    calls: list[dict[str, Any]] = []
    real = huggingface_hub.snapshot_download

    def fake(repo_id: str, **kw: Any) -> str:
        """The transfer of a hub serving ``served`` as ``mfollow/served``; the cache and offline
        reads are huggingface_hub's own."""
        calls.append({"repo_id": repo_id, **kw})
        if kw.get("local_files_only"):
            return real(repo_id, **kw)
        if repo_id != "mfollow/served":
            raise RepositoryNotFoundError(f"{repo_id}: 404", response=_Response())  # type: ignore[arg-type]
        return str(_cache_repo(hub_cache, repo_id, served, kw.get("revision") or "main"))

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake)
    pipe = MotionFollowerPipeline.from_pretrained("mfollow/served", offline=False)
    assert calls == [
        {"repo_id": "mfollow/served", "revision": None, "allow_patterns": BUNDLE_PATTERNS, "local_files_only": False}
    ]
    assert _same_weights(pipe.bundle, ModelBundle.random("tiny", seed=4))
    again = MotionFollowerPipeline.from_pretrained("mfollow/served", offline=True)  # from the cache now
    assert _same_weights(again.bundle, pipe.bundle)
    with pytest.raises(WeightsError, match="nor a model repository on the Hub"):
        MotionFollowerPipeline.from_pretrained("mfollow/missing", offline=False)


def test_names_folders_and_settings(tmp_path: Path, hub_cache: Path) -> None:
    assert is_repo_id("org/name") and is_repo_id("my-org/model.v2")
    assert not is_repo_id("tiny") and not is_repo_id("/abs/path") and not is_repo_id("a/b/c")
    assert not is_repo_id("../x") and not is_repo_id("org/")
    local = tmp_path / "org" / "name"  # a folder of that name here wins over the Hub
    MotionFollowerPipeline(ModelBundle.random("tiny", seed=5), "id").save_pretrained(local)
    assert not is_repo_id("org/name")
    assert MotionFollowerPipeline.from_pretrained("org/name").bundle.source == "org/name"
    with pytest.raises(UsageError, match="--dtype 'float8'"):  # the request's own check, before any load
        MotionFollowerPipeline.from_pretrained("org/name", dtype="float8")
