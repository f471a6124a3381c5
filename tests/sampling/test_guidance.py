"""Consistency-guidance losses: closed forms on hand-built features, empty regions, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from mfollow.sampling.guidance import (
    GuidanceWeights,
    consistency_losses,
    guidance_gradient,
    loss_body,
    loss_com,
    loss_fg,
    loss_over,
    regions,
    to_frames,
)

W = GuidanceWeights()


def masks(n: int = 2, h: int = 8, w: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """M_e: columns 2..5; M_r: columns 4..7: every region of Eqs. 2-5 is non-empty."""
    M_e = torch.zeros(1, 1, n, h, w, dtype=torch.float64)
    M_r = torch.zeros_like(M_e)
    M_e[..., 2:6] = 1
    M_r[..., 4:8] = 1
    return M_e, M_r


def const(v: list[float], n: int = 2, h: int = 8, w: int = 8) -> torch.Tensor:
    """(1, C, N, H, W) features equal to the vector v at every pixel."""
    return torch.tensor(v, dtype=torch.float64).view(1, -1, 1, 1, 1).expand(1, len(v), n, h, w).clone()


def frames(*xs: torch.Tensor) -> list[torch.Tensor]:
    return [to_frames(x) for x in xs]


def test_identical_features_closed_form() -> None:
    M_e, M_r = masks()
    m = {k: to_frames(v) for k, v in regions(M_e, M_r).items()}
    e, r = frames(const([1.0, 2.0, 3.0]), const([1.0, 2.0, 3.0]))
    assert loss_fg(e, r, m, W).item() == pytest.approx(W.alpha_fg / 3)  # Sim = 1
    assert loss_over(e, r, m).item() == pytest.approx(1 / 3)
    assert loss_body(e, r, m).item() == pytest.approx(1.0)
    assert loss_com(e, r, m).item() == pytest.approx(1 / 3)
    L_fg, L_bg = consistency_losses([const([1.0, 2.0, 3.0])], [const([1.0, 2.0, 3.0])], M_e, M_r)
    assert L_fg.item() == pytest.approx(W.alpha_fg / 3)
    assert L_bg.item() == pytest.approx(W.alpha_over / 3 + W.alpha_body + W.alpha_com / 3)


def test_orthogonal_and_mixed_features() -> None:
    M_e, M_r = masks()
    m = {k: to_frames(v) for k, v in regions(M_e, M_r).items()}
    e, r = frames(const([1.0, 0.0]), const([0.0, 1.0]))
    assert loss_fg(e, r, m, W).item() == pytest.approx(W.alpha_fg)  # Sim = 0
    assert loss_over(e, r, m).item() == pytest.approx(1.0) and loss_body(e, r, m).item() == pytest.approx(0.0)
    # on M_over (columns 0..1) half the pixels agree (cos 1) and half are opposite (cos -1): Avg = 0
    fr = const([1.0, 0.0])
    fr[..., 1] = -fr[..., 1]  # column 1 opposite, column 0 equal: M_over is columns 0..1
    e, r = frames(const([1.0, 0.0]), fr)
    assert loss_over(e, r, m).item() == pytest.approx(1.0)


def test_empty_regions_give_zero_not_nan() -> None:
    M_e, _ = masks()
    e, r = const([1.0, 2.0]), const([2.0, 1.0])
    L_fg, L_bg = consistency_losses([e], [r], M_e, M_e.clone())  # M_body is empty everywhere
    m = {k: to_frames(v) for k, v in regions(M_e, M_e).items()}
    assert loss_body(*frames(e, r), m).item() == 0 and loss_com(*frames(e, r), m).item() == 0
    assert math.isfinite(L_fg.item()) and math.isfinite(L_bg.item())
    none = torch.zeros_like(M_e)
    L_fg, L_bg = consistency_losses([e], [r], none, none)  # no person anywhere
    assert L_fg.item() == 0 and math.isfinite(L_bg.item())
    M_e2, M_r2 = masks()
    M_r2[:, :, 1] = 0  # frame 1 has no source person: only frame 0 counts for the fg term
    r2 = r.clone()
    r2[:, :, 1] = -r2[:, :, 1]
    a, _ = consistency_losses([e], [r2], M_e2, M_r2)
    b, _ = consistency_losses([e[:, :, :1]], [r2[:, :, :1]], M_e2[:, :, :1], M_r2[:, :, :1])
    assert a.item() == pytest.approx(b.item())


def test_the_pole_is_guarded() -> None:
    M_e, M_r = masks()
    L_fg, L_bg = consistency_losses([const([1.0, 0.0])], [const([-1.0, 0.0])], M_e, M_r)  # Sim = -1
    assert math.isfinite(L_fg.item()) and L_fg.item() == pytest.approx(W.alpha_fg / 1e-2)
    assert math.isfinite(L_bg.item())


def test_official_variant_closed_form() -> None:
    M_e, M_r = masks()
    f = const([0.5, -1.0, 2.0])
    L_fg, L_bg = consistency_losses([f, f], [f, f], M_e, M_r, variant="official")
    # per level: fg 0.5*4*(1/5); content 0.5*6*(1/5); contrast 0.5*1.2*1; inpaint 1.2*(1/(1+4*1))
    assert L_fg.item() == pytest.approx(2 * 0.5 * 4.0 * 0.2)
    assert L_bg.item() == pytest.approx(2 * (0.5 * 6.0 * 0.2 + 0.5 * 1.2 * 1.0 + 1.2 * 0.2))
    with pytest.raises(ValueError, match="unknown guidance variant"):
        consistency_losses([f], [f], M_e, M_r, variant="fancy")


def _feature_net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Conv2d(4, 6, 3, padding=1).double()


def _features(net: torch.nn.Module, z: torch.Tensor) -> list[torch.Tensor]:
    b, _c, n, h, w = z.shape
    f = net(to_frames(z))  # (N, 6, h, w)
    f = torch.tanh(f).reshape(b, n, 6, h, w).permute(0, 2, 1, 3, 4)  # (B, C, N, h, w)
    return [f, torch.nn.functional.avg_pool3d(f, (1, 2, 2))]  # two levels of different sizes


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_guidance_gradient_matches_finite_differences(variant: str) -> None:
    net = _feature_net()
    g = torch.Generator().manual_seed(1)
    z = torch.randn(1, 4, 2, 8, 8, generator=g, dtype=torch.float64)
    z_r = torch.randn(1, 4, 2, 8, 8, generator=g, dtype=torch.float64)
    M_e, M_r = masks()
    with torch.no_grad():
        F_r = _features(net, z_r)

    def losses(zz: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return consistency_losses(_features(net, zz), F_r, M_e, M_r, variant=variant)

    z_req = z.clone().requires_grad_(True)
    L_fg, L_bg = losses(z_req)
    grad = guidance_gradient(z_req, L_fg, L_bg, M_e)  # latent-size mask = M_e here
    eps = 1e-6
    for index in [(0, 0, 0, 3, 3), (0, 2, 1, 5, 2), (0, 1, 0, 0, 7), (0, 3, 1, 7, 0)]:
        zp, zm = z.clone(), z.clone()
        zp[index] += eps
        zm[index] -= eps
        fd_fg = (losses(zp)[0] - losses(zm)[0]).item() / (2 * eps)
        fd_bg = (losses(zp)[1] - losses(zm)[1]).item() / (2 * eps)
        expected = fd_fg if M_e[index[0], 0, index[2], index[3], index[4]] == 1 else fd_bg
        assert grad[index].item() == pytest.approx(expected, rel=1e-4, abs=1e-9), index


def test_gradient_vanishes_when_the_branches_agree() -> None:
    # With M_e == M_r every term compares the same places (Eqs. 3-4 per pixel, Eq. 2 over the same
    # region; M_body is empty): each is a function of cosines, stationary where the features agree.
    net = _feature_net()
    z = torch.randn(1, 4, 2, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    M_e, _ = masks()
    M_r = M_e.clone()
    with torch.no_grad():
        F_r = _features(net, z)
    z_req = z.clone().requires_grad_(True)
    L_fg, L_bg = consistency_losses(_features(net, z_req), F_r, M_e, M_r)
    grad = guidance_gradient(z_req, L_fg, L_bg, M_e)
    assert grad.abs().max().item() < 1e-9  # every term is a function of cosines, stationary at equality


def test_losses_without_a_graph_give_zero_gradient() -> None:
    z = torch.zeros(1, 4, 2, 8, 8, requires_grad=True)
    zero = torch.zeros(())
    assert torch.equal(guidance_gradient(z, zero, zero, torch.ones(1, 1, 2, 8, 8)), torch.zeros_like(z))


@pytest.mark.parametrize("variant", ["paper", "official"])
def test_levels_at_their_own_resolution_equal_upsampled_features(variant: str) -> None:
    """Block-summed masks on a level's own grid give the losses (and gradients) of the features
    nearest-upsampled to the common size, as the paper and the release write them."""
    g = torch.Generator().manual_seed(0)
    F_e = [torch.randn(1, 5, 3, s, s, generator=g, dtype=torch.float64, requires_grad=True) for s in (4, 8)]
    F_r = [torch.randn(1, 5, 3, s, s, generator=g, dtype=torch.float64) for s in (4, 8)]
    M_e = (torch.rand(1, 1, 3, 64, 64, generator=g) > 0.6).double()
    M_r = (torch.rand(1, 1, 3, 64, 64, generator=g) > 0.5).double()

    def up(x: torch.Tensor) -> torch.Tensor:  # (1, C, N, s, s) -> (1, C, N, 16, 16), nearest
        return torch.nn.functional.interpolate(x, size=(x.shape[2], 16, 16), mode="nearest")

    fast = consistency_losses(F_e, F_r, M_e, M_r, variant=variant)  # default size 16: the block path
    slow = consistency_losses([up(f) for f in F_e], [up(f) for f in F_r], M_e, M_r, variant=variant, size=(16, 16))
    for a, b in zip(fast, slow, strict=True):
        assert a.item() == pytest.approx(b.item(), rel=1e-12)
    grads = [torch.autograd.grad(sum(x), F_e) for x in (fast, slow)]
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-14)
    # a size that is no whole multiple of the levels takes the literal path and still works
    odd = consistency_losses(F_e, F_r, M_e, M_r, variant=variant, size=(12, 12))
    assert all(torch.isfinite(x) for x in odd)
