"""Consistency-guidance losses of MotionFollower (paper §2.3, Eqs. 2-7) and the released variant.

All functions are pure: features and masks in, scalar losses out. Shapes:

- features F_e, F_r: lists (one per tapped level) of (B, C, N, h, w) tensors (N frames);
- masks M_e (source person in the edit pose) and M_r (source person): (B, 1, N, H, W) in [0, 1].

Features and masks are resized (nearest) to one common size before the losses are taken (paper:
"interpolated into the same size H x W"); by default twice the largest tapped feature map, as the
release does. Cosine similarities run along the channel axis. When that size is a whole multiple
of a level's feature map (always, by default), the level is not upsampled: every loss is a
mask-weighted sum over pixels, and a feature pixel that nearest upsampling would copy k x k times
weighs the same as its k x k copies when it carries the sum of the mask over that block
(:func:`block_sums`). Same values (to float rounding), k^2 fewer pixels.

Regions (Eqs. 3-4): M_over = (1 - M_e)(1 - M_r) (background in both), M_body = M_r (1 - M_e)
(source body that the edit uncovers). A region that is empty in a frame contributes nothing from
that frame; a term whose region is empty in every frame is 0 (never NaN). Denominators of the
1 / (1 + 2 s) forms are clamped at :data:`MIN_DENOMINATOR`, since cosine similarity can reach -1.

Sign: every loss is lower when the edit agrees with the reconstruction. The guidance returned by
:func:`guidance_gradient` is the gradient of the losses (Eq. 7); the sampler *descends* it, i.e.
grad log q(F | z) = -dL/dz and Eq. 13 becomes eps_hat = eps + sqrt(1 - abar_t) * scale * dL/dz.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

MIN_DENOMINATOR = 1e-2
COS_EPS = 1e-8


@dataclass(frozen=True)
class GuidanceWeights:
    """The paper's hyper-parameters (Appendix A.3): alpha_fg, alpha_over, alpha_body, alpha_com."""

    alpha_fg: float = 4.0
    alpha_over: float = 6.0
    alpha_body: float = 2.4
    alpha_com: float = 1.2


# ------------------------------------------------------------------------------ helpers
def to_frames(x: torch.Tensor) -> torch.Tensor:
    """(B, C, N, H, W) -> (B*N, C, H, W): each frame on its own."""
    b, c, n, h, w = x.shape
    return x.permute(0, 2, 1, 3, 4).reshape(b * n, c, h, w)


def resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of (B*N, C, H, W) maps (masks stay binary)."""
    return x if tuple(x.shape[-2:]) == tuple(size) else F.interpolate(x, size=size, mode="nearest")


def block_sums(M: torch.Tensor, size: tuple[int, int]) -> torch.Tensor | None:
    """(N, 1, H, W) mask -> (N, 1, h, w): the sum over each (H/h) x (W/w) block, i.e. the weight
    of a feature pixel at (h, w) that nearest upsampling to (H, W) would repeat over that block.
    ``None`` if (H, W) is not a whole multiple of ``size``."""
    n, c, H, W = M.shape
    h, w = size
    if H % h or W % w:
        return None
    # (N, 1, H, W) -> (N, 1, h, H/h, w, W/w): each block on its own two axes, summed away
    return M.reshape(n, c, h, H // h, w, W // w).sum(dim=(3, 5))


def regions(M_e: torch.Tensor, M_r: torch.Tensor) -> dict[str, torch.Tensor]:
    """The masks of Eqs. 2-5 (any matching shapes): M_e, M_r, M_over (Eq. 3), M_body (Eq. 4),
    and the source background 1 - M_r (Eq. 5)."""
    return {
        "M_e": M_e,
        "M_r": M_r,
        "M_over": (1 - M_e) * (1 - M_r),
        "M_body": M_r * (1 - M_e),
        "M_src_bg": 1 - M_r,
    }


def masked_pool(F_: torch.Tensor, M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask pooling: the mean feature over each frame's region.

    Args:
        F_: (N, C, H, W) features; M: (N, 1, H, W) mask in [0, 1].
    Returns:
        (N, C) pooled vectors and (N,) bool: which frames have a non-empty region.
    """
    area = M.sum(dim=(2, 3))  # (N, 1)
    pooled = (F_ * M).sum(dim=(2, 3)) / area.clamp_min(1e-12)
    return pooled, area[:, 0] > 0


