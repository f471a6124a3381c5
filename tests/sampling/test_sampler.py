"""The two-branch sampler on the tiny preset (CPU)."""

from __future__ import annotations

import pytest
import torch

from mfollow.models.controllers import PoseController
from mfollow.models.presets import SCHEDULER, TINY
from mfollow.models.unet3d import UNet3D
from mfollow.sampling.ddim import ddim_step, initial_noise, schedule
from mfollow.sampling.guidance import consistency_losses
from mfollow.sampling.sampler import sample
from mfollow.sampling.state import Conditioning, SamplerSettings, SamplerState, SamplingError
from mfollow.sampling.windows import Window

FRAMES, SIZE = 6, 64  # pixels
LAT = SIZE // TINY.vae_factor  # the latents' side


@pytest.fixture(scope="module")
def nets() -> tuple[UNet3D, PoseController]:
    torch.manual_seed(0)
    unet = UNet3D(**TINY.unet).eval()
    poctr = PoseController(**TINY.poctr).eval()
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in list(unet.named_parameters()) + list(poctr.named_parameters()):
            if "proj_out" in name or "conv_out" in name:  # wake the zero-initialised layers
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return unet, poctr


@pytest.fixture(scope="module")
def conditioning(nets: tuple[UNet3D, PoseController]) -> Conditioning:
    unet, poctr = nets
    g = torch.Generator().manual_seed(7)
    M_r = torch.zeros(1, 1, FRAMES, SIZE, SIZE)
    M_r[..., 16:48, 10:30] = 1
    M_e = torch.zeros_like(M_r)
    M_e[..., 16:48, 24:44] = 1
    with torch.no_grad():
        return Conditioning(
            context=torch.randn(1, FRAMES, 32, generator=g),
            pose_r=poctr(torch.rand(1, 3, FRAMES, SIZE, SIZE, generator=g)),
            pose_e=poctr(torch.rand(1, 3, FRAMES, SIZE, SIZE, generator=g)),
            appearance=unet.appearance_features(torch.rand(1, 3, FRAMES, SIZE, SIZE, generator=g) * 2 - 1),
            M_e=M_e,
            M_r=M_r,
            M_e_latent=torch.nn.functional.interpolate(M_e[0], size=(LAT, LAT), mode="nearest")[None],
        )


def window_of(c: Conditioning) -> callable:  # type: ignore[valid-type]
    def condition(w: Window) -> Conditioning:
        sl = slice(w.start, w.stop)
        return Conditioning(
            c.context[:, sl], c.pose_r[:, :, sl], c.pose_e[:, :, sl], [a[sl] for a in c.appearance],
            c.M_e[:, :, sl], c.M_r[:, :, sl], c.M_e_latent[:, :, sl],
        )  # fmt: skip

    return condition


def start(seed: int = 0) -> SamplerState:
    z = initial_noise(seed, FRAMES, (TINY.unet["in_channels"], LAT, LAT))
    return SamplerState(z.clone(), z.clone(), 0)


def test_ddim_step_closed_form() -> None:
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(2, 3, generator=g), torch.randn(2, 3, generator=g)
    a_t, a_prev = 0.3, 0.7
    z = a_t**0.5 * x0 + (1 - a_t) ** 0.5 * eps
    v = a_t**0.5 * eps - (1 - a_t) ** 0.5 * x0  # the v target
    torch.testing.assert_close(ddim_step(z, v, a_t, a_prev, None), a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps)
    # zero terminal SNR (abar = 0): x0 = -v, eps = z; no division by zero
    out = ddim_step(eps, -x0, 0.0, a_prev, None)
    torch.testing.assert_close(out, a_prev**0.5 * x0 + (1 - a_prev) ** 0.5 * eps)
    # guided: eps_hat = eps + sqrt(1 - a) g and x0 stays consistent with z
    grad = torch.randn(2, 3, generator=g)
    e_hat = eps + (1 - a_t) ** 0.5 * grad
    x_hat = (z - (1 - a_t) ** 0.5 * e_hat) / a_t**0.5
    torch.testing.assert_close(ddim_step(z, v, a_t, a_prev, grad), a_prev**0.5 * x_hat + (1 - a_prev) ** 0.5 * e_hat)


