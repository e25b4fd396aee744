"""Difficulty-aware weighting (UniVG-R1 stage 3): the weight maths, pure torch.

Each prompt group of G completions gets one weight phi from its own mean IoU reward m, and the
group's advantages are multiplied by it (univg.train.grpo_trainer does that inside TRL):
  exp = exp(1 - m) (the paper's choice), power = (1.05 - m)**k, log = -log(0.02 + m), none = 1.
`difficulty_weights` is the contract (also importable from univg.train.grpo, as documented).
"""

from __future__ import annotations

from typing import get_args

import torch

from univg.config import WeightingMode

WEIGHTING_MODES: tuple[str, ...] = get_args(WeightingMode)
EASY_IOU = 0.8  # a group whose mean IoU exceeds this counts as an easy prompt


def group_mean_iou(iou_rewards: torch.Tensor, num_generations: int) -> torch.Tensor:
    """Mean IoU of each prompt group, in TRL's layout (a group's G completions consecutive)."""
    rewards = torch.as_tensor(iou_rewards, dtype=torch.float32)
    if rewards.dim() != 1:
        raise ValueError(f"iou_rewards must be 1-D (one per completion), got shape {tuple(rewards.shape)}")
    if num_generations < 1 or rewards.numel() % num_generations:
        raise ValueError(
            f"{rewards.numel()} rewards cannot be split into groups of num_generations={num_generations}"
        )
    return torch.nanmean(rewards.view(-1, num_generations), dim=1)


def difficulty_weights(
    iou_rewards: torch.Tensor, num_generations: int, mode: str = "exp", k: float = 1.0
) -> torch.Tensor:
    """One weight per completion, equal within a group, from that group's mean IoU m (contract).

    exp = exp(1 - m) in [1, e] (the paper's choice); power = (1.05 - m)**k; log = -log(0.02 + m)
    (as released: it turns slightly negative for m > 0.98); none = 1 (plain GRPO).
    A group whose rewards are all NaN (unscorable) gets weight 1: its advantages are 0 anyway.
    """
    if mode not in WEIGHTING_MODES:
        raise ValueError(f"unknown weighting mode {mode!r}; choose from {list(WEIGHTING_MODES)}")
    rewards = torch.as_tensor(iou_rewards)
    means = group_mean_iou(rewards, num_generations)
    if mode == "exp":
        weights = torch.exp(1.0 - means)
    elif mode == "power":
        weights = (1.05 - means) ** k
    elif mode == "log":
        weights = -torch.log(0.02 + means)
    else:
        weights = torch.ones_like(means)
    weights = torch.nan_to_num(weights, nan=1.0)
    return weights.repeat_interleave(num_generations)  # on the rewards' device, as they were


def process_slice(values: torch.Tensor, process_index: int, local_count: int) -> torch.Tensor:
    """This process's rows of a tensor gathered from all processes, sliced exactly like TRL slices
    its advantages: process i holds rows [i * local_count, (i + 1) * local_count)."""
    if (process_index + 1) * local_count > values.numel():
        raise ValueError(
            f"process {process_index} with {local_count} local rows exceeds the {values.numel()} gathered rewards"
        )
    return values[process_index * local_count : (process_index + 1) * local_count]


def process_weights(
    gathered_iou: torch.Tensor, num_generations: int, process_index: int, local_count: int,
    mode: str = "exp", k: float = 1.0,
) -> torch.Tensor:
    """This process's weights, computed on the IoU rewards gathered from every process (so a group
    split across processes or micro-batches still gets its own mean)."""
    return process_slice(difficulty_weights(gathered_iou, num_generations, mode, k), process_index, local_count)
