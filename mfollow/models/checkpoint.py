"""Reading and writing state dicts, and importing the official MotionFollower checkpoints.

The official release ships three pickles (docs/method.md, §7):

- ``denoising_unet.pth``: the fine-tuned spatial U-Net and the ReCtr (``appearance_adapter.*``),
  possibly motion modules too;
- ``motion_module.pth``: the AnimateDiff-v2 motion modules (possibly with ``pos_encoder.pe``);
- ``poctr.pth``: the PoCtr, 16 tensors, no prefix.

Official precedence: base spatial weights, then ``motion_module.pth``, then ``denoising_unet.pth``
(loaded last, so it wins). Every file is read with ``torch.load(weights_only=True)``: a pickle that
needs code execution is refused. Keys are mapped, never silently dropped: the :class:`Census`
lists what was renamed, dropped (derived buffers, checked), missing and unexpected.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from mfollow.runtime.errors import WeightsError
from mfollow.weights.registry import check_official_folder

#: Prefixes that wrappers add (DataParallel, accelerate, trainers): stripped, and reported.
STRIP_PREFIXES = ("module.", "_orig_mod.", "unet.", "denoising_unet.")
_PE = re.compile(r"\.pos_encoder\.pe$")

StateDict = dict[str, torch.Tensor]


# ------------------------------------------------------------------------------- file I/O
def load_state_dict(path: Path) -> StateDict:
    """A tensor dict from a ``.safetensors`` file or a ``.pth``/``.bin``/``.ckpt`` pickle.

    Pickles are read with ``weights_only=True``; a nested ``{"state_dict": ...}`` wrapper is
    unwrapped. Raises :class:`WeightsError` naming the file and the problem.
    """
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsError(f"{path}: not a valid safetensors file ({_first_line(exc)})") from exc
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if str(exc).startswith("Weights only load failed"):  # PyTorch's weights-only unpickler said no
            reason = _refusal_reason(exc)
            if reason.startswith("it imports"):  # a function or class to import and run
                message = f"the file needs code execution to load ({reason}); mfollow refuses it"
            else:
                message = f"cannot read it: corrupt, or more than plain weights ({reason}); mfollow never runs code"
            raise WeightsError(
                f"{path}: {message}", hint="use the publisher's safetensors file, or a pickle holding only tensors"
            ) from exc
        raise WeightsError(f"{path}: corrupt checkpoint ({_first_line(exc)})") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as exc:
        raise WeightsError(f"{path}: corrupt or truncated checkpoint ({_first_line(exc)})") from exc
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path}: not a dict of tensors")
    return {str(k): v for k, v in obj.items()}


def save_state_dict(state: StateDict, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Write a safetensors file atomically (contiguous copies; shared storage is fine)."""
    from safetensors.torch import save_file

    from mfollow.io.atomic import atomic_path

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        save_file({k: v.detach().contiguous().clone() for k, v in state.items()}, str(tmp), metadata=metadata)


def _refusal_reason(exc: BaseException) -> str:
    """What the weights-only unpickler found (a global to import, an instruction it does not
    run), without PyTorch's advice to load the file with ``weights_only=False``."""
    text = str(exc)
    if found := re.search(r"GLOBAL ([\w.]+)", text):
        return f"it imports {found.group(1)}"
    if found := re.search(r"Unsupported operand (\d+)", text):
        return f"pickle instruction {found.group(1)}"
    return "it holds more than tensors"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ---------------------------------------------------------------------------------- census
@dataclass
class Census:
    """What an import or an inspection found, by key."""

    files: dict[str, int] = field(default_factory=dict)  # file -> tensors read
    renamed: dict[str, str] = field(default_factory=dict)  # original key -> our key
    dropped: dict[str, str] = field(default_factory=dict)  # original key -> why
    overridden: list[str] = field(default_factory=list)  # keys given by more than one file (last wins)
    matched: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatches: dict[str, tuple[list[int], list[int]]] = field(default_factory=dict)  # key -> (file, model)
    dtypes: dict[str, int] = field(default_factory=dict)  # dtype -> tensors
    dtype_mismatches: dict[str, str] = field(default_factory=dict)  # key -> dtype, where not the model's

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatches)

    def to_json(self) -> dict[str, Any]:
        return {
            "files": self.files,
            "matched": self.matched,
            "renamed": self.renamed,
            "dropped": self.dropped,
            "overridden": len(self.overridden),
            "missing": self.missing,
            "unexpected": self.unexpected,
            "shape_mismatches": {k: {"file": a, "model": b} for k, (a, b) in self.shape_mismatches.items()},
            "dtypes": self.dtypes,
            "dtype_mismatches": self.dtype_mismatches,
        }

    def summary(self) -> str:
        parts = [f"{self.matched} matched"]
        for name in ("renamed", "dropped", "missing", "unexpected", "shape_mismatches", "dtype_mismatches"):
            n = len(getattr(self, name))
            if n:
                parts.append(f"{n} {name.replace('_', ' ')}")
        return ", ".join(parts)


