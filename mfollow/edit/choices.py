"""The choice sets of an edit's options, free of heavy imports (the command line builds its option
types from them; :class:`mfollow.edit.request.EditRequest` types its fields with them)."""

from typing import Literal

EditMaskChoice = Literal[
    "auto", "hull", "warp", "segdit"
]  # M_e when not given; auto: a fresh stage, else the target's silhouette warped, else hull
Fit = Literal["trim", "loop", "hold"]  # edit poses shorter than the source
OutputSize = Literal["source", "working"]  # write at the source's size or the model's
PresetChoice = Literal["auto", "sd15", "tiny"]  # auto: sd15 when installed, else the bundled tiny model
Device = Literal["cpu", "cuda", "mps"]
Dtype = Literal["auto", "float32", "float16", "bfloat16"]  # auto: runtime.devices.auto_dtype
# the sampler's noise: keyed by (seed, frame) (any window layout, resumable), or drawn as the release
# draws it (one window: the global CPU generator seeded once, the initial latent then the SDE steps' noise)
Noise = Literal["keyed", "release"]