def test_noise_depends_on_seed_and_frame_only() -> None:
    long, short = initial_noise(3, 10, (4, 2, 2)), initial_noise(3, 4, (4, 2, 2))
    torch.testing.assert_close(long[:, :, :4], short, atol=0, rtol=0)
    assert not torch.equal(initial_noise(4, 4, (4, 2, 2)), short)


def test_schedule_is_trailing_zero_snr() -> None:
    timesteps, abar = schedule(SCHEDULER, 4)
    assert timesteps == [999, 749, 499, 249] and float(abar[999]) == pytest.approx(0.0, abs=1e-12)


def test_same_seed_same_result_and_callback(nets: tuple, conditioning: Conditioning) -> None:
    unet, _ = nets
    timesteps, abar = schedule(SCHEDULER, 3)
    seen: list[int] = []
    s = SamplerSettings(steps=3, cfg=2.0, guidance="paper", guidance_scale=5.0, window=4, overlap=2)
    a = sample(unet, start(), timesteps, abar, window_of(conditioning), s, callback=lambda e: seen.append(e["step"]))
    b = sample(unet, start(), timesteps, abar, window_of(conditioning), s)
    assert seen == [1, 2, 3] and a.step == 3
    torch.testing.assert_close(a.z_e, b.z_e, atol=0, rtol=0)
    c = sample(unet, start(seed=1), timesteps, abar, window_of(conditioning), s)
    assert not torch.equal(a.z_e, c.z_e)
    none = sample(
        unet,
        start(),
        timesteps,
        abar,
        window_of(conditioning),
        SamplerSettings(cfg=2.0, guidance="none", window=4, overlap=2),
    )
    assert not torch.equal(a.z_e, none.z_e)  # guidance changed the edit ...
    torch.testing.assert_close(a.z_r, none.z_r, atol=0, rtol=0)  # ... never the reconstruction


def test_resume_is_bit_identical(nets: tuple, conditioning: Conditioning) -> None:
    unet, _ = nets
    timesteps, abar = schedule(SCHEDULER, 4)
    s = SamplerSettings(cfg=1.5, guidance="official", guidance_scale=0.02, window=4, overlap=2)
    saved: dict[int, SamplerState] = {}
    full = sample(
        unet,
        start(),
        timesteps,
        abar,
        window_of(conditioning),
        s,
        callback=lambda e: saved.setdefault(e["step"], e["state"]),
    )
    mid = saved[2]
    resumed = sample(
        unet, SamplerState(mid.z_e.clone(), mid.z_r.clone(), 2), timesteps, abar, window_of(conditioning), s
    )
    torch.testing.assert_close(resumed.z_e, full.z_e, atol=0, rtol=0)
    torch.testing.assert_close(resumed.z_r, full.z_r, atol=0, rtol=0)


def test_a_guided_step_lowers_the_consistency_loss(nets: tuple, conditioning: Conditioning) -> None:
    unet, _ = nets
    timesteps, abar = schedule(SCHEDULER, 4)
    state = SamplerState(
        *(initial_noise(0, FRAMES, (TINY.unet["in_channels"], LAT, LAT)),) * 2, 1
    )  # from step 2 (abar > 0)
    c = conditioning
    t = timesteps[1]

    def loss_at(z_e: torch.Tensor, z_r: torch.Tensor) -> float:
        with torch.no_grad():
            fe = unet(z_e, t, c.context, pose_features=c.pose_e, appearance=c.appearance).features
            fr = unet(z_r, t, c.context, pose_features=c.pose_r, appearance=c.appearance).features
            L_fg, L_bg = consistency_losses([fe[1], fe[2]], [fr[1], fr[2]], c.M_e, c.M_r)
        return float(L_fg + L_bg)

    short = timesteps[:2]  # one step: from t = timesteps[1] to the end of this short schedule
    kw = dict(window=FRAMES, overlap=0, cfg=1.0)
    plain = sample(unet, state, short, abar, window_of(c), SamplerSettings(guidance="none", **kw))
    guided = sample(
        unet, state, short, abar, window_of(c), SamplerSettings(guidance="paper", guidance_scale=20.0, **kw)
    )
    assert loss_at(guided.z_e, plain.z_r) < loss_at(plain.z_e, plain.z_r)


