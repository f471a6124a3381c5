"""Previews while sampling: the clean-frame estimate from two DDIM states, written every K steps."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from test_editing import inputs_of, settings

from mfollow.edit import preview
from mfollow.edit import run as editing
from mfollow.edit.output import decode
from mfollow.edit.preview import clean_estimate
from mfollow.edit.run import run_edit
from mfollow.edit.settings import PreviewSettings
from mfollow.sampling.state import SamplerSettings


def test_clean_estimate_inverts_a_ddim_step() -> None:
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(1, 4, 3, 8, 8, generator=g), torch.randn(1, 4, 3, 8, 8, generator=g)
    a_t, a_prev = 0.3, 0.7
    z_t = a_t**0.5 * x0 + (1 - a_t) ** 0.5 * eps
    z_prev = a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps
    torch.testing.assert_close(clean_estimate(z_t, z_prev, a_t, a_prev), x0, rtol=1e-5, atol=1e-5)
    assert clean_estimate(z_t, z_prev, a_t, 1.0) is z_prev  # the last step lands on x0


def test_previews_every_k_steps(tmp_path: Path, bundle, pair, monkeypatch: pytest.MonkeyPatch) -> None:
    written: list[int] = []
    real = preview.write_preview

    def spy(b, x0, frames, s, step, steps):  # type: ignore[no-untyped-def]
        written.append(step)
        return real(b, x0, frames, s, step, steps)

    monkeypatch.setattr(editing, "write_preview", spy)
    states: list[torch.Tensor] = []
    s = settings(sampler=SamplerSettings(steps=5, cfg=2.0, window=8, overlap=3),
                 preview=PreviewSettings(2, tmp_path / "preview"))  # fmt: skip
    run_edit(bundle, inputs_of(pair), s, tmp_path / "o.mp4", progress=lambda e: states.append(e["state"].z_e))
    assert written == [2, 4, 5]  # every 2 steps, and the last
    latest = tmp_path / "preview" / "latest"
    meta = json.loads((latest / "preview.json").read_text())
    assert meta["step"] == 5 and meta["frames"] == [3, 7]  # the middles of windows 0-8 and 4-12
    final = decode(bundle, states[-1][:, :, [3, 7]])  # the last preview is the final latents' frames
    from PIL import Image

    np.testing.assert_array_equal(np.asarray(Image.open(latest / "frame_00007.png")), final[1])
    assert sorted(p.name for p in (tmp_path / "preview").iterdir()) == ["latest"]  # no staging left


def test_no_preview_costs_nothing(tmp_path: Path, bundle, pair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(editing, "write_preview", lambda *a: pytest.fail("no preview was asked for"))
    monkeypatch.setattr(editing, "clean_estimate", lambda *a: pytest.fail("no preview was asked for"))
    run_edit(bundle, inputs_of(pair), settings(), tmp_path / "o.mp4")
