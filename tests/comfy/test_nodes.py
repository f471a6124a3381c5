"""The ComfyUI nodes as plain Python (ComfyUI's own services faked where a node calls them): the
graph gives the CLI's frames, nodes take ComfyUI's IMAGE and MASK forms, inputs are refused with
the CLI's errors before anything runs, progress and interrupts reach the sampler, and an
interrupted long edit resumes. ``test_comfyui_server.py`` runs the same nodes in a real ComfyUI."""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from clirun import run

from mfollow.comfy import NODE_CLASS_MAPPINGS
from mfollow.comfy.media import frames_of, image_tensor, mask_tensor, masks_of
from mfollow.comfy.nodes import (
    Align,
    Edit,
    EditLong,
    EstimatePoses,
    LoadModel,
    PersonMasks,
    Poses,
    request_options,
)
from mfollow.edit.request import EditRequest
from mfollow.io.media import media_frames
from mfollow.preprocess.masks.files import read_masks
from mfollow.preprocess.pose.backends import mediapipe_available
from mfollow.runtime.errors import MediaError, UsageError, WeightsError


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MFOLLOW_COMFY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "no-weights"))  # auto: the bundled model
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def world(synth_world: Callable[..., Path]) -> Path:
    return synth_world(6, 12)


def widgets(node: type, **changed: Any) -> dict[str, Any]:
    """A node's widget values as ComfyUI sends them by default, with ``changed``."""
    shown = {k: v[1]["default"] for k, v in node.INPUT_TYPES()["required"].items() if len(v) > 1 and "default" in v[1]}
    return shown | changed


def video(path: Path) -> torch.Tensor:
    """A video's frames as ComfyUI's LoadVideo gives them: an IMAGE of uint8 / 255."""
    return torch.from_numpy(np.stack(list(media_frames(path)))) / 255.0


def test_the_pack_lists_its_nodes_and_their_types() -> None:
    assert set(NODE_CLASS_MAPPINGS) == {
        "MFollowLoadModel", "MFollowPoses", "MFollowAlign", "MFollowMasks", "MFollowEdit", "MFollowEditLong",
    }  # fmt: skip
    for cls in NODE_CLASS_MAPPINGS.values():
        assert callable(getattr(cls, cls.FUNCTION)) and len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES)
    edit = Edit.INPUT_TYPES()["required"]
    assert edit["source"] == ("IMAGE",) and edit["M_r"] == edit["M_e"] == ("MASK",)
    assert edit["seed"][1]["default"] == EditRequest().seed and edit["guidance"][1]["default"] == EditRequest().guidance
    assert EditLong.INPUT_TYPES()["required"]["window"][1]["default"] == EditRequest().window


def test_images_and_masks_in_comfyuis_forms() -> None:
    frames = np.random.default_rng(0).integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)
    assert np.array_equal(frames_of(image_tensor(frames)), frames)  # exact both ways
    rgba = torch.cat([image_tensor(frames), torch.ones(3, 5, 7, 1)], dim=-1)
    assert np.array_equal(frames_of(rgba), frames)  # alpha dropped
    assert frames_of(image_tensor(frames)[0]).shape == (1, 5, 7, 3)  # one (H, W, 3) image
    m = np.zeros((5, 7), bool)
    m[1:3, 2:5] = True
    one = masks_of(mask_tensor(m), 3, "M_r")  # (H, W): one mask for every frame
    assert one.shape == (3, 5, 7) and all(np.array_equal(x, m) for x in one)
    assert np.array_equal(masks_of(mask_tensor(np.stack([m, ~m])), 2, "M_r")[1], ~m)
    with pytest.raises(UsageError, match="M_e: 2 masks for 3 frames"):
        masks_of(mask_tensor(np.stack([m, m])), 3, "M_e")
    with pytest.raises(UsageError, match=r"source: an IMAGE \(B, H, W, 3\) is needed, got shape \(2, 5\)"):
        frames_of(torch.zeros(2, 5), "source")


def test_widgets_are_refused_with_the_clis_errors() -> None:
    assert Edit.VALIDATE_INPUTS(**widgets(Edit)) is True
    assert EditLong.VALIDATE_INPUTS(**widgets(EditLong)) is True
    assert Edit.VALIDATE_INPUTS(**widgets(Edit, size=100)) == "--size 100 is not a multiple of 64"
    said = EditLong.VALIDATE_INPUTS(**widgets(EditLong, window=8, overlap=8))
    assert said == "--overlap 8 must be smaller than --window 8"
    cli = run("long", "s.mp4", "-o", "o.mp4", "--window", "8", "--overlap", "8")
    assert cli.returncode == 2 and said in cli.stderr  # the same line
    assert LoadModel.VALIDATE_INPUTS(device="tpu", dtype="float32") == "--device 'tpu': choose from cpu, cuda, mps"
    # unset widgets stand for the model's defaults, which the request resolves
    assert request_options(widgets(Edit), long=False) | {"seed": 0} == {
        "seed": 0, "steps": None, "guidance": "paper", "guidance_scale": None, "cfg": None, "size": None,
        "warp_person": None, "composite": True, "offload": False, "long": False,
    }  # fmt: skip