def test_nan_stops_sampling_and_names_the_step(conditioning: Conditioning) -> None:
    class Broken(torch.nn.Module):
        def forward(self, z: torch.Tensor, *a: object, **k: object) -> object:
            from mfollow.models.unet3d import UNetOutput

            return UNetOutput(torch.full_like(z, float("nan")), {})

    timesteps, abar = schedule(SCHEDULER, 3)
    with pytest.raises(SamplingError, match=r"step 1/3 \(t=999\)"):
        sample(Broken(), start(), timesteps, abar, window_of(conditioning), SamplerSettings(guidance="none", cfg=1.0))


def test_official_plan_matches_the_release_at_50_steps() -> None:
    from mfollow.sampling.official import StepPlan

    plans = [StepPlan.official(i, 50) for i in range(50)]
    assert {i for i, p in enumerate(plans) if p.guided} == set(range(10)) | set(range(10, 29, 2))
    assert {i for i, p in enumerate(plans) if p.replays == 3} == {22, 24, 26, 28}
    assert {i for i, p in enumerate(plans) if p.sde} == set(range(11, 20))
    assert all(p.replays in (1, 3) for p in plans)


def _counting(unet: UNet3D) -> tuple[torch.nn.Module, list[int]]:
    calls: list[int] = []

    class Counting(torch.nn.Module):
        def forward(self, *a: object, **k: object) -> object:
            calls.append(1)
            return unet(*a, **k)

    return Counting(), calls


def test_official_sde_noise_stays_inside_the_edit_mask(nets: tuple, conditioning: Conditioning) -> None:
    from mfollow.sampling.official import OfficialStep, StepPlan, official_window_step

    unet, _ = nets
    timesteps, abar = schedule(SCHEDULER, 50)
    i = 12
    assert StepPlan.official(i, 50).sde
    a_t, a_prev = float(abar[timesteps[i]]), float(abar[timesteps[i + 1]])
    st = OfficialStep(i, timesteps[i], timesteps[i + 1], a_t, a_prev, False, StepPlan(False, 1, True))
    z = initial_noise(0, FRAMES, (TINY.unet["in_channels"], LAT, LAT))
    outs = []
    for seed in (0, 1):
        s = SamplerSettings(guidance="official", cfg=1.0, seed=seed)
        outs.append(official_window_step(unet, z, z, st, conditioning, s)[0])
    diff = (outs[0] - outs[1]).abs().amax(dim=1, keepdim=True)  # (1, 1, F, h, w)
    inside = conditioning.M_e_latent > 0
    assert diff[~inside].max() == 0 and diff[inside].min() > 0


def test_official_replay_renoises_and_repeats(nets: tuple, conditioning: Conditioning) -> None:
    from mfollow.sampling.official import OfficialStep, StepPlan, official_window_step

    unet, _ = nets
    counting, calls = _counting(unet)
    timesteps, abar = schedule(SCHEDULER, 50)
    i = 22
    plan = StepPlan.official(i, 50)
    st = OfficialStep(
        i, timesteps[i], timesteps[i + 1], float(abar[timesteps[i]]), float(abar[timesteps[i + 1]]), True, plan
    )
    z = initial_noise(0, FRAMES, (TINY.unet["in_channels"], LAT, LAT))
    official_window_step(counting, z, z, st, conditioning, SamplerSettings(guidance="official", cfg=2.0))
    # reconstruction 1 + 3 x (edit cond + uncond) + 2 re-noising passes
    assert plan.replays == 3 and len(calls) == 1 + 3 * 2 + 2


