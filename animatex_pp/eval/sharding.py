"""An evaluation's clips split over the processes `torchrun --nproc-per-node N` starts (one shard per rank).

Rank 0 makes every decision that touches shared state: it opens the out folder's stage, lists the clips that have
no result yet, and, once every rank has finished its share, writes the split's tables from the clip results on
disk. Each rank generates every N-th of the remaining clips, from its rank on, and saves each one as soon as it is
done, exactly as a single process does; so a killed run, restarted, shares out only what is left.

`torch.distributed` carries only those decisions and barriers, never a tensor, so the process group is gloo on any
device. A rank that fails ends its process, and torchrun then stops the others.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

import torch.distributed as dist

__all__ = ["Shard", "this_shard"]

T = TypeVar("T")
# How long a rank waits at a barrier for the others: a rank may finish its share a whole clip before the slowest
# (minutes to an hour for a 14B model at 81 frames); a crashed rank is stopped by torchrun, not by this timeout.
BARRIER_TIMEOUT = datetime.timedelta(hours=24)
# The errors a rank 0 decision may end in that every rank raises too, so that each stops with the same message.
SHARED_ERRORS = {"FileNotFoundError": FileNotFoundError, "ValueError": ValueError}


@dataclasses.dataclass(frozen=True)
class Shard:
    """This process's place among `world_size` evaluating processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def label(self) -> str:
        """What progress bars add: nothing for a single process, else " [rank R/N]"."""
        return "" if self.world_size == 1 else f" [rank {self.rank}/{self.world_size}]"

    def part(self, items: Sequence[T]) -> list[T]:
        """This rank's items: every `world_size`-th from its rank on (disjoint; together, all of them)."""
        return list(items[self.rank :: self.world_size])

    def device(self, device: str) -> str:
        """The device this rank runs on: with several ranks, "cuda" means this rank's own GPU (cuda:LOCAL_RANK, as
        torchrun numbers them); any other name, an explicit cuda:N included, is kept."""
        return f"cuda:{self.local_rank}" if device == "cuda" and self.world_size > 1 else device

    @contextmanager
    def joined(self) -> Iterator[Shard]:
        """The process group for the shard's messages, for the block: made here (gloo) unless the caller already
        made one, and then destroyed on leaving; nothing for a single process."""
        if self.world_size == 1 or dist.is_initialized():
            yield self
            return
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
        try:
            yield self
        finally:
            dist.destroy_process_group()

    def barrier(self) -> None:
        """Wait until every rank is here."""
        if self.world_size > 1:
            dist.barrier()

    def from_main(self, work: Callable[[], T]) -> T:
        """`work()` run on rank 0 alone, its result given to every rank (the others wait for it). A FileNotFoundError
        or ValueError it raises is raised on every rank."""
        if self.world_size == 1:
            return work()
        message: list = [None]
        if self.is_main:
            try:
                message[0] = ("result", work())
            except tuple(SHARED_ERRORS.values()) as error:
                message[0] = (type(error).__name__, str(error))
        dist.broadcast_object_list(message, src=0)
        kind, value = message[0]
        if kind != "result":
            raise SHARED_ERRORS[kind](value)
        return value


def this_shard() -> Shard:
    """This process's shard: of the process group the caller made, else of the world torchrun describes (RANK,
    WORLD_SIZE, LOCAL_RANK), else a single process."""
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_available() and dist.is_initialized():
        return Shard(dist.get_rank(), dist.get_world_size(), local_rank)
    return Shard(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")), local_rank)