def normalise_keys(state: StateDict, census: Census) -> StateDict:
    """Strip wrapper prefixes (reported as renames) and drop derived buffers after checking them."""
    from mfollow.models.motion import sinusoidal_table

    out: StateDict = {}
    for key, value in state.items():
        new = key
        while prefix := next((p for p in STRIP_PREFIXES if new.startswith(p)), None):
            new = new[len(prefix) :]  # no key of ours starts with a wrapper prefix
        if _PE.search(new):
            expected = sinusoidal_table(value.shape[1], value.shape[2]) if value.dim() == 3 else None
            if expected is None or not torch.allclose(value.float(), expected, atol=1e-4):
                raise WeightsError(f"{key}: positional table differs from the standard sinusoidal one")
            census.dropped[key] = "derived positional table (checked equal to ours)"
            continue
        if new != key:
            census.renamed[key] = new
        out[new] = value
    return out


def compare(
    state: StateDict, expected: dict[str, torch.Size], census: Census, dtype: torch.dtype = torch.float32
) -> None:
    """Fill ``census`` with matched / missing / unexpected / shape-mismatched keys, and the keys
    whose dtype is not the model's ``dtype`` (informational: imports convert to it)."""
    census.matched = 0
    census.missing = sorted(k for k in expected if k not in state)
    census.unexpected = sorted(k for k in state if k not in expected)
    for key, value in state.items():
        name = str(value.dtype).replace("torch.", "")
        census.dtypes[name] = census.dtypes.get(name, 0) + 1
        if key in expected and value.dtype != dtype:
            census.dtype_mismatches[key] = name
        if key in expected:
            if tuple(value.shape) != tuple(expected[key]):
                census.shape_mismatches[key] = (list(value.shape), list(expected[key]))
            else:
                census.matched += 1


def raise_for(census: Census, what: str, *, allow_missing: bool = False, allow_unexpected: bool = False) -> None:
    """Turn a census with problems into one :class:`WeightsError` (shape mismatches always fail)."""
    if census.shape_mismatches:
        key, (a, b) = next(iter(census.shape_mismatches.items()))
        raise WeightsError(
            f"{what}: {len(census.shape_mismatches)} shape mismatches, e.g. {key} is {a} in the file but {b} "
            "in the model",
            hint="a checkpoint for another preset?",
        )
    if census.missing and not allow_missing:
        raise WeightsError(
            f"{what}: {len(census.missing)} required keys missing, e.g. {census.missing[0]}",
            hint="--allow-missing keeps their initial values",
        )
    if census.unexpected and not allow_unexpected:
        raise WeightsError(
            f"{what}: {len(census.unexpected)} unexpected keys, e.g. {census.unexpected[0]}",
            hint="--allow-unexpected ignores them",
        )


# ------------------------------------------------------------------------ official release
def read_official(directory: Path, base_unet: StateDict | None = None) -> tuple[StateDict, StateDict, Census]:
    """Merge the official files in ``directory`` with the official precedence.

    Returns the U-Net state (base < motion_module.pth < denoising_unet.pth), the PoCtr state and
    the census (files read, renames, drops, overrides). Comparison against a model is separate.
    """
    check_official_folder(directory)
    census = Census()
    unet: StateDict = dict(base_unet or {})
    for name in ("motion_module.pth", "denoising_unet.pth"):  # later files win
        part = normalise_keys(load_state_dict(directory / name), census)
        census.files[name] = len(part)
        census.overridden += sorted(set(part) & set(unet))
        unet.update(part)
    poctr = normalise_keys(load_state_dict(directory / "poctr.pth"), census)
    census.files["poctr.pth"] = len(poctr)
    return unet, poctr, census