def test_official_guides_step_zero_in_closed_form(nets: tuple, conditioning: Conditioning) -> None:
    """At step 0 (t = 999, abar = 0 under zero-terminal SNR) the release applies its guidance in the
    v form: x0 = -(v + G), eps = z, so the guided latent is the unguided one minus
    sqrt(abar_prev) G, with G = 160 * scale * the Eq. 7 gradient."""
    from mfollow.sampling.ddim import alphas_at
    from mfollow.sampling.official import OFFICIAL_SCALE, OfficialStep, StepPlan, official_window_step
    from mfollow.sampling.passes import edit_prediction, features_of

    unet, _ = nets
    timesteps, abar = schedule(SCHEDULER, 50)
    a_t, a_prev = alphas_at(abar, timesteps, 0)
    assert a_t == 0.0 and StepPlan.official(0, 50).guided
    s = SamplerSettings(guidance="official", cfg=1.0, guidance_scale=0.5)
    z = initial_noise(0, FRAMES, (TINY.unet["in_channels"], LAT, LAT))
    plan = StepPlan.official(0, 50)

    def step(guided: bool) -> torch.Tensor:
        st = OfficialStep(0, timesteps[0], timesteps[1], a_t, a_prev, guided, plan)
        return official_window_step(unet, z, z, st, conditioning, s)[0]

    with torch.no_grad():
        F_r = [f.detach() for f in features_of(unet(z, timesteps[0], conditioning.context,
                                                     pose_features=conditioning.pose_r,
                                                     appearance=conditioning.appearance))]  # fmt: skip
    _, g, _ = edit_prediction(unet, z, timesteps[0], conditioning, s, F_r, True)
    assert g is not None and g.abs().max() > 0
    expected = step(False) - a_prev**0.5 * OFFICIAL_SCALE * s.guidance_scale * g
    torch.testing.assert_close(step(True), expected, rtol=1e-5, atol=1e-6)
    # and the loop guides there (losses reported at step 1), while Algorithm 1 skips abar = 0
    for guidance, guided_at_zero in (("official", True), ("paper", False)):
        run = SamplerSettings(steps=50, guidance=guidance, cfg=1.0, guidance_scale=0.5)
        events: list[dict] = []
        sample(unet, start(), timesteps[:1], abar, window_of(conditioning), run, callback=events.append)
        assert bool(events[0]["losses"]) is guided_at_zero, guidance


def test_release_noise_is_the_releases_stream(nets: tuple, conditioning: Conditioning) -> None:
    """``--noise release``: the initial latent is the first float16 draw of a CPU generator seeded
    with the seed (as ``torch.manual_seed(seed)`` then ``randn`` draws), and the SDE steps 11-19
    take the next nine draws of the latent's shape, in order; nothing else draws from it."""
    from mfollow.sampling.ddim import release_noise

    unet, _ = nets
    shape = (1, TINY.unet["in_channels"], FRAMES, LAT, LAT)
    torch.manual_seed(42)
    expected = [torch.randn(shape, dtype=torch.float16) for _ in range(11)]
    z, generator = release_noise(42, shape)
    assert z.dtype == torch.float16 and torch.equal(z, expected[0])
    timesteps, abar = schedule(SCHEDULER, 50)
    s = SamplerSettings(steps=50, guidance="official", cfg=1.0, guidance_scale=0.0, seed=42)
    state = SamplerState(z.float(), z.float().clone(), 0)
    at: dict[int, torch.Tensor] = {}  # z_e after the SDE steps (step 20)
    out = sample(unet, state, timesteps, abar, window_of(conditioning), s, generator=generator,
                 callback=lambda e: at.setdefault(e["step"], e["state"].z_e))  # fmt: skip
    assert torch.isfinite(out.z_e).all()
    assert torch.equal(torch.randn(shape, generator=generator, dtype=torch.float16), expected[10])  # 1 + 9 drawn
    # the SDE noise came from the stream: another stream (same initial latent) moves the result
    _, other = release_noise(43, shape)

    def stop(e: dict) -> None:
        if e["step"] == 20:
            raise _Stopped(e["state"].z_e)

    with pytest.raises(_Stopped) as moved:  # (the steps after 20 draw nothing: no need to run them)
        sample(unet, SamplerState(z.float(), z.float().clone(), 0), timesteps, abar, window_of(conditioning), s,
               generator=other, callback=stop)  # fmt: skip
    assert not torch.equal(moved.value.z_e, at[20])


class _Stopped(Exception):
    def __init__(self, z_e: torch.Tensor) -> None:
        self.z_e = z_e


def _half(c: Conditioning, dtype: torch.dtype, empty: bool = False) -> Conditioning:
    """The conditioning as the models make it in ``dtype``; the masks stay float32 (empty: none)."""
    M_e, M_r, M_lat = (torch.zeros_like(m) if empty else m for m in (c.M_e, c.M_r, c.M_e_latent))
    return Conditioning(c.context.to(dtype), c.pose_r.to(dtype), c.pose_e.to(dtype),
                        [a.to(dtype) for a in c.appearance], M_e, M_r, M_lat)  # fmt: skip