def test_errors_raise_typed_outside_comfyui_and_block_with_one_line_inside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(WeightsError, match="no-such-model"):
        LoadModel().load(model=str(tmp_path / "no-such-model"), device="cpu", dtype="float32")

    class ExecutionBlocker:  # ComfyUI's (comfy_execution.graph_utils): blocks what uses the output
        def __init__(self, message: str) -> None:
            self.message = message

    monkeypatch.setitem(sys.modules, "comfy_execution", types.ModuleType("comfy_execution"))
    utils = types.ModuleType("comfy_execution.graph_utils")
    utils.ExecutionBlocker = ExecutionBlocker  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "comfy_execution.graph_utils", utils)
    (blocked,) = LoadModel().load(model=str(tmp_path / "no-such-model"), device="cpu", dtype="float32")
    assert isinstance(blocked, ExecutionBlocker)
    assert blocked.message.startswith(f"mfollow LoadModel: --weights {tmp_path / 'no-such-model'}: no such folder")
    assert "\n" not in blocked.message and "Traceback" not in blocked.message


def _graph_and_cli(source: Path, target: Path, tmp_path: Path) -> tuple[Any, ...]:
    """Load model -> poses -> align -> masks -> edit on two videos (as ComfyUI's Load Video gives
    them), and ``mfollow edit SRC TGT -o FRAMES`` on the same videos: (the graph's frames, the
    CLI's, M_r, M_e, skeletons, the CLI's report)."""
    src, tgt = video(source), video(target)
    (model,) = LoadModel().load(**widgets(LoadModel))
    source_poses, skeletons = EstimatePoses().estimate(images=src, backend="auto")
    target_poses, _ = EstimatePoses().estimate(images=tgt, backend="auto")
    edit_poses, _ = Align().align(model=model, source_poses=source_poses, target_poses=target_poses)
    M_r, M_e = PersonMasks().masks(edit_poses=edit_poses, edit_backend="auto")
    (out,) = Edit().edit(
        model=model, source=src, source_poses=source_poses, edit_poses=edit_poses, M_r=M_r, M_e=M_e,
        **widgets(Edit, steps=3),
    )  # fmt: skip
    r = run("edit", str(source), str(target), "-o", str(tmp_path / "cli"), "--steps", "3",
            "--json", env={"XDG_DATA_HOME": str(tmp_path / "no-weights")})  # fmt: skip
    assert r.returncode == 0, r.stderr
    return frames_of(out), np.stack(list(media_frames(tmp_path / "cli"))), M_r, M_e, skeletons, json.loads(r.stdout)


@pytest.mark.slow
@pytest.mark.skipif(not mediapipe_available(), reason="the graph's poses and masks need mediapipe")
def test_the_graph_gives_the_clis_frames(tmp_path: Path) -> None:
    """On a synthetic pair with the bundled model (mediapipe poses and segments the puppets of this
    seed in every frame)."""
    from mfollow.synth import make_pair
    from mfollow.synth.files import write_pair

    pair = tmp_path / "pair"
    write_pair(make_pair(6, frames=8, size=128, camera="pan"), pair)
    out, cli, M_r, M_e, skeletons, report = _graph_and_cli(pair / "source.mp4", pair / "target.mp4", tmp_path)
    assert skeletons.shape == (8, 128, 128, 3) and skeletons.max() > 0
    assert M_r.shape == M_e.shape == (8, 128, 128) and M_e.sum() > 0
    assert report["pose_backend"] == {"source": "mediapipe", "target": "mediapipe"}
    assert report["mask_backend"] == {"source": "mediapipe", "edit": "warp"}
    assert np.array_equal(out, cli)
    from mfollow.preprocess.stages import project_inputs

    staged = project_inputs(tmp_path / "cli.mfollow")  # the CLI's project: its stages' masks are the nodes'
    assert staged is not None
    assert np.array_equal(read_masks(staged["source_masks"]), M_r.numpy() > 0.5)
    assert np.array_equal(read_masks(staged["edit_masks"]), M_e.numpy() > 0.5)


