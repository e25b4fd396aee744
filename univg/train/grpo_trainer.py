"""The GRPOTrainer subclass that applies difficulty-aware weighting, and its MLflow reporting.

The weight maths is in univg.train.weighting.

Where the weight goes (TRL 1.16, GRPOTrainer._generate_and_score_completions):
  1. `_calculate_rewards` returns rewards_per_func gathered from every process (rows in TRL's
     layout: each prompt's G completions consecutive);
  2. TRL normalises them per group into advantages, then keeps this process's slice
     rows [process_index * n_local, (process_index + 1) * n_local);
  3. the batch is shuffled and split into micro-batches for gradient accumulation.
We keep the gathered rewards from (1), compute one weight per group from its own IoU rewards,
slice the weights exactly like (2) and multiply the local advantages before (3): every
completion carries its group's weight wherever it lands. The KL term is added to the loss
separately by TRL and is not weighted. The per-completion weights also travel in the batch as
`difficulty_weights`, so tests can see what reaches the loss.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from trl import GRPOTrainer

from univg.schema import write_text_atomic
from univg.tracking import best_effort
from univg.train.weighting import EASY_IOU, WEIGHTING_MODES, difficulty_weights, group_mean_iou, process_slice

HISTORY_FILE = "difficulty_history.json"
log = logging.getLogger(__name__)
IOU_REWARD_NAME = "iou_reward"
SAMPLES_KEPT = 4


class DifficultyWeightedGRPOTrainer(GRPOTrainer):
    """GRPOTrainer whose advantages are scaled per prompt group by a difficulty weight."""

    def __init__(
        self, *args: Any, weighting: str = "exp", weighting_k: float = 1.0,
        iou_reward_name: str = IOU_REWARD_NAME, **kwargs: Any,
    ):
        if weighting not in WEIGHTING_MODES:
            raise ValueError(f"unknown weighting mode {weighting!r}; choose from {list(WEIGHTING_MODES)}")
        super().__init__(*args, **kwargs)
        self.weighting, self.weighting_k = weighting, weighting_k
        if iou_reward_name in self.reward_func_names:
            self.iou_column: int | None = self.reward_func_names.index(iou_reward_name)
        elif weighting != "none":
            raise ValueError(
                f"difficulty weighting needs the IoU reward '{iou_reward_name}' among the reward functions "
                f"{self.reward_func_names}"
            )
        else:
            self.iou_column = None
        self.difficulty_history: list[dict[str, Any]] = []  # one entry per generation batch (train)
        self.last_weighting: dict[str, torch.Tensor] = {}
        self.latest_samples: list[dict[str, Any]] = []
        self._gathered_rewards: torch.Tensor | None = None

    # --- hooks into TRL -----------------------------------------------------------------------
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._gathered_rewards = rewards_per_func  # every process's rows, TRL's group layout
        self._keep_samples(inputs, completions)
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        if self.iou_column is None:
            return output
        mode = "train" if self.model.training else "eval"
        group_size = self.num_generations if mode == "train" else self.num_generations_eval
        gathered_iou = self._gathered_rewards[:, self.iou_column]
        self._gathered_rewards = None
        weights = difficulty_weights(gathered_iou, group_size, self.weighting, self.weighting_k)

        advantages = output["advantages"]
        local_weights = process_slice(weights, self.accelerator.process_index, advantages.shape[0])
        local_weights = local_weights.to(advantages.device, advantages.dtype)
        output["advantages"] = advantages * local_weights
        output["difficulty_weights"] = local_weights

        means = group_mean_iou(gathered_iou, group_size)
        self._record(mode, means, weights, group_size)
        return output

    def _save_checkpoint(self, model, trial):
        super()._save_checkpoint(model, trial)
        if self.args.should_save:
            folder = Path(self._get_output_dir(trial=trial)) / f"checkpoint-{self.state.global_step}"
            if folder.is_dir():  # after trainer_state.json: atomic, so a kill in between leaves none, not half
                write_text_atomic(folder / HISTORY_FILE, json.dumps(self.difficulty_history))

    # --- bookkeeping --------------------------------------------------------------------------
    def _record(self, mode: str, means: torch.Tensor, weights: torch.Tensor, group_size: int) -> None:
        valid = means[~torch.isnan(means)]
        group_weights = weights[::group_size]
        metrics = self._metrics[mode]
        metrics["difficulty/weight_mean"].append(group_weights.mean().item())
        metrics["difficulty/weight_max"].append(group_weights.max().item())
        if valid.numel():
            metrics["difficulty/group_iou_mean"].append(valid.mean().item())
            metrics["difficulty/easy_share"].append((valid > EASY_IOU).float().mean().item())
        self.last_weighting = {"group_mean_iou": means.detach().cpu(), "weights": weights.detach().cpu()}
        if mode == "train":
            self.difficulty_history.append(
                {"step": int(self.state.global_step), "group_mean_iou": [round(v, 6) for v in valid.tolist()]}
            )

    def _keep_samples(self, inputs: list[dict[str, Any]], completions: list[Any]) -> None:
        """The first completion of the first few prompts, with their images, for drawing."""
        group_size = self.num_generations if self.model.training else self.num_generations_eval
        kept = []
        for index in range(0, min(len(inputs), group_size * SAMPLES_KEPT), group_size):
            row = inputs[index]
            if {"images", "box", "target_image"} <= row.keys():
                example = {key: row.get(key) for key in ("images", "box", "box_extent", "target_image", "id", "task")}
                kept.append({"example": example, "completion": completions[index],
                             "step": int(self.state.global_step)})
        self.latest_samples = kept

    def load_difficulty_history(self, checkpoint: str | Path) -> None:
        """Continue the mean-IoU history of a resumed run (steps after the checkpoint are regenerated)."""
        path = Path(checkpoint) / HISTORY_FILE
        if path.is_file():
            self.difficulty_history = json.loads(path.read_text())
        else:  # the run was killed between saving the checkpoint and its history: training state is whole
            log.warning("%s has no %s; the difficulty report starts at this checkpoint", checkpoint, HISTORY_FILE)

    def difficulty_summary(self) -> dict[str, Any]:
        """Share of easy prompts and mean IoU at the start and end of the run."""
        if not self.difficulty_history:
            return {}

        def stats(entry: dict[str, Any]) -> dict[str, float]:
            values = entry["group_mean_iou"] or [math.nan]
            return {"step": entry["step"], "mean_iou": sum(values) / len(values),
                    "easy_share": sum(v > EASY_IOU for v in values) / len(values)}

        return {"first": stats(self.difficulty_history[0]), "last": stats(self.difficulty_history[-1]),
                "generation_batches": len(self.difficulty_history), "weighting": self.weighting}


# ----------------------------------------------------------------------------- reporting
def difficulty_figure(history: list[dict[str, Any]], bins: int = 10, max_columns: int = 60):
    """Heat map of group mean IoU over training (the paper's difficulty bias: easy prompts take
    over) with the easy-prompt share on top. Long runs are pooled into at most `max_columns`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    windows = np.array_split(np.arange(len(history)), min(max_columns, max(1, len(history))))
    edges = np.linspace(0.0, 1.0, bins + 1)
    columns, steps, easy = [], [], []
    for window in windows:
        if not len(window):
            continue
        values = np.clip([v for i in window for v in history[i]["group_mean_iou"]], 0.0, 1.0)
        counts, _ = np.histogram(values, bins=edges)
        columns.append(counts / max(1, counts.sum()))
        steps.append(history[window[-1]]["step"])
        easy.append(float((values > EASY_IOU).mean()) if values.size else 0.0)
    grid = np.stack(columns, axis=1) if columns else np.zeros((bins, 1))

    figure, axis = plt.subplots(figsize=(9, 4))
    image = axis.imshow(grid, origin="lower", aspect="auto", cmap="viridis",
                        extent=(-0.5, grid.shape[1] - 0.5, 0.0, 1.0), vmin=0.0, vmax=1.0)
    axis.plot(range(len(easy)), easy, color="white", marker="o", markersize=3,
              label=f"share of easy prompts (mean IoU > {EASY_IOU})")
    axis.axhline(EASY_IOU, color="white", linestyle=":", linewidth=1)
    axis.set_ylim(0.0, 1.0)
    axis.set_ylabel("group mean IoU  /  easy share")
    axis.set_xlabel("optimizer step at generation")
    axis.set_title("Prompt difficulty over training")
    axis.legend(loc="upper left", fontsize=8)
    if steps:
        ticks = np.linspace(0, len(steps) - 1, min(len(steps), 8)).round().astype(int)
        axis.set_xticks(ticks, [str(steps[t]) for t in ticks])
    figure.colorbar(image, ax=axis, label="share of prompts in the IoU bin")
    figure.tight_layout()
    return figure