def pooled_similarity(
    F_e: torch.Tensor, M_a: torch.Tensor, F_r: torch.Tensor, M_b: torch.Tensor
) -> torch.Tensor | None:
    """Sim(Pool(F_e * M_a), Pool(F_r * M_b)): per-frame cosine of the pooled vectors, averaged over
    the frames where both regions exist; ``None`` if there is no such frame."""
    pe, ve = masked_pool(F_e, M_a)
    pr, vr = masked_pool(F_r, M_b)
    valid = ve & vr
    if not bool(valid.any()):
        return None
    return F.cosine_similarity(pe[valid], pr[valid], dim=1, eps=COS_EPS).mean()


def region_cosine(F_e: torch.Tensor, F_r: torch.Tensor, M: torch.Tensor) -> torch.Tensor | None:
    """Avg over the region's pixels (all frames together) of the per-pixel cosine similarity
    (Eqs. 3-4); ``None`` for an empty region."""
    weight = M[:, 0]  # (N, H, W)
    total = weight.sum()
    if float(total) == 0:
        return None
    cos = F.cosine_similarity(F_e, F_r, dim=1, eps=COS_EPS)  # (N, H, W)
    return (cos * weight).sum() / total


def _inverse(s: torch.Tensor | None, scale: float = 2.0) -> torch.Tensor | None:
    """1 / (1 + scale * s) with the denominator clamped away from the pole."""
    return None if s is None else 1.0 / (1.0 + scale * s).clamp_min(MIN_DENOMINATOR)


