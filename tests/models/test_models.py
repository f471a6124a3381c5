"""The 3D U-Net, motion modules and controllers (tiny preset, CPU; sd15 on the meta device)."""

from __future__ import annotations

import itertools

import pytest
import torch
from diffusers import UNet2DConditionModel

from mfollow.models.controllers import PoseController
from mfollow.models.motion import MotionModule
from mfollow.models.presets import SD15, TINY
from mfollow.models.unet3d import UNET2D_FIELDS, UNet3D

MM_SUFFIXES = sorted(
    [f"{p}.{w}" for p in ("norm", "proj_in", "proj_out") for w in ("weight", "bias")]
    + [
        f"transformer_blocks.0.attention_blocks.{k}.{n}"
        for k in (0, 1)
        for n in ("to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight", "to_out.0.bias")
    ]
    + [f"transformer_blocks.0.{n}.{w}" for n in ("norms.0", "norms.1", "ff_norm") for w in ("weight", "bias")]
    + [f"transformer_blocks.0.ff.net.{n}.{w}" for n in ("0.proj", "2") for w in ("weight", "bias")]
)


def tiny_unet(seed: int = 0) -> UNet3D:
    torch.manual_seed(seed)
    return UNet3D(**TINY.unet).eval()


def randomise_motion_modules(unet: UNet3D, seed: int = 1) -> None:
    g = torch.Generator().manual_seed(seed)
    for name, p in unet.named_parameters():
        if ".motion_modules." in name and "proj_out" in name:
            p.data = torch.randn(p.shape, generator=g) * 0.1


