"""Running on several processes with ``torch.distributed``, as ``torchrun`` launches them (one
machine or many, SLURM included): the process group, and agreeing on success or failure.

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous variables; a process
started that way with ``WORLD_SIZE`` > 1 joins the group (gloo on the CPU, NCCL on CUDA, where each
rank takes its local GPU). Collectives time out after ``MFOLLOW_DIST_TIMEOUT`` seconds (default
1800), so a rank that stops answering ends the run instead of hanging it.

Errors: a step that fails on one rank is reported to all of them at the next collective
(:meth:`Group.agree`), and every rank raises the same typed error, so every rank exits with the
code the failing one would have had; only rank 0 prints it.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from mfollow.runtime.errors import EXIT_INTERNAL, MfollowError

T = TypeVar("T")


class RankError(MfollowError):
    """An error raised on another rank, re-raised here with that rank's exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def launched_world() -> int:
    """The number of processes ``torchrun`` started (1 when not started by it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Rank 0, or not distributed: the process that prints, writes outputs and checkpoints."""
    return os.environ.get("RANK", "0") == "0"


@dataclass
class Group:
    """This process's place in the group, and the traffic it caused (bytes of pickled payloads it
    contributed: ``exchanged`` by the blend of overlapping windows, ``gathered`` to rank 0 for
    checkpoints and the final decode)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    exchanged: int = 0
    gathered: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_gather(self, obj: Any, *, kind: str = "exchanged") -> list[Any]:
        """Every rank's ``obj``, in rank order (pickled; tensors are moved to the CPU first)."""
        import torch.distributed as dist

        setattr(self, kind, getattr(self, kind) + len(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)))
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's ``obj`` on rank 0, in rank order (None elsewhere)."""
        import torch.distributed as dist

        self.gathered += len(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
        out: list[Any] | None = [None] * self.world if self.main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        import torch.distributed as dist

        box = [obj if self.main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def agree(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on every rank; if it failed on any, raise that failure (the lowest failing
        rank's) on every rank. The failing rank re-raises its own exception."""
        if self.world == 1:
            return fn()
        try:
            result, failure = fn(), None
        except MfollowError as exc:
            result, failure, own = None, (str(exc), exc.exit_code), exc
        except Exception as exc:
            result, failure, own = None, (f"internal error on rank {self.rank}: {type(exc).__name__}: {exc}",
                                          EXIT_INTERNAL), exc  # fmt: skip
        statuses = self.all_gather(failure, kind="gathered")
        first = next(((r, s) for r, s in enumerate(statuses) if s is not None), None)
        if first is not None:
            if failure is not None and first[0] == self.rank:
                raise own
            raise RankError(f"rank {first[0]}: {first[1][0]}", first[1][1])
        return result  # type: ignore[return-value]

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 alone and hand its result (or its error) to every rank."""
        if self.world == 1:
            return fn()
        result: Any = None
        failure = None
        if self.main:
            try:
                result = fn()
            except MfollowError as exc:
                failure, own = (str(exc), exc.exit_code), exc
            except Exception as exc:
                failure, own = (f"{type(exc).__name__}: {exc}", EXIT_INTERNAL), exc
        result, failure = self.broadcast((result, failure))
        if failure is not None:
            if self.main:
                raise own
            raise RankError(f"rank 0: {failure[0]}", failure[1])
        return result


def join(device: str) -> Group:
    """This process's :class:`Group`: joins the process group when ``torchrun`` started several
    processes (gloo on the CPU; NCCL on CUDA, on the rank's local GPU), else a group of one."""
    world = launched_world()
    if world <= 1:
        return Group()
    import torch
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(local)
    if not dist.is_initialized():
        seconds = float(os.environ.get("MFOLLOW_DIST_TIMEOUT", "1800"))
        dist.init_process_group("nccl" if cuda else "gloo", timeout=timedelta(seconds=seconds))
    return Group(dist.get_rank(), dist.get_world_size(), local)


def rank_device(device: str, group: Group) -> str:
    """``cuda`` under torchrun means this rank's local GPU."""
    return f"cuda:{group.local_rank}" if device == "cuda" and group.world > 1 else device
