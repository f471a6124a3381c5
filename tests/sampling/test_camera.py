"""Camera mode: masked key/value injection into decoder self-attention."""

from __future__ import annotations

import torch

from mfollow.models.presets import SCHEDULER, TINY
from mfollow.models.unet3d import UNet3D
from mfollow.sampling import camera
from mfollow.sampling.ddim import initial_noise, schedule
from mfollow.sampling.sampler import sample
from mfollow.sampling.state import Conditioning, SamplerSettings, SamplerState


def unet_and_inputs() -> tuple[UNet3D, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    unet = UNet3D(**TINY.unet).eval()
    g = torch.Generator().manual_seed(1)
    return (
        unet,
        torch.randn(1, TINY.unet["in_channels"], 3, 8, 8, generator=g),
        torch.randn(1, TINY.unet["in_channels"], 3, 8, 8, generator=g),
        torch.randn(1, 3, 32, generator=g),
    )


def test_installed_but_off_equals_the_default_processor() -> None:
    unet, x, _, ctx = unet_and_inputs()
    with torch.no_grad():
        ref = unet(x, 300, ctx).sample
        state = camera.install(unet)
        assert state.mode == "off"
        torch.testing.assert_close(unet(x, 300, ctx).sample, ref, atol=1e-5, rtol=1e-5)
        camera.uninstall(unet)
        torch.testing.assert_close(unet(x, 300, ctx).sample, ref, atol=0, rtol=0)


def test_reference_acts_only_through_the_source_background() -> None:
    unet, x, other, ctx = unet_and_inputs()
    state = camera.install(unet)
    M_e = torch.zeros(1, 1, 3, 64, 64)
    M_e[..., 16:48, 16:48] = 1

    def edited(reference: torch.Tensor, M_r: torch.Tensor) -> torch.Tensor:
        state.M_e, state.M_r = M_e, M_r
        with torch.no_grad():
            state.mode = "save"
            unet(reference, 300, ctx)
            state.mode = "inject"
            out = unet(x, 300, ctx).sample
            state.mode = "off"
        return out

    no_background = torch.ones(1, 1, 3, 64, 64)
    torch.testing.assert_close(edited(x, no_background), edited(other, no_background), atol=1e-6, rtol=0)
    half = torch.zeros(1, 1, 3, 64, 64)
    half[..., :, :32] = 1
    assert (edited(x, half) - edited(other, half)).abs().max() > 1e-4
    with torch.no_grad():
        plain = unet(x, 300, ctx).sample  # mode off: no injection
    assert (edited(x, half) - plain).abs().max() > 1e-4
    assert len(state.store) == 9  # attn1 of up blocks 1-3, three layers each


def test_sampler_uses_camera_from_its_start_and_cleans_up() -> None:
    unet, _, _, ctx = unet_and_inputs()
    M = torch.zeros(1, 1, 3, 64, 64)
    M[..., 10:40, 10:40] = 1
    lat = 64 // TINY.vae_factor
    c = Conditioning(ctx, torch.zeros(1, 32, 3, lat, lat), torch.zeros(1, 32, 3, lat, lat), None, M, M.roll(8, -1),
                     torch.nn.functional.interpolate(M[0], size=(lat, lat))[None])  # type: ignore[arg-type]  # fmt: skip
    timesteps, abar = schedule(SCHEDULER, 4)
    z = initial_noise(0, 3, (TINY.unet["in_channels"], lat, lat))
    s = SamplerSettings(cfg=1.0, guidance="none", camera_start=0.5)

    def run(cam: camera.CameraState | None) -> dict[int, SamplerState]:
        states: dict[int, SamplerState] = {}
        sample(unet, SamplerState(z, z, 0), timesteps, abar, lambda w: c, s, camera=cam,
               callback=lambda e: states.setdefault(e["step"], e["state"]))  # fmt: skip
        return states

    plain = run(None)
    state = camera.install(unet)
    with_camera = run(state)
    camera.uninstall(unet)
    torch.testing.assert_close(with_camera[2].z_e, plain[2].z_e, atol=1e-5, rtol=1e-5)  # steps 0-1: before 50%
    assert (with_camera[4].z_e - plain[4].z_e).abs().max() > 1e-4  # steps 2-3 inject
    torch.testing.assert_close(with_camera[4].z_r, plain[4].z_r, atol=1e-5, rtol=1e-5)  # never the reconstruction
    assert state.mode == "off" and not state.store
