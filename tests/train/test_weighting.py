"""difficulty_weights: the contract formulas, TRL's group layout, and every process's slice."""

from __future__ import annotations

import math

import pytest
import torch

from univg.train.weighting import difficulty_weights, group_mean_iou, process_weights


def expected_exp(rewards: list[float], group_size: int) -> list[float]:
    """exp(1 - group mean), written out by hand, one entry per completion."""
    out = []
    for start in range(0, len(rewards), group_size):
        group = rewards[start : start + group_size]
        out.extend([math.exp(1 - sum(group) / len(group))] * len(group))
    return out


@pytest.mark.parametrize(("prompts", "group_size"), [(2, 4), (3, 8), (1, 2), (5, 3)])
def test_exp_weights_equal_exp_of_one_minus_group_mean(prompts, group_size):
    generator = torch.Generator().manual_seed(prompts * 100 + group_size)
    rewards = torch.rand(prompts * group_size, generator=generator)
    got = difficulty_weights(rewards, group_size)
    assert got.shape == (prompts * group_size,)
    assert got.tolist() == pytest.approx(expected_exp(rewards.tolist(), group_size), rel=1e-6)


def test_weights_are_constant_within_a_group_and_fall_with_ease():
    rewards = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5, 1.0, 1.0, 0.9, 0.9])
    got = difficulty_weights(rewards, 4)
    assert got[:4].tolist() == pytest.approx([math.e] * 4)
    assert got[4:8].tolist() == pytest.approx([math.exp(0.5)] * 4)
    assert got[8:].tolist() == pytest.approx([math.exp(0.05)] * 4)


def test_group_layout_is_consecutive_not_strided():
    # two groups of 2: [1, 1] (easy) and [0, 0] (hard); a strided reading would mix them
    got = difficulty_weights(torch.tensor([1.0, 1.0, 0.0, 0.0]), 2)
    assert got.tolist() == pytest.approx([1.0, 1.0, math.e, math.e])


@pytest.mark.parametrize(
    ("mode", "k", "formula"),
    [
        ("power", 1.0, lambda m: (1.05 - m) ** 1.0),
        ("power", 2.5, lambda m: (1.05 - m) ** 2.5),
        ("log", 1.0, lambda m: -math.log(0.02 + m)),
        ("none", 1.0, lambda m: 1.0),
        ("exp", 3.0, lambda m: math.exp(1 - m)),  # k only affects 'power'
    ],
)
def test_other_modes_follow_their_formulas(mode, k, formula):
    rewards = torch.tensor([0.1, 0.3, 0.2, 0.6, 0.9, 0.7])
    got = difficulty_weights(rewards, 3, mode=mode, k=k)
    means = [0.2, 0.7333333]
    assert got.tolist() == pytest.approx([formula(means[0])] * 3 + [formula(means[1])] * 3, rel=1e-5)


def test_group_means_and_dtype_device():
    rewards = torch.tensor([0.2, 0.4, 1.0, 0.0], dtype=torch.float64)
    assert group_mean_iou(rewards, 2).tolist() == pytest.approx([0.3, 0.5])
    got = difficulty_weights(rewards, 2)
    assert got.device == rewards.device and got.dtype.is_floating_point


def test_unscorable_group_gets_weight_one():
    rewards = torch.tensor([math.nan, math.nan, 0.5, math.nan])
    got = difficulty_weights(rewards, 2)
    assert got.tolist() == pytest.approx([1.0, 1.0, math.exp(0.5), math.exp(0.5)])


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="groups of num_generations=4"):
        difficulty_weights(torch.rand(6), 4)
    with pytest.raises(ValueError, match="1-D"):
        difficulty_weights(torch.rand(2, 4), 4)
    with pytest.raises(ValueError, match="weighting mode"):
        difficulty_weights(torch.rand(4), 2, mode="linear")


@pytest.mark.parametrize(
    ("processes", "local", "group_size"),
    [
        (2, 8, 8),  # one prompt per process
        (2, 4, 8),  # a group spans both processes
        (4, 6, 3),  # two groups per process
        (3, 4, 6),  # groups straddle process boundaries unevenly
    ],
)
def test_each_process_slice_carries_its_global_groups_weight(processes, local, group_size):
    gathered = torch.rand(processes * local, generator=torch.Generator().manual_seed(local * group_size))
    expected = expected_exp(gathered.tolist(), group_size)
    pieces = [process_weights(gathered, group_size, index, local) for index in range(processes)]
    assert torch.cat(pieces).tolist() == pytest.approx(expected, rel=1e-6)
    # what a per-process computation (the release's bug) would give instead differs when groups straddle
    if local % group_size:
        naive = [difficulty_weights(gathered[i * local : (i + 1) * local], math.gcd(local, group_size))
                 for i in range(processes)]
        assert torch.cat(naive).tolist() != pytest.approx(expected, rel=1e-6)


def test_process_slice_out_of_range_is_refused():
    with pytest.raises(ValueError, match="exceeds"):
        process_weights(torch.rand(8), 4, process_index=2, local_count=4)


def test_contract_home_of_difficulty_weights_is_the_same_function():
    """The contract names univg.train.grpo.difficulty_weights; the maths lives in weighting.py."""
    import univg.train.grpo
    import univg.train.weighting

    assert univg.train.grpo.difficulty_weights is univg.train.weighting.difficulty_weights


# ----------------------------------------------------------------------------- pinned by mutation testing
def test_integer_rewards_and_groups_of_one_are_averaged_in_float():
    assert group_mean_iou([1, 0, 1, 1], 2).tolist() == [0.5, 1.0]  # ints: means, not an integer-mean error
    assert group_mean_iou([0.25, 0.75], 1).tolist() == [0.25, 0.75]  # G = 1: each completion its own group


def test_k_defaults_to_one_and_reaches_the_per_process_weights():
    rewards = torch.tensor([0.2, 0.4, 0.9, 0.7])
    assert torch.allclose(difficulty_weights(rewards, 2, "power"), difficulty_weights(rewards, 2, "power", k=1.0))
    squared = difficulty_weights(rewards, 2, "power", k=2.0)
    assert torch.allclose(process_weights(rewards, 2, 1, 2, mode="power", k=2.0), squared[2:])
    assert torch.allclose(process_weights(rewards, 2, 0, 2, mode="power"), difficulty_weights(rewards, 2, "power")[:2])
