"""The windows of a long video spread over the ranks of a process group (docs/method.md, §5; docs/scaling.md).

Each rank runs a contiguous block of windows (:func:`share`). At every step it sends the others
only its windows' contributions to the frames that windows of several ranks cover (the overlaps
at the blocks' seams), and adds every contribution to a frame in window order, exactly as one
process does (``0 + c_1 + c_2 + ...``): the blended latents are the same bits for any number of
ranks. Rank 0 gathers the frames each rank owns (those whose first window is the rank's) when it
needs the whole state: for its checkpoint and for the final decode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from mfollow.sampling.state import SamplerState
from mfollow.sampling.windows import Window

if TYPE_CHECKING:
    from mfollow.runtime.distributed import Group

Contribution = tuple[torch.Tensor, torch.Tensor]  # weighted next z_e, z_r of one window (1, C, n, h, w)


def share(n_windows: int, world: int) -> list[range]:
    """Contiguous, balanced blocks of window indices, one per rank (possibly empty)."""
    return [range(r * n_windows // world, (r + 1) * n_windows // world) for r in range(world)]


class Spread:
    """One rank's share of the windows, and how its step's results meet the others'."""

    def __init__(self, windows: list[Window], group: Group) -> None:
        self.windows, self.group = windows, group
        frames = windows[-1].stop
        blocks = share(len(windows), group.world)
        self.mine = blocks[group.rank]
        rank_of = np.empty(len(windows), dtype=np.int64)
        for r, block in enumerate(blocks):
            rank_of[list(block)] = r
        covered = np.zeros((frames, group.world), dtype=bool)  # frame x rank: a window of the rank covers it
        owner = np.full(frames, -1, dtype=np.int64)  # the rank of the frame's first window
        for k, w in enumerate(windows):
            covered[w.start : w.stop, rank_of[k]] = True
            span = owner[w.start : w.stop]
            span[span < 0] = rank_of[k]
        shared = covered.sum(axis=1) > 1
        # per window of mine: the offsets (inside the window) of its frames other ranks also cover
        self.exchanged = {k: np.flatnonzero(shared[windows[k].start : windows[k].stop]) for k in self.mine}
        self.owned = np.flatnonzero(owner == group.rank)
        self.valid = np.zeros(frames, dtype=bool)  # frames this rank's blend makes complete
        for k in self.mine:
            self.valid[windows[k].start : windows[k].stop] = True

    def step(
        self,
        state: SamplerState,
        contribution: Callable[[int], Contribution],
        check: Callable[[torch.Tensor, torch.Tensor], None],
    ) -> Contribution:
        """Run this rank's windows, exchange the shared frames' contributions, blend in window
        order, then ``check`` the frames this rank completed. A failure on any rank, in its
        windows or its check, is raised on every rank (:meth:`Group.agree`)."""
        mine = self.group.agree(lambda: {k: contribution(k) for k in self.mine})
        payload = {
            k: (idx, ce[:, :, idx].cpu(), cr[:, :, idx].cpu())  # (1, C, len(idx), h, w) each
            for k, (ce, cr) in mine.items()
            if len(idx := self.exchanged[k])
        }
        received: dict[int, Any] = {}
        for part in self.group.all_gather(payload):
            received.update(part)
        new_e, new_r = torch.zeros_like(state.z_e), torch.zeros_like(state.z_r)
        for k, w in enumerate(self.windows):  # window order: the order of addition of one process
            if k in mine:
                ce, cr = mine[k]
                new_e[:, :, w.start : w.stop] += ce
                new_r[:, :, w.start : w.stop] += cr
            elif k in received:
                idx, ce, cr = received[k]
                frames = torch.from_numpy(w.start + idx).to(new_e.device)
                new_e[:, :, frames] += ce.to(new_e.device)
                new_r[:, :, frames] += cr.to(new_r.device)
        self.group.agree(lambda: check(self.frames(new_e), self.frames(new_r)))
        return new_e, new_r

    def frames(self, z: torch.Tensor) -> torch.Tensor:
        """The frames of ``z`` (1, C, F, h, w) that this rank's blend completed."""
        return z[:, :, torch.from_numpy(np.flatnonzero(self.valid)).to(z.device)]

    def gather(self, state: SamplerState) -> SamplerState:
        """The whole state on rank 0 (each rank sends the frames it owns); others keep theirs."""
        idx = torch.from_numpy(self.owned).to(state.z_e.device)
        parts = self.group.gather((self.owned, state.z_e[:, :, idx].cpu(), state.z_r[:, :, idx].cpu()))
        if parts is None:  # not rank 0
            return state
        z_e, z_r = state.z_e.clone(), state.z_r.clone()
        for owned, ze, zr in parts:
            at = torch.from_numpy(owned).to(z_e.device)
            z_e[:, :, at] = ze.to(z_e.device)
            z_r[:, :, at] = zr.to(z_r.device)
        return SamplerState(z_e, z_r, state.step)