@pytest.mark.slow
@pytest.mark.skipif(not mediapipe_available(), reason="the graph's poses and masks need mediapipe")
def test_the_graph_gives_the_clis_frames_on_photographs(tmp_path: Path) -> None:
    """On photographed people (scikit-image's astronaut, the cameraman as the motion) at 256 px,
    which the model works on at 128 px: the frames the nodes pass are resized as the CLI's video
    frames are."""
    from fractions import Fraction

    from PIL import Image

    from mfollow.io.video import write_video

    data = pytest.importorskip("skimage.data")
    photo = np.asarray(Image.fromarray(data.astronaut()).resize((256, 256)))
    cameraman = np.asarray(Image.fromarray(data.camera()).convert("RGB").resize((256, 256)))
    write_video(tmp_path / "src.mp4", [np.roll(photo, 2 * i, axis=1) for i in range(4)], range(4), Fraction(1, 12))
    write_video(tmp_path / "tgt.mp4", [np.roll(cameraman, -2 * i, axis=1) for i in range(4)], range(4),
                Fraction(1, 12))  # fmt: skip
    out, cli, _, _, _, report = _graph_and_cli(tmp_path / "src.mp4", tmp_path / "tgt.mp4", tmp_path)
    assert report["working_size"] == [128, 128] and out.shape == (4, 256, 256, 3)
    assert np.array_equal(out, cli)


def _given(world: Path) -> dict[str, Any]:
    """The pair's own poses and masks as the nodes pass them (no estimator needed)."""
    p = world / "pair"
    frames = world / "pair" / "source.mp4"
    return {
        "source": video(frames),
        "source_poses": Poses(p / "source_poses.json", frames, world),
        "edit_poses": Poses(p / "edit_poses.json", frames, world),
        "M_r": mask_tensor(read_masks(p / "source_masks")),
        "M_e": mask_tensor(read_masks(p / "edit_masks")),
    }


class Interrupted(Exception):
    """ComfyUI's InterruptProcessingException."""


def _fake_comfy(monkeypatch: pytest.MonkeyPatch, stop_after: int | None) -> list[tuple[int, int]]:
    """ComfyUI's progress bar and interrupt check (comfy.utils, comfy.model_management); the
    interrupt comes at the ``stop_after``-th check. Returns the bar's updates."""
    updates: list[tuple[int, int]] = []
    checks = {"n": 0}

    class ProgressBar:
        def __init__(self, total: int) -> None:
            self.total = total

        def update_absolute(self, value: int, total: int | None = None) -> None:
            updates.append((value, total or self.total))

    def throw_exception_if_processing_interrupted() -> None:
        checks["n"] += 1
        if stop_after is not None and checks["n"] >= stop_after:
            raise Interrupted

    comfy = types.ModuleType("comfy")
    utils, mm = types.ModuleType("comfy.utils"), types.ModuleType("comfy.model_management")
    utils.ProgressBar = ProgressBar  # type: ignore[attr-defined]
    mm.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted  # type: ignore[attr-defined]
    comfy.utils, comfy.model_management = utils, mm  # type: ignore[attr-defined]
    for name, module in (("comfy", comfy), ("comfy.utils", utils), ("comfy.model_management", mm)):
        monkeypatch.setitem(sys.modules, name, module)
    return updates


@pytest.mark.slow
def test_an_interrupted_long_edit_resumes_where_it_stopped(
    world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, _cache: Path
) -> None:
    (model,) = LoadModel().load(**widgets(LoadModel, model=str(world / "bundle")))
    options = widgets(EditLong, steps=4, size=64, window=8, overlap=4)
    updates = _fake_comfy(monkeypatch, stop_after=2)
    with pytest.raises(Interrupted):  # stops at the next step, the checkpoint kept
        EditLong().edit(model=model, **_given(world), **options)
    assert updates == [(1, 4), (2, 4)]
    (checkpoint,) = (_cache / "long").glob("*/long/state.safetensors")
    updates = _fake_comfy(monkeypatch, stop_after=None)
    (resumed,) = EditLong().edit(model=model, **_given(world), **options)
    assert updates == [(3, 4), (4, 4)] and not checkpoint.exists()  # the last two steps only
    _fake_comfy(monkeypatch, stop_after=None)
    elsewhere = {**options, "cache_dir": str(tmp_path / "elsewhere")}
    (straight,) = EditLong().edit(model=model, **_given(world), **elsewhere)
    assert torch.equal(resumed, straight) and resumed.shape == (12, 64, 64, 3)
    assert list((tmp_path / "elsewhere").glob("*/result.json"))  # cache_dir holds that run's project


def test_a_clip_longer_than_a_window_is_refused_by_edit(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (model,) = LoadModel().load(**widgets(LoadModel, model=str(world / "bundle")))
    given = _given(world)
    with pytest.raises(UsageError, match="is more than one window"):
        Edit().edit(model=model, **given, **widgets(Edit, steps=1, size=64, max_frames=4))
    with pytest.raises((UsageError, MediaError), match="M_e: 3 masks for 12 frames"):
        Edit().edit(model=model, **{**given, "M_e": given["M_e"][:3]}, **widgets(Edit, steps=1, size=64))