def inputs(frames: int = 4, size: int = 16, batch: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    c = TINY.unet["in_channels"]
    return torch.randn(batch, c, frames, size, size, generator=g), torch.randn(batch, frames, 32, generator=g)


# ------------------------------------------------------------------------------- spatial
def test_equals_diffusers_2d_unet_frame_by_frame() -> None:
    unet = tiny_unet()
    base = UNet2DConditionModel(**{k: v for k, v in unet.config.items() if k in UNET2D_FIELDS}).eval()
    missing, unexpected = base.load_state_dict(unet.state_dict(), strict=False)
    assert missing == [] and all(".motion_modules." in k or k.startswith("appearance_adapter.") for k in unexpected)
    x, ctx = inputs(frames=5, batch=2)
    with torch.no_grad():
        ours = unet(x, torch.tensor([10, 700]), ctx).sample
        c = x.shape[1]
        folded = x.permute(0, 2, 1, 3, 4).reshape(10, c, 16, 16)  # (B, C, F, H, W) -> (B*F, C, H, W)
        ref = base(folded, torch.tensor([10] * 5 + [700] * 5), encoder_hidden_states=ctx.reshape(10, 1, 32)).sample
    torch.testing.assert_close(ours, ref.reshape(2, 5, c, 16, 16).permute(0, 2, 1, 3, 4), atol=1e-5, rtol=1e-5)


def test_sd15_key_set_and_shapes_on_meta_device() -> None:
    with torch.device("meta"):
        unet = UNet3D(**SD15.unet)
        base = UNet2DConditionModel(**{k: v for k, v in unet.config.items() if k in UNET2D_FIELDS})
        poctr = PoseController(**SD15.poctr)
    ours = {k: tuple(v.shape) for k, v in unet.state_dict().items()}
    ref = {k: tuple(v.shape) for k, v in base.state_dict().items()}
    assert {k: ours[k] for k in ref} == ref  # every base key, same shapes
    locations = (
        [f"down_blocks.{i}.motion_modules.{j}" for i, j in itertools.product(range(4), range(2))]
        + ["mid_block.motion_modules.0"]
        + [f"up_blocks.{i}.motion_modules.{j}" for i, j in itertools.product(range(4), range(3))]
    )
    assert len(locations) == 21
    expected_mm = {f"{loc}.temporal_transformer.{s}" for loc in locations for s in MM_SUFFIXES}
    adapter = {k for k in ours if k.startswith("appearance_adapter.")}
    assert set(ours) - set(ref) == expected_mm | adapter
    body = [f"body.{k}.{c}.{w}" for k in range(8) for c in ("block1", "block2") for w in ("weight", "bias")]
    body += [f"body.{k}.in_conv.{w}" for k in (2, 4) for w in ("weight", "bias")]
    assert adapter == {f"appearance_adapter.{n}" for n in ["conv_in.weight", "conv_in.bias", *body]}  # 38 tensors
    assert ours["appearance_adapter.conv_in.weight"] == (320, 192, 3, 3)
    assert ours["appearance_adapter.body.2.in_conv.weight"] == (640, 320, 1, 1)
    assert ours["appearance_adapter.body.4.in_conv.weight"] == (1280, 640, 1, 1)
    assert ours["appearance_adapter.body.7.block2.weight"] == (1280, 1280, 1, 1)
    assert ours["up_blocks.3.motion_modules.2.temporal_transformer.transformer_blocks.0.ff.net.0.proj.weight"] == (
        2560,
        320,
    )
    poctr_shapes = {
        "conv_in": (16, 3), "blocks.0": (16, 16), "blocks.1": (32, 16), "blocks.2": (32, 32),
        "blocks.3": (96, 32), "blocks.4": (96, 96), "blocks.5": (256, 96), "conv_out": (320, 256),
    }  # fmt: skip
    expected = {f"{n}.weight": (o, i, 3, 3) for n, (o, i) in poctr_shapes.items()}
    expected |= {f"{n}.bias": (o,) for n, (o, _) in poctr_shapes.items()}
    assert {k: tuple(v.shape) for k, v in poctr.state_dict().items()} == expected  # 16 tensors, official names


# ------------------------------------------------------------------------------ temporal
def test_motion_module_is_identity_at_initialisation() -> None:
    torch.manual_seed(0)
    mm = MotionModule(16, heads=2, groups=4)
    x = torch.randn(2 * 6, 16, 5, 5)
    torch.testing.assert_close(mm(x, 6), x, atol=0, rtol=0)


def _motion_module(seed: int = 0) -> MotionModule:
    torch.manual_seed(seed)
    mm = MotionModule(16, heads=2, groups=4).eval()
    torch.nn.init.normal_(mm.temporal_transformer.proj_out.weight, std=0.2)
    return mm


def _frame0_invariant_to_rescaling_frame1(mm: MotionModule) -> bool:
    x = torch.randn(4, 16, 3, 3, generator=torch.Generator().manual_seed(3))  # B=1, F=4 folded
    y = x.clone()
    y[1] = 5.0 * x[1] + 3.0  # a per-frame affine change: per-frame GroupNorm cancels it
    with torch.no_grad():
        return torch.allclose(mm(x, 4)[0], mm(y, 4)[0], atol=1e-5)


def test_motion_module_normalises_per_frame() -> None:
    mm = _motion_module()
    assert _frame0_invariant_to_rescaling_frame1(mm)
    # the same check fails for statistics pooled across frames (diffusers' temporal blocks)
    norm = mm.temporal_transformer.norm

    class AcrossFrames(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            bf, c, h, w = x.shape
            pooled = x.reshape(1, bf, c, h * w).permute(0, 2, 1, 3).reshape(1, c, bf * h, w)  # frames pooled
            out = torch.nn.functional.group_norm(pooled, norm.num_groups, norm.weight, norm.bias, norm.eps)
            return out.reshape(1, c, bf, h * w).permute(0, 2, 1, 3).reshape(bf, c, h, w)

    mm.temporal_transformer.norm = AcrossFrames()
    assert not _frame0_invariant_to_rescaling_frame1(mm)


def test_frames_interact_only_through_motion_modules() -> None:
    unet = tiny_unet()
    x, ctx = inputs(frames=4)
    y = x.clone()
    y[:, :, 2] += 1.0  # change frame 2 only
    with torch.no_grad():
        a, b = unet(x, 300, ctx).sample, unet(y, 300, ctx).sample
    torch.testing.assert_close(a[:, :, [0, 1, 3]], b[:, :, [0, 1, 3]], atol=0, rtol=0)
    randomise_motion_modules(unet)
    with torch.no_grad():
        a, b = unet(x, 300, ctx).sample, unet(y, 300, ctx).sample
    assert (a[:, :, 0] - b[:, :, 0]).abs().max() > 1e-4


def test_too_many_frames_is_an_error() -> None:
    mm = MotionModule(8, heads=2, groups=4, max_len=4)
    with pytest.raises(ValueError, match="exceed"):
        mm(torch.zeros(5, 8, 2, 2), 5)


# ---------------------------------------------------------------------------- controllers
def test_controllers_shapes_zero_init_and_injection() -> None:
    unet = tiny_unet()
    torch.manual_seed(1)
    poctr = PoseController(**TINY.poctr)
    poses = torch.rand(1, 3, 4, 128, 128)
    feats = poctr(poses)
    assert feats.shape == (1, 32, 4, 16, 16) and feats.abs().max() == 0  # zero-initialised output
    source = torch.rand(1, 3, 4, 128, 128) * 2 - 1
    app = unet.appearance_features(source)
    assert [tuple(a.shape) for a in app] == [(4, 32, 16, 16), (4, 64, 8, 8), (4, 64, 4, 4), (4, 64, 2, 2)]
    x, ctx = inputs(frames=4)
    with torch.no_grad():
        plain = unet(x, 300, ctx).sample
        torch.testing.assert_close(unet(x, 300, ctx, pose_features=feats).sample, plain, atol=0, rtol=0)
        torch.nn.init.normal_(poctr.conv_out.weight, std=0.05)
        assert (unet(x, 300, ctx, pose_features=poctr(poses)).sample - plain).abs().max() > 1e-4
        with_app = unet(x, 300, ctx, appearance=app).sample
        assert (with_app - plain).abs().max() > 1e-4


def test_appearance_features_are_shared_across_cfg_halves() -> None:
    unet = tiny_unet()
    source = torch.rand(1, 3, 3, 128, 128) * 2 - 1
    x, ctx = inputs(frames=3, batch=2)
    with torch.no_grad():
        shared = unet(x, 50, ctx, appearance=unet.appearance_features(source)).sample
        doubled = unet(x, 50, ctx, appearance=unet.appearance_features(source.repeat(2, 1, 1, 1, 1))).sample
    torch.testing.assert_close(shared, doubled, atol=1e-6, rtol=1e-6)


def test_feature_taps() -> None:
    unet = tiny_unet()
    x, ctx = inputs(frames=2)
    with torch.no_grad():
        out = unet(x, 1, ctx)
        assert {k: tuple(v.shape) for k, v in out.features.items()} == {1: (1, 64, 2, 8, 8), 2: (1, 64, 2, 16, 16)}
        assert set(unet(x, 1, ctx, taps=(0, 3)).features) == {0, 3}


def test_gradient_checkpointing_gives_the_same_gradients_in_eval_mode() -> None:
    unet = tiny_unet()
    randomise_motion_modules(unet)
    x, ctx = inputs(frames=3)

    def grad() -> torch.Tensor:
        z = x.clone().requires_grad_(True)
        with torch.enable_grad():
            out = unet(z, 400, ctx)
            loss = out.sample.square().mean() + out.features[1].mean()
            return torch.autograd.grad(loss, z)[0]

    plain = grad()
    unet.enable_gradient_checkpointing()
    assert unet.gradient_checkpointing and not unet.training
    torch.testing.assert_close(grad(), plain, atol=1e-6, rtol=1e-5)


def test_a_features_only_pass_records_no_graph_after_the_last_tap() -> None:
    """``sample_grad=False`` (the guided pass: only the features are differentiated): the up blocks
    after the last tap and the head run without autograd, the prediction has no graph, the
    features' gradient is the same bits, and fewer activations are saved."""
    unet = tiny_unet()
    randomise_motion_modules(unet)
    x, ctx = inputs(frames=3)
    grad_on: dict[str, bool] = {}
    for name in ("up_blocks.0", "up_blocks.1", "up_blocks.2", "up_blocks.3", "conv_out"):
        module = unet.get_submodule(f"{name}.resnets.0" if name.startswith("up") else name)  # the block's first layer
        module.register_forward_pre_hook(lambda _m, _a, name=name: grad_on.__setitem__(name, torch.is_grad_enabled()))

    def run(sample_grad: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        z = x.clone().requires_grad_(True)
        saved: list[int] = []

        def pack(t: torch.Tensor) -> torch.Tensor:
            saved.append(t.numel() * t.element_size())
            return t

        with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = unet(z, 400, ctx, sample_grad=sample_grad)
        loss = out.features[1].square().mean() + out.features[2].mean()
        return out.sample, out.features[2], torch.autograd.grad(loss, z)[0], sum(saved)

    v, f, g, full = run(True)
    assert all(grad_on.values()) and v.grad_fn is not None
    v_tail, f_tail, g_tail, lean = run(False)
    assert grad_on == {"up_blocks.0": True, "up_blocks.1": True, "up_blocks.2": True,
                       "up_blocks.3": False, "conv_out": False}  # fmt: skip
    assert v_tail.grad_fn is None and not v_tail.requires_grad and f_tail.grad_fn is not None
    assert torch.equal(v_tail, v.detach()) and torch.equal(f_tail, f) and torch.equal(g_tail, g)
    assert lean < full


def test_attention_uses_sdpa() -> None:
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    processors = {type(m.processor) for m in tiny_unet().modules() if isinstance(m, Attention)}
    assert processors == {AttnProcessor2_0}  # torch scaled_dot_product_attention (motion modules call it directly)