def _zero_if_none(x: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
    return like.new_zeros(()) if x is None else x


# ---------------------------------------------------------------------- the paper's losses
def loss_fg(F_e: torch.Tensor, F_r: torch.Tensor, m: dict[str, torch.Tensor], w: GuidanceWeights) -> torch.Tensor:
    """Eq. 2: alpha_fg / (1 + 2 Sim(Pool(F_e * M_e), Pool(F_r * M_r))). Frames: (N, C, H, W)."""
    inv = _inverse(pooled_similarity(F_e, m["M_e"], F_r, m["M_r"]))
    return _zero_if_none(None if inv is None else w.alpha_fg * inv, F_e)


def loss_over(F_e: torch.Tensor, F_r: torch.Tensor, m: dict[str, torch.Tensor]) -> torch.Tensor:
    """Eq. 3: 1 / (1 + 2 Avg(Cos(F_e, F_r) over M_over))."""
    return _zero_if_none(_inverse(region_cosine(F_e, F_r, m["M_over"])), F_e)


def loss_body(F_e: torch.Tensor, F_r: torch.Tensor, m: dict[str, torch.Tensor]) -> torch.Tensor:
    """Eq. 4: Avg(Cos(F_e, F_r) over M_body); lowering it pushes the uncovered source body away."""
    return _zero_if_none(region_cosine(F_e, F_r, m["M_body"]), F_e)


def loss_com(F_e: torch.Tensor, F_r: torch.Tensor, m: dict[str, torch.Tensor]) -> torch.Tensor:
    """Eq. 5: 1 / (1 + 2 Sim(Pool(F_e * M_body), Pool(F_r * (1 - M_r))))."""
    return _zero_if_none(_inverse(pooled_similarity(F_e, m["M_body"], F_r, m["M_src_bg"])), F_e)


def loss_bg(F_e: torch.Tensor, F_r: torch.Tensor, m: dict[str, torch.Tensor], w: GuidanceWeights) -> torch.Tensor:
    """Eq. 6: alpha_over L_over + alpha_body L_body + alpha_com L_com."""
    return (
        w.alpha_over * loss_over(F_e, F_r, m)
        + w.alpha_body * loss_body(F_e, F_r, m)
        + w.alpha_com * loss_com(F_e, F_r, m)
    )


# ----------------------------------------------------------------- the released variant
def official_level(F_e: torch.Tensor, F_r: torch.Tensor, m: dict[str, torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """One level of the release's losses (docs/method.md, §6): per-frame means averaged over frames,
    the fg term 4 / (1 + 4 s), the pull term on M_body, the push term on M_over, the inpaint term
    with (s + 1) / 2 similarities. Returns (fg, content, contrast, inpaint) before level weights."""

    def per_frame_region_cos(M: torch.Tensor) -> torch.Tensor | None:
        area = M[:, 0].sum(dim=(1, 2))  # (N,)
        valid = area > 0
        if not bool(valid.any()):
            return None
        cos = F.cosine_similarity(F_e, F_r, dim=1, eps=COS_EPS)  # (N, H, W)
        means = (cos * M[:, 0]).sum(dim=(1, 2)) / area.clamp_min(1e-12)
        return means[valid].mean()

    s_fg = pooled_similarity(F_e, m["M_e"], F_r, m["M_r"])
    s_body = per_frame_region_cos(m["M_body"])
    s_over = per_frame_region_cos(m["M_over"])
    s_inp = pooled_similarity(F_e, m["M_body"], F_r, m["M_src_bg"])
    fg = _inverse(s_fg, 4.0)
    content = _inverse(s_body, 4.0)
    contrast = None if s_over is None else (s_over + 1) / 2
    inpaint = _inverse(None if s_inp is None else (s_inp + 1) / 2, 4.0)
    return tuple(_zero_if_none(x, F_e) for x in (fg, content, contrast, inpaint))


# ------------------------------------------------------------------------------ combined
def consistency_losses(
    F_e: list[torch.Tensor],
    F_r: list[torch.Tensor],
    M_e: torch.Tensor,
    M_r: torch.Tensor,
    *,
    variant: str = "paper",
    weights: GuidanceWeights = GuidanceWeights(),
    size: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_fg, L_bg) over all tapped levels.

    ``paper``: Eqs. 2 and 6 averaged over the levels. ``official``: the release's forms and
    weights (fg 4.0, content 6.0, contrast 1.2 with the level factor 0.5; inpaint 1.2 without it).
    Features (B, C, N, h, w) and masks (B, 1, N, H, W) are brought to ``size`` (default: twice the
    largest feature map).
    """
    if variant not in ("paper", "official"):
        raise ValueError(f"unknown guidance variant {variant!r}")
    if size is None:
        h, w = max((f.shape[-2], f.shape[-1]) for f in F_e)
        size = (2 * h, 2 * w)
    dtype = torch.promote_types(F_e[0].dtype, torch.float32)  # half features: losses in float32
    m_size = {k: resize(to_frames(v.to(dtype)), size) for k, v in regions(M_e, M_r).items()}
    L_fg = F_e[0].new_zeros((), dtype=dtype)
    L_bg = F_e[0].new_zeros((), dtype=dtype)
    for fe, fr in zip(F_e, F_r, strict=True):
        e, r = to_frames(fe.to(dtype)), to_frames(fr.to(dtype))
        summed = {k: block_sums(v, (e.shape[-2], e.shape[-1])) for k, v in m_size.items()}
        m = {k: v for k, v in summed.items() if v is not None}  # the level at its own resolution
        if len(m) < len(summed):  # size not a multiple of this level: upsample the features, as written
            e, r, m = resize(e, size), resize(r, size), m_size
        if variant == "paper":
            L_fg = L_fg + loss_fg(e, r, m, weights) / len(F_e)
            L_bg = L_bg + loss_bg(e, r, m, weights) / len(F_e)
        else:
            fg, content, contrast, inpaint = official_level(e, r, m)
            L_fg = L_fg + 0.5 * 4.0 * fg
            L_bg = L_bg + 0.5 * 6.0 * content + 0.5 * 1.2 * contrast + 1.2 * inpaint
    return L_fg, L_bg


def guidance_gradient(
    z_e: torch.Tensor, L_fg: torch.Tensor, L_bg: torch.Tensor, M_e_latent: torch.Tensor
) -> torch.Tensor:
    """Eq. 7: dL_fg/dz_e * M_e + dL_bg/dz_e * (1 - M_e), with M_e at latent size (B, 1, N, h, w).

    Two backward passes through the same graph (the regions of the latent take different losses).
    Losses that do not depend on ``z_e`` (e.g. empty regions) contribute zero.
    """
    g_fg = _grad(L_fg, z_e, retain=L_bg.requires_grad)
    g_bg = _grad(L_bg, z_e, retain=False)
    return g_fg * M_e_latent + g_bg * (1 - M_e_latent)


def _grad(loss: torch.Tensor, z: torch.Tensor, *, retain: bool) -> torch.Tensor:
    if not loss.requires_grad:
        return torch.zeros_like(z)
    g = torch.autograd.grad(loss, z, retain_graph=retain, allow_unused=True)[0]
    return torch.zeros_like(z) if g is None else g
