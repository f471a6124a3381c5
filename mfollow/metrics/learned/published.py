"""Loading the published weight files into our modules, with a strict key check."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mfollow.runtime.errors import WeightsError


def load_pth(path: Path) -> dict[str, torch.Tensor]:
    """A ``torch.save``d state dict, read without running pickled code (``weights_only``; one
    reader for every checkpoint: :func:`mfollow.models.checkpoint.load_state_dict`)."""
    from mfollow.models.checkpoint import load_state_dict

    return load_state_dict(path)


def load_into(
    module: nn.Module,
    state: dict[str, torch.Tensor],
    source: Path,
    *,
    rename: dict[str, str] | None = None,
    ignore: tuple[str, ...] = (),
) -> None:
    """Copy ``state`` into ``module``: every parameter and buffer must be given with its shape;
    keys starting with one of ``ignore`` (parts of the published network we do not run, such
    as a classifier) and BatchNorm's ``num_batches_tracked`` may be absent or extra."""
    rename = rename or {}
    state = {rename.get(k, k): v for k, v in state.items() if not k.startswith(ignore)}
    own = {k: v for k, v in module.state_dict().items() if not k.endswith("num_batches_tracked")}
    missing = sorted(set(own) - set(state))
    extra = sorted(k for k in set(state) - set(own) if not k.endswith("num_batches_tracked"))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or extra or shapes:
        parts = [f"{len(missing)} missing (e.g. {missing[0]})"] if missing else []
        parts += [f"{len(extra)} unexpected (e.g. {extra[0]})"] if extra else []
        parts += [f"{len(shapes)} of another shape (e.g. {shapes[0]})"] if shapes else []
        raise WeightsError(f"{source}: does not fit the network: {', '.join(parts)}")
    module.load_state_dict({k: state[k].to(own[k].dtype) for k in own}, strict=False)