@pytest.mark.parametrize("guidance", ["paper", "official"])
def test_mixed_precision_keeps_latents_guidance_and_ddim_in_float32(
    nets: tuple, conditioning: Conditioning, guidance: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bfloat16 networks: the latents, the guidance losses and their gradient stay float32 (finite
    with empty masks too), and the result stays near float32's."""
    import copy

    import mfollow.sampling.passes as passes

    unet, _ = nets
    half = copy.deepcopy(unet).to(torch.bfloat16)
    seen: list[tuple[torch.dtype, ...]] = []
    real = passes.guidance_gradient

    def recorded(z: torch.Tensor, L_fg: torch.Tensor, L_bg: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
        g = real(z, L_fg, L_bg, M)
        seen.append((z.dtype, L_fg.dtype, L_bg.dtype, g.dtype))
        return g

    monkeypatch.setattr(passes, "guidance_gradient", recorded)
    timesteps, abar = schedule(SCHEDULER, 4)
    s = SamplerSettings(cfg=1.5, guidance=guidance, guidance_scale=5.0 if guidance == "paper" else 0.02, window=4,
                        overlap=2)  # fmt: skip
    states: list[torch.dtype] = []
    mixed = sample(half, start(), timesteps, abar, window_of(_half(conditioning, torch.bfloat16)), s,
                   callback=lambda e: states.append(e["state"].z_e.dtype))  # fmt: skip
    assert seen and set(seen) == {(torch.float32,) * 4}
    assert states == [torch.float32] * 4 and mixed.z_e.dtype == mixed.z_r.dtype == torch.float32
    full = sample(unet, start(), timesteps, abar, window_of(conditioning), s)
    diff = (mixed.z_e - full.z_e).abs()
    assert float(diff.mean()) < 0.05 * float(full.z_e.abs().mean()) and not torch.equal(mixed.z_e, full.z_e)
    empty = sample(half, start(), timesteps, abar, window_of(_half(conditioning, torch.bfloat16, empty=True)), s)
    assert torch.isfinite(empty.z_e).all() and torch.isfinite(empty.z_r).all()


def test_dtype_auto_picks_the_devices_precision(monkeypatch: pytest.MonkeyPatch) -> None:
    from mfollow.runtime.devices import auto_dtype

    assert auto_dtype("cpu") == auto_dtype("mps") == "float32"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert auto_dtype("cuda") == auto_dtype("cuda:1") == "bfloat16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert auto_dtype("cuda") == "float16"


def test_batched_passes_give_the_same_edit_in_fewer_unet_calls(nets: tuple, conditioning: Conditioning) -> None:
    """The reconstruction pass and the unconditional (CFG) pass in one U-Net call of batch 2: the
    same latents as three calls of batch 1 (up to float rounding), two calls a window and step.
    The one call with autograd on, the guided pass, asks for no graph after the feature taps."""
    unet, _ = nets
    timesteps, abar = schedule(SCHEDULER, 3)
    out, batches, graphs = {}, {}, []
    for paired in (True, False):
        calls: list[int] = []

        class Counting(torch.nn.Module):
            dtype = torch.float32

            def forward(self, z: torch.Tensor, *a: object, seen: list[int] = calls, **k: object) -> object:
                seen.append(z.shape[0])  # each call's batch
                if torch.is_grad_enabled():
                    graphs.append(k["sample_grad"])
                return unet(z, *a, **k)

        s = SamplerSettings(steps=3, cfg=2.0, guidance="paper", guidance_scale=5.0, window=4, overlap=2,
                            batch_passes=paired)  # fmt: skip
        out[paired] = sample(Counting(), start(), timesteps, abar, window_of(conditioning), s)
        batches[paired] = calls
    windows = 2  # 6 frames in windows of 4 overlapping by 2
    assert batches[False] == [1] * 3 * windows * 3
    assert batches[True] == [2, 1] * windows * 3  # the pair, then the guided editing pass
    assert graphs == [False] * windows * 2 * 2  # every guided pass (steps 2-3: step 1 is at abar 0), both ways
    torch.testing.assert_close(out[True].z_e, out[False].z_e, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[True].z_r, out[False].z_r, atol=1e-5, rtol=1e-5)
