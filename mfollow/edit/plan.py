"""The memory planner: how an edit runs within the memory it may use (``--max-memory``, else what
the device has free), chosen before any stage or model from the model's measured costs.

Four choices trade memory for time; the planner takes the fastest combination whose estimated
peak fits, in this order of preference:

- activation checkpointing off (the guided pass keeps its activations for the backward pass:
  about 25% faster a guided step, about 3-3.5x the memory; docs/benchmarks.md);
- the networks all resident (``--offload`` moves each phase's networks onto the device and the
  others to the CPU: less memory, a few transfers an edit; never on the CPU, where it saves nothing);
- the reconstruction and the unconditional (CFG) pass batched into one U-Net call
  (:func:`mfollow.sampling.passes.paired_predictions`; it holds more than one pass, less than
  the guided pass);
- the VAE decoding many frames at once (16, 8, 4, 2, then 1).

The estimate (:func:`estimate`): the resident networks' parameters in the networks' dtype, plus
the larger of the sampling step's and the decoder's activations, each a measured number of bytes
per frame and working pixel in float32 (:class:`mfollow.models.presets.Preset`'s ``memory_*``,
measured by ``benchmarks/memory.py``) scaled by the dtype's size, plus the frames themselves
(three float64 channels) while they are resized.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from mfollow.models.presets import Preset
from mfollow.runtime.errors import UsageError

DECODE_CHUNKS = (16, 8, 4, 2, 1)  # frames the VAE decodes at once, most first
FRAME_BYTES = 3 * 8  # a working pixel of a frame in float64 RGB while it is resized
UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 10**3, "kib": 2**10, "m": 2**20, "mb": 10**6, "mib": 2**20,
         "g": 2**30, "gb": 10**9, "gib": 2**30, "t": 2**40, "tb": 10**12, "tib": 2**40}  # fmt: skip


@dataclass(frozen=True)
class Footprint:
    """What one sampling window asks of memory: ``frames`` at ``width`` x ``height`` working pixels,
    the networks' ``dtype`` (``float32``, ``bfloat16``, ``float16``), whether steps are ``guided``
    (consistency guidance) and whether CFG runs (``cfg`` != 1), on a device ``kind`` (``cpu``,
    ``cuda``, ``mps``)."""

    frames: int
    width: int
    height: int
    dtype: str = "float32"
    guided: bool = True
    cfg: bool = True
    kind: str = "cpu"


@dataclass(frozen=True)
class MemoryPlan:
    """How an edit runs: the planner's choices and the peak it estimates for them (bytes);
    ``budget``: the memory it was fitted to (None: unknown, nothing refused)."""

    checkpointing: bool = True
    offload: bool = False
    batch_passes: bool = True
    decode_chunk: int = 4
    estimate: int = 0
    budget: int | None = None


def parse_size(text: str) -> int:
    """``--max-memory``'s value in bytes: a number with an optional unit (``12GiB``, ``12G`` = GiB,
    ``12GB`` = 10^9, ``800MiB``, ``1.5 TiB``, or plain bytes).

    Raises:
        UsageError: naming the value, when it is not a positive size.
    """
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in UNITS or float(m.group(1)) * UNITS[unit] < 1:
        raise UsageError(f"--max-memory {text!r}: give a size such as 12GiB, 12G, 800MiB or a number of bytes")
    return int(float(m.group(1)) * UNITS[unit])


def dtype_bytes(dtype: str) -> int:
    return 4 if dtype == "float32" else 2


def estimate(
    spec: Preset, w: Footprint, *, checkpointing: bool, offload: bool, batch_passes: bool, decode_chunk: int
) -> int:
    """The estimated peak memory (bytes) of an edit window run with these choices (module doc)."""
    size = dtype_bytes(w.dtype)
    pixels = w.frames * w.width * w.height
    scale = size / 4  # the coefficients are float32's; activations are in the networks' dtype
    guided = spec.memory_per_pixel if checkpointing else spec.memory_full
    guided = guided if w.guided else spec.memory_pass  # unguided: the editing pass without grad
    no_grad = spec.memory_pair if batch_passes and w.cfg else spec.memory_pass  # the passes without grad
    sampling = max(guided, no_grad) * pixels * scale + FRAME_BYTES * pixels
    decoding = spec.memory_decode * decode_chunk * w.width * w.height * scale
    weights = {name: count * size for name, count in spec.parameters.items()}
    if offload:  # each phase's networks alone: CLIP; PoCtr and the U-Net (ReCtr); the U-Net; the VAE
        return int(max(weights["image_encoder"], weights["poctr"] + weights["unet"] + sampling,
                       weights["vae"] + decoding))  # fmt: skip
    return int(sum(weights.values()) + max(sampling, decoding))


def plan_memory(
    spec: Preset,
    w: Footprint,
    budget: int | None,
    *,
    offload: bool = False,
    where: str = "--max-memory",
    option: str = "",
) -> MemoryPlan:
    """The fastest choices (module doc) whose estimate fits ``budget`` bytes (None: the fastest of
    all); ``offload``: asked for (``--offload``), so kept; ``where``: what the budget is, for the
    error (``free on cuda``), and ``option`` what it starts with (``--size 512``).

    Raises:
        UsageError: when not even the leanest choices fit, with what they need.
    """
    chunks = [c for c in DECODE_CHUNKS if c <= max(1, w.frames)] or [1]
    offloads = (True,) if offload else (False,) if w.kind == "cpu" else (False, True)
    lean = None
    for checkpointing in (False, True) if w.guided else (True,):
        for off in offloads:
            for batch in (True, False) if w.cfg else (False,):
                for chunk in chunks:
                    need = estimate(spec, w, checkpointing=checkpointing, offload=off, batch_passes=batch,
                                    decode_chunk=chunk)  # fmt: skip
                    plan = MemoryPlan(checkpointing, off, batch, chunk, need, budget)
                    if budget is None or need <= budget:
                        return plan
                    lean = plan if lean is None or need <= lean.estimate else lean  # ties: the leaner choices
    assert lean is not None
    from mfollow.runtime.memory import human

    fits = next((f for f in range(w.frames - 1, 0, -1) if _fits(spec, replace(w, frames=f), budget, offload)), None)
    first = f"a {fits}-frame window fits ('mfollow long --window {fits}'); " if fits else ""

    what = f"{option}: " if option else ""
    half = "use --dtype bfloat16, " if w.dtype == "float32" else ""  # already half: no such advice
    raise UsageError(
        f"{what}a {w.frames}-frame window at {w.width}x{w.height} needs about {human(lean.estimate)} with the "
        f"{spec.name} model in {w.dtype} (checkpointing{', offloading' if lean.offload else ''}, decoding "
        f"{lean.decode_chunk} frame{'s' if lean.decode_chunk > 1 else ''} at a time), more than the "
        f"{human(budget or 0)} {where}",
        hint=f"{first}lower --size (or --window), {half}or a device with more memory",
    )


def _fits(spec: Preset, w: Footprint, budget: int | None, offload: bool) -> bool:
    """Whether the leanest choices for ``w`` fit ``budget``."""
    leanest = estimate(spec, w, checkpointing=w.guided, offload=offload or w.kind != "cpu",
                       batch_passes=False, decode_chunk=1)  # fmt: skip
    return budget is None or leanest <= budget


def resident_bytes(bundle: Any, device: str) -> int:
    """The bytes of ``bundle``'s networks (a :class:`mfollow.models.bundle.ModelBundle`) already on
    ``device`` (a pipeline's model stays there between edits): free memory they do not leave."""
    import torch

    where = torch.device(device)
    return sum(p.numel() * p.element_size() for m in bundle.modules().values() for p in m.parameters()
               if p.device.type == where.type and (where.index is None or p.device.index == where.index))  # fmt: skip
