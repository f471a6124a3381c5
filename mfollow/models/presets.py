"""Model presets. ``sd15`` is exactly the released MotionFollower topology (base config of
``lambdalabs/sd-image-variations-diffusers`` + AnimateDiff-v2 motion modules + PoCtr + ReCtr);
``tiny`` has the same topology with small widths, for tests and the bundled demo model."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mfollow.preprocess.pose import PUPPET_ALIGN
from mfollow.runtime.errors import UsageError

# benchmarks/memory.py --preset sd15 (8 frames at 256², the CPU, 2026-12-07)
SD15_MEMORY = {"guided_ckpt": 2445, "guided_full": 8664, "pass": 727, "pair": 1706, "decode": 3380}
SD15_PARAMETERS = {"unet": 1390099524, "poctr": 1086480, "vae": 83653863, "image_encoder": 303966208}


@dataclass(frozen=True)
class Preset:
    name: str
    unet: dict[str, Any]  # UNet3D config
    poctr: dict[str, Any]  # PoseController config
    vae: dict[str, Any] = field(default_factory=dict)  # AutoencoderKL config
    image_encoder: dict[str, Any] = field(default_factory=dict)  # CLIPVisionConfig
    working_size: int = 512  # default working short side (pixels) of edit/long
    guidance_scale: float = 1.0  # default --guidance-scale of `paper` (docs/benchmarks.md: how it was chosen)
    cfg: float = 3.5  # default --cfg (classifier-free guidance on the CLIP context)
    steps: int = 25  # default --steps (denoising steps)
    # default --warp-person: the source person's own pixels moved into the edit pose over the model's
    # drawing (mfollow.preprocess.pose.warp); for a model that cannot draw the person crisply itself
    warp_person: bool = False
    # the align stage's settings an edit with this model asks for (over ALIGN_DEFAULTS); the tiny
    # model was trained on the synthetic world, whose ground truth aligns the puppet way
    align: dict[str, Any] = field(default_factory=dict)
    # What the memory planner (mfollow.edit.plan) scales: bytes held per frame and working pixel in
    # float32, measured by benchmarks/memory.py (sd15: 8 frames at 256², tiny: 24 frames at 256²,
    # the CPU): the guided editing pass with activation checkpointing (memory_per_pixel) and
    # without (memory_full), one U-Net pass without grad (memory_pass), the reconstruction and
    # unconditional passes as one call of batch 2 (memory_pair), the VAE decoding a frame
    # (memory_decode); and each network's parameter count.
    memory_per_pixel: int = SD15_MEMORY["guided_ckpt"]
    memory_full: int = SD15_MEMORY["guided_full"]
    memory_pass: int = SD15_MEMORY["pass"]
    memory_pair: int = SD15_MEMORY["pair"]
    memory_decode: int = SD15_MEMORY["decode"]
    parameters: dict[str, int] = field(default_factory=lambda: dict(SD15_PARAMETERS))

    @property
    def vae_factor(self) -> int:
        """Frame pixels per latent pixel and side: 2 per downsampling stage of the VAE."""
        return 2 ** (len(self.vae["block_out_channels"]) - 1)

    def sampling_steps(self, steps: int | None) -> int:
        """``--steps`` as given, or the preset's default when not given (None)."""
        return self.steps if steps is None else steps

    def default_guidance_scale(self, guidance: str) -> float:
        """``--guidance-scale`` when not given: the preset's for ``paper``; 1.0 (the release's own
        constants, docs/method.md, §6) for ``official``."""
        return self.guidance_scale if guidance == "paper" else 1.0


#: The released scheduler settings (official ``inference_v2.yaml``): DDIM, v-prediction,
#: zero-terminal-SNR, trailing spacing.
SCHEDULER = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="linear",
    steps_offset=1,
    clip_sample=False,
    prediction_type="v_prediction",
    rescale_betas_zero_snr=True,
    timestep_spacing="trailing",
)

SD15 = Preset(
    "sd15",
    unet=dict(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        cross_attention_dim=768,
        attention_head_dim=8,
        norm_num_groups=32,
        norm_eps=1e-5,
        motion_heads=8,
        motion_norm_groups=32,
        motion_max_frames=32,
    ),
    poctr=dict(out_channels=320, channels=(16, 32, 96, 256)),
    vae=dict(  # stabilityai/sd-vae-ft-mse
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(128, 256, 512, 512),
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=256,
    ),
    image_encoder=dict(  # CLIP ViT-L/14 vision tower with projection (sd-image-variations)
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=224,
        patch_size=14,
        projection_dim=768,
        hidden_act="quick_gelu",
    ),
)

TINY = Preset(
    "tiny",
    unet=dict(
        sample_size=16,
        in_channels=16,  # the tiny VAE's latent channels
        out_channels=16,
        block_out_channels=(32, 64, 64, 64),
        layers_per_block=2,
        cross_attention_dim=32,
        attention_head_dim=2,
        norm_num_groups=8,
        motion_heads=2,
        motion_norm_groups=8,
        motion_max_frames=32,
    ),
    poctr=dict(out_channels=32, channels=(8, 16, 16, 32)),
    vae=dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(16, 32, 64, 64),
        layers_per_block=1,
        latent_channels=16,
        norm_num_groups=8,
        sample_size=128,
    ),
    image_encoder=dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=32,
        patch_size=8,
        projection_dim=32,
    ),
    working_size=128,
    guidance_scale=2000.0,  # chosen on held-out validation pairs (docs/benchmarks.md, quality)
    cfg=1.0,  # CFG lowers PSNR on the bundled model (docs/benchmarks.md, quality); it also skips a pass
    steps=1,  # fewer steps score better on the bundled model, one best (docs/benchmarks.md, quality)
    align=dict(PUPPET_ALIGN),
    # benchmarks/memory.py --preset tiny (24 frames at 256², the CPU; the larger of two runs)
    memory_per_pixel=256,
    memory_full=766,
    memory_pass=59,
    memory_pair=156,
    memory_decode=445,
    parameters={"unet": 5133488, "poctr": 22824, "vae": 1000099, "image_encoder": 24960},
    warp_person=True,  # the person +3.3 dB / SSIM +0.39 against the registered truth (docs/benchmarks.md, quality)
)

PRESETS = {p.name: p for p in (SD15, TINY)}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UsageError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}") from None
