"""The memory planner (mfollow.edit.plan): its estimate, its choices at given memory limits, and
the sizes --max-memory takes. A preset with round coefficients makes every estimate exact."""

from __future__ import annotations

from dataclasses import replace

import pytest

from mfollow.edit.plan import FRAME_BYTES, Footprint, MemoryPlan, estimate, parse_size, plan_memory
from mfollow.models.presets import SD15, TINY
from mfollow.runtime.errors import UsageError

# bytes per frame and pixel (float32): guided pass with / without checkpointing, a pass without
# grad, two as one call, the VAE per decoded frame; parameters per network
SPEC = replace(TINY, memory_per_pixel=10, memory_full=30, memory_pass=3, memory_pair=6, memory_decode=5,
               parameters={"unet": 100, "poctr": 10, "vae": 20, "image_encoder": 30})  # fmt: skip
W = Footprint(frames=4, width=2, height=2, kind="cuda")  # 16 frame-pixels
WEIGHTS = (100 + 10 + 20 + 30) * 4  # float32


def test_the_estimate_adds_weights_to_the_larger_of_sampling_and_decoding() -> None:
    frames = FRAME_BYTES * 16
    fast = dict(checkpointing=False, offload=False, batch_passes=True, decode_chunk=4)
    assert estimate(SPEC, W, **fast) == WEIGHTS + 30 * 16 + frames  # the guided pass without checkpointing
    assert estimate(SPEC, W, **fast | {"checkpointing": True}) == WEIGHTS + 10 * 16 + frames
    # offloaded: the largest phase (PoCtr and the U-Net while sampling)
    assert estimate(SPEC, W, **fast | {"offload": True}) == (100 + 10) * 4 + 30 * 16 + frames
    # half precision: half the weights and activations; the frames stay float64
    assert estimate(SPEC, replace(W, dtype="bfloat16"), **fast) == WEIGHTS // 2 + 15 * 16 + frames
    big_decoder = replace(SPEC, memory_decode=100)  # decoding dominates: 100 B x 4 frames x 4 px
    assert estimate(big_decoder, W, **fast) == WEIGHTS + 100 * 4 * 4
    assert estimate(big_decoder, W, **fast | {"decode_chunk": 1}) == WEIGHTS + 30 * 16 + frames
    # no guidance: the editing pass runs without grad; without CFG nothing is paired
    assert estimate(SPEC, replace(W, guided=False), **fast) == WEIGHTS + 6 * 16 + frames
    assert estimate(SPEC, replace(W, guided=False, cfg=False), **fast) == WEIGHTS + 3 * 16 + frames


def test_the_planner_takes_the_fastest_plan_that_fits() -> None:
    fastest = plan_memory(SPEC, W, None)
    assert fastest == MemoryPlan(checkpointing=False, offload=False, batch_passes=True, decode_chunk=4,
                                 estimate=WEIGHTS + 30 * 16 + FRAME_BYTES * 16, budget=None)  # fmt: skip
    assert plan_memory(SPEC, W, fastest.estimate).checkpointing is False  # exactly enough
    tighter = plan_memory(SPEC, W, fastest.estimate - 1)  # then offloading, still without checkpointing
    assert (tighter.checkpointing, tighter.offload) == (False, True)
    on_cpu = plan_memory(SPEC, replace(W, kind="cpu"), fastest.estimate - 1)  # the CPU never offloads
    assert (on_cpu.checkpointing, on_cpu.offload, on_cpu.batch_passes) == (True, False, True)
    asked = plan_memory(SPEC, W, None, offload=True)  # --offload is kept
    assert asked.offload and not asked.checkpointing


def test_the_planner_unbatches_and_shrinks_the_decoding_only_when_it_must() -> None:
    paired_heavy = replace(SPEC, memory_pair=16)  # two passes at once hold more than the guided pass (10)
    w = replace(W, kind="cpu")
    lean = WEIGHTS + 10 * 16 + FRAME_BYTES * 16
    plan = plan_memory(paired_heavy, w, lean)
    assert (plan.checkpointing, plan.batch_passes, plan.estimate) == (True, False, lean)
    assert plan_memory(paired_heavy, w, lean + 16 * 6).batch_passes  # room for the pair: batched
    decoder = replace(SPEC, memory_decode=100)  # 100 B x chunk x 4 px
    sampling = 10 * 16 + FRAME_BYTES * 16
    plan = plan_memory(decoder, w, WEIGHTS + max(sampling, 100 * 2 * 4))
    assert (plan.checkpointing, plan.decode_chunk) == (True, 2)


def test_a_plan_that_cannot_fit_is_refused_with_what_it_needs() -> None:
    with pytest.raises(UsageError) as caught:
        plan_memory(SPEC, W, 100, where="free on cuda", option="--size 64")
    leanest = (100 + 10) * 4 + 10 * 16 + FRAME_BYTES * 16  # offloaded, checkpointing
    assert caught.value.hint.startswith("lower --size")  # not even one frame fits
    assert str(caught.value).split(" (lower --size")[0] == (
        f"--size 64: a 4-frame window at 2x2 needs about {leanest} B with the tiny model in float32 "
        "(checkpointing, offloading, decoding 1 frame at a time), more than the 100 B free on cuda"
    )


def test_max_memory_sizes() -> None:
    assert parse_size("12GiB") == parse_size("12G") == parse_size("12 gib") == 12 * 2**30
    assert parse_size("12GB") == 12 * 10**9 and parse_size("800MiB") == 800 * 2**20
    assert parse_size("1.5TiB") == int(1.5 * 2**40) and parse_size("4096") == 4096
    for bad in ("", "12 parsecs", "-1G", "0", "G", "1e9"):
        with pytest.raises(UsageError, match="--max-memory"):
            parse_size(bad)


@pytest.mark.parametrize("spec", [TINY, SD15], ids=lambda p: p.name)
def test_the_presets_parameter_counts_are_their_networks(spec) -> None:  # type: ignore[no-untyped-def]
    """The planner's weights: each network's parameters, counted on the meta device."""
    import torch
    from diffusers import AutoencoderKL
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    from mfollow.models.controllers import PoseController
    from mfollow.models.unet3d import UNet3D

    with torch.device("meta"):
        nets = {"unet": UNet3D(**spec.unet), "poctr": PoseController(**spec.poctr), "vae": AutoencoderKL(**spec.vae),
                "image_encoder": CLIPVisionModelWithProjection(CLIPVisionConfig(**spec.image_encoder))}  # fmt: skip
    assert spec.parameters == {k: sum(p.numel() for p in n.parameters()) for k, n in nets.items()}


def test_a_refusal_names_the_longest_window_that_fits() -> None:
    """Per frame the leanest plan needs (10 + 24) x 4 px plus the offloaded U-Net's 440 B."""
    with pytest.raises(UsageError) as caught:
        plan_memory(SPEC, replace(W, frames=24), 440 + 34 * 4 * 9)
    assert caught.value.hint.startswith("a 9-frame window fits ('mfollow long --window 9')")
    assert "--dtype bfloat16" in caught.value.hint  # float32 networks: half precision would help
    with pytest.raises(UsageError) as caught:
        plan_memory(SPEC, replace(W, frames=24, dtype="bfloat16"), 440)
    assert "--dtype" not in caught.value.hint  # already half precision: no such advice
