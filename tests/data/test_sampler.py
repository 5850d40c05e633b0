"""The task-mixing sampler: task frequencies, rank agreement, disjoint shards, exact resume."""

import numpy as np
import pytest

from animatex_pp.data.sampler import TaskMixingSampler

TASKS = ["animation"] * 60 + ["ti2v"] * 40
BUCKETS = [(64, 64) if index % 3 else (48, 80) for index in range(100)]
WEIGHTS = {"animation": 0.7, "ti2v": 0.3}


def sampler(rank=0, world_size=2, **kwargs):
    return TaskMixingSampler(TASKS, BUCKETS, WEIGHTS, batch_size=2, world_size=world_size, rank=rank, **kwargs)


def test_task_frequencies_match_the_weights():
    mixing = sampler()
    tasks = [mixing.task_at(step) for step in range(4000)]
    share = tasks.count("animation") / len(tasks)
    # binomial standard deviation at n = 4000: sqrt(0.7 * 0.3 / 4000) = 0.0072; 4 sigma
    assert abs(share - 0.7) < 0.03


def test_ranks_agree_on_task_and_bucket_and_never_share_a_sample_within_an_epoch():
    ranks = [sampler(rank=rank) for rank in range(2)]
    seen: dict[tuple, list[set]] = {}
    for step in range(300):
        batches = [r.batch_at(step) for r in ranks]
        assert ranks[0].task_at(step) == ranks[1].task_at(step)
        bucket = ranks[0].bucket_at(step)
        assert bucket == ranks[1].bucket_at(step)
        for keys in batches:
            assert {TASKS[key.index] for key in keys} == {ranks[0].task_at(step)}
            assert {BUCKETS[key.index] for key in keys} == {bucket}
            assert all(key.step == step for key in keys)
        position = ranks[0]._positions[step]
        group = (ranks[0].task_at(step), bucket)
        group_size = sum(1 for t, b in zip(TASKS, BUCKETS, strict=True) if (t, b) == group)
        for rank, keys in enumerate(batches):
            for offset, key in enumerate(keys):
                epoch = (position * 2 + offset) // (group_size // 2)  # batches of 2, shards of group_size // 2
                seen.setdefault((*group, epoch), [set(), set()])[rank].add(key.index)
    for first, second in seen.values():
        assert not first & second
    # the run went through several epochs of the groups, so the check above covered epoch boundaries
    assert max(epoch for *_, epoch in seen) >= 2


def test_each_epoch_of_a_group_takes_every_sample_once():
    one = sampler(world_size=1)
    group = [index for index in range(100) if TASKS[index] == "ti2v" and BUCKETS[index] == (64, 64)]
    drawn, step = [], 0
    while len(drawn) < 2 * len(group):  # two epochs (batches of 2 straddle the boundary when the group is odd)
        if (one.task_at(step), one.bucket_at(step)) == ("ti2v", (64, 64)):
            drawn += [key.index for key in one.batch_at(step)]
        step += 1
    assert sorted(drawn[: len(group)]) == group
    assert sorted(drawn[len(group) : 2 * len(group)]) == group
    assert drawn[: len(group)] != drawn[len(group) : 2 * len(group)]  # reshuffled


def test_resumed_sampler_yields_the_same_sequence():
    full = list(sampler(num_steps=120))
    interrupted = sampler(num_steps=120)
    first = [batch for _, batch in zip(range(50), interrupted, strict=False)]
    state = interrupted.state_dict(step=50)
    resumed = sampler(num_steps=120)
    resumed.load_state_dict(state)
    assert first + list(resumed) == full
    assert len(resumed) == 70


def test_resume_with_another_world_is_refused_and_bad_setups_are_explained():
    state = sampler().state_dict(step=3)
    with pytest.raises(ValueError, match="same seed and number of processes"):
        sampler(world_size=4).load_state_dict(state)
    with pytest.raises(ValueError, match="task ti2v has a weight but no bucket"):
        TaskMixingSampler(TASKS[:61], BUCKETS[:61], WEIGHTS, batch_size=2)
    with pytest.raises(ValueError, match="not all 0"):
        TaskMixingSampler(TASKS, BUCKETS, {"animation": 0}, batch_size=1)


def test_weights_of_zero_exclude_a_task():
    only = TaskMixingSampler(TASKS, BUCKETS, {"animation": 1.0, "ti2v": 0.0}, batch_size=3)
    assert {only.task_at(step) for step in range(200)} == {"animation"}
    assert np.all([TASKS[key.index] == "animation" for step in range(50) for key in only.batch_at(step)])
