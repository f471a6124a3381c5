"""SegDiT: shapes, the full-size parameter count, Eq. 8, and the segdit mask backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from mfollow.preprocess.masks.segdit import SegDiT, loss_mse

TINY = dict(channels=(8, 16, 16, 32), dim=32, depth=2, heads=2, groups=8)


def test_full_size_parameter_count_on_the_meta_device() -> None:
    with torch.device("meta"):
        model = SegDiT()
    n = sum(p.numel() for p in model.parameters())
    assert n == 23_844_321  # the paper: "only 23.5MB" (parameters)
    assert abs(n / 23.5e6 - 1) < 0.02


def test_forward_shapes_and_range() -> None:
    torch.manual_seed(0)
    model = SegDiT(**TINY).eval()
    frame, pose = torch.rand(2, 3, 64, 96) * 2 - 1, torch.rand(2, 3, 64, 96)
    with torch.no_grad():
        out = model(frame, pose)
    assert out.shape == (2, 1, 64, 96) and float(out.min()) >= 0 and float(out.max()) <= 1
    assert model.masks(frame, pose).dtype == torch.bool
    with torch.no_grad():  # the pose matters
        assert (model(frame, torch.zeros_like(pose)) - out).abs().max() > 0


def test_eq8_loss_and_a_training_step_lowers_it() -> None:
    torch.manual_seed(0)
    model = SegDiT(**TINY)
    frame, pose = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32)
    target = torch.zeros(1, 1, 32, 32)
    target[..., 8:24, 10:20] = 1
    assert loss_mse(target, target).item() == 0 and loss_mse(torch.ones_like(target), target).item() == pytest.approx(
        1 - 160 / 1024
    )
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = loss_mse(model(frame, pose), target)
    for _ in range(5):
        opt.zero_grad()
        loss = loss_mse(model(frame, pose), target)
        loss.backward()
        opt.step()
    assert loss_mse(model(frame, pose), target).item() < first.item()


def test_segdit_mask_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mfollow.preprocess.masks.files import read_masks
    from mfollow.preprocess.stages import align_stage, mask_stage, pose_stage
    from mfollow.synth import make_pair
    from mfollow.synth.files import write_pair

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    write_pair(make_pair(2, frames=3, size=64), tmp_path / "pair")
    pair, root = tmp_path / "pair", tmp_path / "proj"
    pose_stage(root, pair / "source.mp4", "source", pair / "source_poses.json")
    pose_stage(root, pair / "target.mp4", "target", pair / "target_poses.json")
    align_stage(root)
    bundled = mask_stage(root, source_masks=pair / "source_masks", edit_backend="segdit")  # the shipped SegDiT
    assert read_masks(Path(bundled["outputs"]["edit_masks/frame_00000.png"]).parent).shape == (3, 64, 64)
    torch.manual_seed(0)
    SegDiT(**TINY).save_pretrained(tmp_path / "w" / "segdit")
    report = mask_stage(root, source_masks=pair / "source_masks", edit_backend="segdit", weights_dir=tmp_path / "w")
    m_e = read_masks(Path(report["outputs"]["edit_masks/frame_00000.png"]).parent)
    assert m_e.shape == (3, 64, 64) and m_e.dtype == np.bool_