class DifficultyReportCallback(TrainerCallback):
    """Into the active MLflow run: drawings of the trainer's own latest rollouts every
    `sample_every_steps` (and at the end), and at the end the mean-IoU heat map over training.
    Per-step metrics (rewards, KL, lengths, difficulty/*) go through MlflowMetricsCallback."""

    def __init__(self, sample_every_steps: int = 0):
        self.sample_every_steps = sample_every_steps
        self.trainer: DifficultyWeightedGRPOTrainer | None = None

    @staticmethod
    def _active_mlflow():
        import mlflow

        return mlflow if mlflow.active_run() is not None else None

    def on_step_end(self, args, state, control, **kwargs):
        if self.sample_every_steps and state.global_step % self.sample_every_steps == 0:
            mlflow = self._active_mlflow()
            if mlflow is not None and state.is_world_process_zero:
                with best_effort(f"GRPO samples of step {state.global_step}"):
                    self.log_samples(mlflow, state.global_step)

    def on_train_end(self, args, state, control, **kwargs):
        mlflow = self._active_mlflow()
        if mlflow is None or not state.is_world_process_zero or self.trainer is None:
            return
        history = self.trainer.difficulty_history
        with best_effort("the GRPO difficulty report"):
            if history:
                import matplotlib.pyplot as plt

                figure = difficulty_figure(history)
                mlflow.log_figure(figure, "grpo/difficulty_histogram.png")
                plt.close(figure)
                mlflow.log_dict({"easy_iou": EASY_IOU, "history": history}, "grpo/group_mean_iou.json")
            self.log_samples(mlflow, state.global_step)

    def log_samples(self, mlflow, step: int) -> None:
        """Ground truth green, parsed answer red, on each kept rollout's target image."""
        from univg.answers import completion_text
        from univg.train.callbacks import sample_panel

        if self.trainer is None:
            return
        for index, sample in enumerate(self.trainer.latest_samples):
            panel, _ = sample_panel(sample["example"], completion_text(sample["completion"]))
            mlflow.log_image(panel, artifact_file=f"grpo/samples/step_{step:05d}_{index}.png")
