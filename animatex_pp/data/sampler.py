"""The task-mixing sampler: one task per step, the same on every rank, different samples per rank.

Each step draws a task with the configured weights and then one resolution bucket of that task (weighted by its
clip count), from generators that depend only on `(seed, step)`: every rank draws the same, so every rank runs the
same task in a step (ZeRO-2/3 reduce gradients per bucket of parameters; every rank must use the same ones). The
samples come from that (task, bucket) group's stream: per epoch a permutation of the group drawn from `(seed,
task, bucket, epoch)`, split over the ranks as `DistributedSampler` does (rank r takes every world-size-th entry
from r, each rank the same count), so two ranks never share a sample within an epoch.

A step is the unit the sampler yields one batch for: with gradient accumulation, each micro-step is a step, so an
optimizer update averages micro-steps of several tasks in the configured proportions rather than putting all of
its weight on one task (all ranks still agree in every micro-step).

Everything is a function of the step (`batch_at(step)`); the only state is the next step, which is what
`state_dict` saves, so a resumed sampler yields exactly what the uninterrupted one would.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence

import numpy as np

from animatex_pp.data.buckets import Bucket
from animatex_pp.data.clips import SampleKey
from animatex_pp.data.randomness import numpy_generator

logger = logging.getLogger(__name__)

# Steps whose task and bucket are drawn together by one generator (replaying to step s costs s / PLAN_BLOCK draws).
PLAN_BLOCK = 1024


class TaskMixingSampler:
    """For each step, the `SampleKey`s of one rank's batch: a `batch_sampler` for `torch.utils.data.DataLoader`.

    tasks, buckets: the task and the resolution bucket of each sample of the dataset (`ClipDataset.tasks`/`buckets`).
    weights: task -> weight (normalised here); a task may have weight 0.
    batch_size: samples per rank per step. world_size, rank: the data-parallel world.
    num_steps: the step to stop before (None: never stop). start_step: the first step yielded.
    """

    def __init__(
        self,
        tasks: Sequence[str],
        buckets: Sequence[Bucket],
        weights: Mapping[str, float],
        batch_size: int,
        world_size: int = 1,
        rank: int = 0,
        seed: int = 0,
        num_steps: int | None = None,
        start_step: int = 0,
    ):
        if len(tasks) != len(buckets):
            raise ValueError(f"got {len(tasks)} tasks but {len(buckets)} buckets: give one of each per sample")
        if batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"need batch_size >= 1 and 0 <= rank < world_size, got {batch_size}, {rank}, {world_size}"
            )
        if any(weight < 0 for weight in weights.values()) or not sum(weights.values()) > 0:
            raise ValueError(f"task weights must be >= 0 and not all 0, got {dict(weights)}")
        self.batch_size, self.world_size, self.rank, self.seed = batch_size, world_size, rank, seed
        self.num_steps, self.start_step = num_steps, start_step

        # (task, bucket) -> sample indices; a group too small to give every rank a batch is left out.
        groups: dict[tuple[str, Bucket], list[int]] = {}
        for index, (task, bucket) in enumerate(zip(tasks, buckets, strict=True)):
            groups.setdefault((task, tuple(bucket)), []).append(index)
        self.task_names = sorted(name for name, weight in weights.items() if weight > 0)
        self.groups: dict[str, list[tuple[Bucket, np.ndarray]]] = {name: [] for name in self.task_names}
        for (task, bucket), indices in sorted(groups.items()):
            if task not in self.groups:
                continue
            if len(indices) // world_size < batch_size:
                logger.warning(
                    "bucket %dx%d of task %s has %d clips, fewer than %d ranks x %d per batch: it is not used",
                    *bucket, task, len(indices), world_size, batch_size,
                )  # fmt: skip
                continue
            self.groups[task].append((bucket, np.array(indices)))
        empty = [name for name in self.task_names if not self.groups[name]]
        if empty:
            raise ValueError(
                f"task {', '.join(empty)} has a weight but no bucket with at least world_size x batch_size = "
                f"{world_size * batch_size} clips: add clips, lower the batch size, or set its weight to 0"
            )
        total = sum(weights[name] for name in self.task_names)
        self.task_probabilities = np.array([weights[name] / total for name in self.task_names])
        self._plans: list[tuple[int, int]] = []  # (task, group) of each step planned so far
        self._positions: list[int] = []  # each step's position in its group's stream (in batches)
        self._counts: dict[tuple[int, int], int] = {}  # batches each group has given in the planned steps
        self._shards: dict[tuple[int, int, int], np.ndarray] = {}  # recent (task, group, epoch) shards

    # -- the plan: which group each step reads -----------------------------------------------------------------------

    def _extend_plan(self, steps: int) -> None:
        """Plan steps up to `steps` (exclusive), drawing tasks and buckets a block of steps at a time."""
        task_cumulative = np.cumsum(self.task_probabilities)
        group_cumulative = []
        for name in self.task_names:
            sizes = np.array([len(indices) for _, indices in self.groups[name]], dtype=float)
            group_cumulative.append(np.cumsum(sizes / sizes.sum()))
        while len(self._plans) < steps:
            rng = numpy_generator(self.seed, "plan", len(self._plans) // PLAN_BLOCK)
            task_draws, group_draws = rng.random(PLAN_BLOCK), rng.random(PLAN_BLOCK)
            # searchsorted can return the length itself when rounding leaves a cumulative sum just under 1
            tasks = np.minimum(np.searchsorted(task_cumulative, task_draws, side="right"), len(self.task_names) - 1)
            groups = np.zeros(PLAN_BLOCK, dtype=int)
            for task, cumulative in enumerate(group_cumulative):
                chosen = tasks == task
                groups[chosen] = np.minimum(np.searchsorted(cumulative, group_draws[chosen], side="right"),
                                            len(cumulative) - 1)  # fmt: skip
            for plan in zip(tasks.tolist(), groups.tolist(), strict=True):
                self._positions.append(self._counts.get(plan, 0))
                self._counts[plan] = self._counts.get(plan, 0) + 1
                self._plans.append(plan)

    def task_at(self, step: int) -> str:
        """The task every rank runs at `step`."""
        self._extend_plan(step + 1)
        return self.task_names[self._plans[step][0]]

    def bucket_at(self, step: int) -> Bucket:
        self._extend_plan(step + 1)
        task, group = self._plans[step]
        return self.groups[self.task_names[task]][group][0]

    # -- the samples: this rank's share of the group's stream --------------------------------------------------------

    def _shard(self, task: int, group: int, epoch: int) -> np.ndarray:
        """This rank's samples of a group in one epoch (every rank gets the same count)."""
        if (task, group, epoch) not in self._shards:
            if len(self._shards) >= 2 * sum(len(groups) for groups in self.groups.values()):
                self._shards.clear()  # a long run passes through many epochs; keep only recent ones
            indices = self.groups[self.task_names[task]][group][1]
            order = numpy_generator(self.seed, "shuffle", task, group, epoch).permutation(indices)
            per_rank = len(indices) // self.world_size
            self._shards[task, group, epoch] = order[self.rank :: self.world_size][:per_rank]
        return self._shards[task, group, epoch]

    def batch_at(self, step: int) -> list[SampleKey]:
        """This rank's keys for `step`."""
        self._extend_plan(step + 1)
        task, group = self._plans[step]
        per_rank = len(self.groups[self.task_names[task]][group][1]) // self.world_size
        first = self._positions[step] * self.batch_size
        keys = []
        for position in range(first, first + self.batch_size):
            epoch, offset = divmod(position, per_rank)
            keys.append(SampleKey(step, self.rank, int(self._shard(task, group, epoch)[offset])))
        return keys

    def __iter__(self) -> Iterator[list[SampleKey]]:
        step = self.start_step
        while self.num_steps is None or step < self.num_steps:
            yield self.batch_at(step)
            step += 1

    def __len__(self) -> int:
        if self.num_steps is None:
            raise TypeError("an endless TaskMixingSampler (num_steps=None) has no length")
        return max(0, self.num_steps - self.start_step)

    def state_dict(self, step: int | None = None) -> dict[str, int]:
        """What resuming needs: the first step not yet trained (a DataLoader reads ahead of training, so the
        trainer passes its own step) and what the sequence depends on."""
        step = self.start_step if step is None else step
        return {"step": int(step), "seed": self.seed, "world_size": self.world_size}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        if state.get("seed", self.seed) != self.seed or state.get("world_size", self.world_size) != self.world_size:
            raise ValueError(
                f"the saved sampler had seed {state.get('seed')} and world size {state.get('world_size')}, this one "
                f"has {self.seed} and {self.world_size}: resume with the same seed and number of processes"
            )
        self.start_step = int(state["step"])
