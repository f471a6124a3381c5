"""Resuming an edit: the sampler state saved after every step (safetensors, tagged with the run's
key), so that a killed ``long`` continues where it stopped and writes the same bytes."""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from pathlib import Path

from mfollow.edit.inputs import EditInputs
from mfollow.edit.settings import OUTPUT_ONLY, EditSettings
from mfollow.io.hashing import fingerprint
from mfollow.runtime.errors import MediaError, ProjectError
from mfollow.sampling.state import SamplerState


class StateStore:
    """A sampler checkpoint file (safetensors) tagged with the run's key: resuming is only
    allowed for the same inputs and settings."""

    def __init__(self, path: Path, key: str) -> None:
        self.path, self.key = path, key

    def load(self) -> SamplerState | None:
        from safetensors import safe_open

        if not self.path.is_file():
            return None
        try:
            with safe_open(str(self.path), framework="pt") as fh:
                meta = fh.metadata() or {}
                if meta.get("key") != self.key:
                    raise ProjectError(
                        f"{self.path}: a checkpoint from different inputs or settings",
                        hint="run with the original settings to resume, or pass --restart",
                    )
                return SamplerState(fh.get_tensor("z_e"), fh.get_tensor("z_r"), int(meta["step"]))
        except ProjectError:
            raise
        except Exception as exc:  # OSError, a bad header (safetensors' SafetensorError), missing keys
            raise ProjectError(f"{self.path}: unreadable checkpoint ({exc})", hint="pass --restart") from exc

    def save(self, state: SamplerState) -> None:
        from mfollow.models.checkpoint import save_state_dict

        save_state_dict({"z_e": state.z_e, "z_r": state.z_r}, self.path, {"key": self.key, "step": str(state.step)})

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def run_key(inputs: EditInputs, s: EditSettings, weights: str) -> str:
    """What a run's sampler state depends on: input file (or folder) contents, settings and the
    weights' identity. Settings that only shape the written frames (:data:`OUTPUT_ONLY`) are left
    out, so an interrupted ``long`` can resume with, e.g., ``--no-composite``."""

    h = hashlib.sha256()
    for p in (inputs.source, inputs.source_poses, inputs.edit_poses, inputs.source_masks, inputs.edit_masks):
        if not p.exists():
            raise MediaError(f"{p}: no such file or folder")
        h.update(fingerprint(p).sha256.encode())
    sampling = {k: v for k, v in asdict(s).items() if k not in OUTPUT_ONLY}
    sampling["sampler"].pop("batch_passes")  # the memory plan's: the same state up to float rounding
    h.update(repr(sorted(sampling.items())).encode())
    h.update(weights.encode())
    return h.hexdigest()
