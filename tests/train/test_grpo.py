"""GRPO: the profile -> TRL arguments, and real GRPOTrainer runs on a tiny Qwen2-VL.

The runs check what actually reaches TRL's loss: for every completion in every micro-batch,
advantage == exp(1 - its group's mean IoU) * the advantage TRL computed without weighting
(read back from TRL's own logs), whatever the batch layout.
"""

from __future__ import annotations

import functools
import json
import math

import pytest
import torch

from univg.config import parse_params
from univg.rewards import format_reward, iou_reward
from univg.train.grpo import build_grpo_args, grpo_arguments, prompts_per_step

PROBE = "pseudo_iou"


def pseudo_iou(completions, **kwargs):
    """A deterministic stand-in IoU in [0, 1] that varies between the random model's completions
    (the real IoU of an untrained model is always 0, which would make every weight e)."""
    texts = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [(sum(map(ord, text)) % 101) / 100 for text in texts]


# ----------------------------------------------------------------------------- arguments
def test_rewards_and_their_weights_come_from_params(tmp_path):
    """`grpo.<profile>.rewards` picks the reward functions by name and weights them in TRL's sum,
    in the same order (the default: the paper's IoU + format, equal weights)."""
    from univg.rewards import reward_functions

    default = parse_params({}).grpo.active
    assert list(default.rewards) == ["iou", "format"] and grpo_arguments(default, tmp_path)["reward_weights"] == [1.0, 1.0]
    profile = parse_params({}, {"grpo.tiny-cpu.rewards": {"iou": 2.0, "format": 1.0, "image_index": 0.5}}).grpo.active
    assert grpo_arguments(profile, tmp_path)["reward_weights"] == [2.0, 1.0, 0.5]
    names = [f.func.__name__ for f in reward_functions(list(profile.rewards))]
    assert names == ["iou_reward", "format_reward", "image_index_reward"]
    with pytest.raises(ValueError, match="unknown reward function"):
        reward_functions(list(parse_params({}, {"grpo.tiny-cpu.rewards": {"accuracy": 1.0}}).grpo.active.rewards))


def test_paper_profile_builds_without_a_gpu_with_vllm_passed_through(tmp_path):
    params = parse_params({}, {"grpo.qwen2-vl-7b.use_vllm": True, "grpo.qwen2-vl-7b.vllm_mode": "server"})
    profile = params.grpo.qwen2_vl_7b
    args = build_grpo_args(profile, tmp_path / "out", dry_run=True)
    assert (args.num_generations, args.beta, args.learning_rate, args.epsilon) == (8, 0.04, 1e-6, 0.2)
    assert (args.temperature, args.max_completion_length, args.lr_scheduler_type) == (1.0, 256, "linear")
    assert (args.loss_type, args.scale_rewards, args.num_iterations) == ("grpo", "group", 1)
    assert args.use_vllm is True and args.vllm_mode == "server"
    assert args.mask_truncated_completions is False and args.report_to in ("none", [], ["none"])
    assert args.remove_unused_columns is False and args.gradient_checkpointing is True
    # 16 completions per device x 8 GPUs / G=8 = the paper's 16 prompts per step
    assert prompts_per_step(profile, num_processes=8) == 16
    raw = grpo_arguments(profile, tmp_path / "out")
    assert raw["bf16"] is True and raw["deepspeed"] == "infra/accelerate/zero3.json"


@pytest.mark.parametrize("profile_name", ["qwen2-vl-7b", "qwen25-vl-7b", "qwen3-vl-8b"])
def test_vllm_modes_reach_trl_as_set_in_params(tmp_path, profile_name):
    """Both of TRL's vLLM modes, from params to the GRPOConfig TRL reads (checked without a GPU)."""
    key = f"grpo.{profile_name}"
    server = parse_params({}, {f"{key}.use_vllm": True, f"{key}.vllm_mode": "server",
                               f"{key}.vllm_server_host": "10.0.0.5", f"{key}.vllm_server_port": 8001,
                               "grpo.profile": profile_name}).grpo.active
    args = build_grpo_args(server, tmp_path / "out", dry_run=True)
    assert (args.use_vllm, args.vllm_mode, args.vllm_server_host, args.vllm_server_port) == (True, "server", "10.0.0.5", 8001)
    colocate = parse_params({}, {f"{key}.use_vllm": True, f"{key}.vllm_tensor_parallel_size": 2,
                                 f"{key}.vllm_gpu_memory_utilization": 0.5, "grpo.profile": profile_name}).grpo.active
    args = build_grpo_args(colocate, tmp_path / "out", dry_run=True)
    assert (args.vllm_mode, args.vllm_tensor_parallel_size, args.vllm_gpu_memory_utilization) == ("colocate", 2, 0.5)


def test_tiny_profile_builds_for_cpu(tmp_path):
    args = build_grpo_args(parse_params({}).grpo.active, tmp_path / "out", max_steps=3)
    assert args.max_steps == 3 and args.bf16 is False and args.use_vllm is False
    assert args.loss_type == "grpo" and args.beta == 0.0 and args.generation_batch_size == 32


# ----------------------------------------------------------------------------- real runs
def make_trainer(model_dir, data_file, out_dir, *, batch, group, accumulation, weighting="exp", k=1.0,
                 plain=False, steps=2, beta=0.04):
    from datasets import Dataset
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import GRPOConfig, GRPOTrainer

    from univg.train.examples import load_examples
    from univg.train.grpo_trainer import DifficultyWeightedGRPOTrainer

    class RecordingTrainer(DifficultyWeightedGRPOTrainer):
        """Records TRL's unweighted advantages per generation and what each loss call receives."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.generations, self.loss_inputs = [], []

        def _generate_and_score_completions(self, inputs):
            output = super()._generate_and_score_completions(inputs)
            local = output["advantages"].shape[0]
            total = local * self.accelerator.num_processes  # TRL logs the rows of every process
            offset = self.accelerator.process_index * local
            self.generations.append({
                "trl_advantages": torch.tensor(list(self._logs["advantages"])[-total:]),
                "iou": torch.tensor(list(self._logs["rewards"][PROBE])[-total:]),
                "rows": list(range(offset, offset + local)),
            })
            # tags that travel with each row through TRL's shuffle and micro-batch split
            output["probe_row"] = torch.arange(offset, offset + local)
            output["probe_generation"] = torch.full((local,), len(self.generations) - 1)
            return output

        def _compute_loss(self, model, inputs):
            keys = ("probe_row", "probe_generation", "advantages", "difficulty_weights")
            self.loss_inputs.append({key: inputs[key].detach().clone() for key in keys})
            return super()._compute_loss(model, inputs)

    dataset = Dataset.from_list(load_examples(data_file, with_completion=False))
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    processor = AutoProcessor.from_pretrained(model_dir, padding_side="left")
    args = GRPOConfig(
        output_dir=str(out_dir), per_device_train_batch_size=batch, num_generations=group,
        gradient_accumulation_steps=accumulation, max_completion_length=12, max_steps=steps, beta=beta,
        loss_type="grpo", learning_rate=1e-3, report_to="none", save_strategy="no", logging_steps=1,
        bf16=False, gradient_checkpointing=False, seed=7,
    )
    rewards = [pseudo_iou, functools.partial(iou_reward, answer_format="indexed"),
               functools.partial(format_reward, answer_format="indexed")]
    common = {"model": model, "processing_class": processor, "reward_funcs": rewards, "args": args,
              "train_dataset": dataset}
    if plain:
        return GRPOTrainer(**common)
    return RecordingTrainer(**common, weighting=weighting, weighting_k=k, iou_reward_name=PROBE)


def expected_weights(iou: torch.Tensor, group: int, mode: str, k: float) -> list[float]:
    formulas = {"exp": lambda m: math.exp(1 - m), "power": lambda m: (1.05 - m) ** k,
                "log": lambda m: -math.log(0.02 + m), "none": lambda m: 1.0}
    out = []
    for start in range(0, len(iou), group):
        values = iou[start : start + group].tolist()
        out.extend([formulas[mode](sum(values) / len(values))] * group)
    return out


def check_advantages_reaching_the_loss(trainer, group: int, mode: str, k: float) -> None:
    """Every row of every micro-batch: advantage == expected weight x TRL's unweighted advantage."""
    expected = [expected_weights(g["iou"], group, mode, k) for g in trainer.generations]
    seen = {g: [] for g in range(len(trainer.generations))}
    for batch_inputs in trainer.loss_inputs:
        for row, generation, advantage, weight in zip(
            batch_inputs["probe_row"].tolist(), batch_inputs["probe_generation"].tolist(),
            batch_inputs["advantages"].tolist(), batch_inputs["difficulty_weights"].tolist(), strict=True,
        ):
            unweighted = trainer.generations[generation]["trl_advantages"][row].item()
            assert weight == pytest.approx(expected[generation][row], rel=1e-5)
            assert advantage == pytest.approx(expected[generation][row] * unweighted, rel=1e-5, abs=1e-7)
            seen[generation].append(row)
    # every completion of this process reached the loss exactly once
    assert all(sorted(seen[g]) == trainer.generations[g]["rows"] for g in seen)
    # not a vacuous check: some advantages are non-zero and weights are not all one
    all_advantages = torch.cat([b["advantages"] for b in trainer.loss_inputs])
    assert all_advantages.abs().max() > 0.1
    assert not all(w == pytest.approx(1.0) for weights in expected for w in weights)


@pytest.mark.parametrize(
    ("batch", "group", "accumulation", "mode", "k"),
    [
        (4, 4, 1, "exp", 1.0),  # one prompt per step
        (4, 8, 2, "exp", 1.0),  # a group spans two micro-batches (per-device batch < G)
        (6, 3, 2, "exp", 1.0),  # two prompts per micro-batch, four per generation batch
        (6, 3, 2, "power", 2.0),
    ],
)
def test_advantages_reaching_the_loss_are_weight_times_unweighted(
    tiny_grpo_model, tiny_grpo_data, tmp_path, batch, group, accumulation, mode, k
):
    trainer = make_trainer(tiny_grpo_model, tiny_grpo_data, tmp_path, batch=batch, group=group,
                           accumulation=accumulation, weighting=mode, k=k)
    trainer.train()

    assert len(trainer.generations) == 2
    assert len(trainer.loss_inputs) == 2 * accumulation
    check_advantages_reaching_the_loss(trainer, group, mode, k)
    # the per-step difficulty metrics are logged next to TRL's
    logged = trainer.state.log_history[0]
    for key in ("difficulty/weight_mean", "difficulty/easy_share", "kl", "rewards/pseudo_iou/mean",
                "completions/mean_length"):
        assert key in logged
    first_iou = trainer.generations[0]["iou"].view(-1, group).mean(1)
    assert trainer.difficulty_history[0]["group_mean_iou"] == pytest.approx(first_iou.tolist(), abs=1e-5)


def test_advantages_are_exact_across_two_processes(tiny_grpo_model, tiny_grpo_data, tmp_path):
    """torchrun, 2 CPU processes (gloo), per-device batch 4, G=8: every group spans both processes."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    result = subprocess.run(
        [*torchrun, __file__, str(tiny_grpo_model), str(tiny_grpo_data), str(tmp_path)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    assert [r["world"] for r in reports] == [2, 2]
    assert all(r["ok"] for r in reports), reports


def _multiprocess_main(model_dir: str, data_file: str, out_dir: str) -> None:
    """One rank of test_advantages_are_exact_across_two_processes."""
    from pathlib import Path

    trainer = make_trainer(model_dir, data_file, Path(out_dir) / "run", batch=4, group=8, accumulation=1)
    trainer.train()
    report = {"world": trainer.accelerator.num_processes, "ok": True, "error": ""}
    try:
        assert len(trainer.generations) == 2 and trainer.generations[0]["trl_advantages"].numel() == 8
        check_advantages_reaching_the_loss(trainer, group=8, mode="exp", k=1.0)
    except AssertionError as error:
        report.update(ok=False, error=str(error))
    rank = trainer.accelerator.process_index
    (Path(out_dir) / f"rank{rank}.json").write_text(json.dumps(report))


def test_mode_none_reproduces_plain_trl_grpo(tiny_grpo_model, tiny_grpo_data, tmp_path):
    layout = {"batch": 4, "group": 4, "accumulation": 2}
    ours = make_trainer(tiny_grpo_model, tiny_grpo_data, tmp_path / "ours", weighting="none", **layout)
    ours.train()
    plain = make_trainer(tiny_grpo_model, tiny_grpo_data, tmp_path / "plain", plain=True, **layout)
    plain.train()

    for batch_inputs in ours.loss_inputs:
        unweighted = [ours.generations[g]["trl_advantages"][r].item()
                      for g, r in zip(batch_inputs["probe_generation"].tolist(), batch_inputs["probe_row"].tolist(),
                                      strict=True)]
        assert batch_inputs["advantages"].tolist() == pytest.approx(unweighted, abs=0)
        assert batch_inputs["difficulty_weights"].tolist() == [1.0] * len(unweighted)
    # same seed, same data: the same rollouts, rewards, advantages and losses as TRL's own trainer
    assert list(ours._logs["advantages"]) == list(plain._logs["advantages"])
    ours_log = [(h["loss"], h["reward"], h["kl"]) for h in ours.state.log_history if "loss" in h and "reward" in h]
    plain_log = [(h["loss"], h["reward"], h["kl"]) for h in plain.state.log_history if "loss" in h and "reward" in h]
    assert ours_log == plain_log and len(ours_log) == 2


def test_weighting_without_an_iou_reward_is_refused(tiny_grpo_model, tiny_grpo_data, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from trl import GRPOConfig

    from univg.train.examples import load_examples
    from univg.train.grpo_trainer import DifficultyWeightedGRPOTrainer

    args = GRPOConfig(output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4, report_to="none",
                      bf16=False, gradient_checkpointing=False)
    with pytest.raises(ValueError, match="needs the IoU reward 'iou_reward'"):
        DifficultyWeightedGRPOTrainer(
            model=AutoModelForImageTextToText.from_pretrained(tiny_grpo_model),
            processing_class=AutoProcessor.from_pretrained(tiny_grpo_model, padding_side="left"),
            reward_funcs=[functools.partial(format_reward, answer_format="indexed")], args=args,
            train_dataset=Dataset.from_list(load_examples(tiny_grpo_data, with_completion=False)),
        )


# ----------------------------------------------------------------------------- the stage
TINY_OVERRIDES = {
    "grpo.tiny-cpu.per_device_train_batch_size": 4, "grpo.tiny-cpu.num_generations": 4,
    "grpo.tiny-cpu.max_completion_length": 12, "grpo.tiny-cpu.save_steps": 1, "grpo.tiny-cpu.logging_steps": 1,
    "grpo.tiny-cpu.beta": 0.04, "grpo.tiny-cpu.sample_every_steps": 1, "grpo.tiny-cpu.max_pixels": 3136,
}


def test_train_grpo_logs_saves_and_resumes(tiny_grpo_model, tiny_grpo_data, tmp_path, mlflow_uri):
    import mlflow

    from univg.models.loading import load_model_and_processor
    from univg.train.grpo import train_grpo

    params = parse_params({}, TINY_OVERRIDES)
    out = tmp_path / "grpo"
    summary = train_grpo(params, tiny_grpo_data, str(tiny_grpo_model), out, max_steps=2)

    assert summary["global_step"] == 2 and summary["resumed_from"] is None
    assert summary["difficulty"]["generation_batches"] == 2
    assert summary["prompts_per_step"] == 1
    assert json.loads((out / "grpo_summary.json").read_text())["global_step"] == 2
    model, processor = load_model_and_processor(summary["final_dir"])
    assert model is not None and processor is not None
    assert summary["model_uri"]

    client = mlflow.MlflowClient()
    runs = mlflow.search_runs(experiment_names=["univg"], filter_string="tags.`univg.stage` = 'grpo'",
                              output_format="list")
    assert len(runs) == 1
    run = runs[0]
    for key in ("difficulty/weight_mean", "difficulty/easy_share", "rewards/iou_reward/mean",
                "rewards/format_reward/mean", "kl", "completions/mean_length"):
        assert len(client.get_metric_history(run.info.run_id, key)) == 2, key
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "grpo")}
    assert "grpo/difficulty_histogram.png" in artifacts and "grpo/group_mean_iou.json" in artifacts
    samples = client.list_artifacts(run.info.run_id, "grpo/samples")
    assert any(a.path.endswith(".png") for a in samples)

    # --- resume: one more step from checkpoint-2, history carried over
    again = train_grpo(params, tiny_grpo_data, str(tiny_grpo_model), out, max_steps=3)
    assert again["resumed_from"].endswith("checkpoint-2")
    assert again["global_step"] == 3 and again["steps_this_run"] == 1
    assert again["difficulty"]["generation_batches"] == 3


if __name__ == "__main__":
    import sys

    _multiprocess_main(*sys.argv[1:4])


def test_a_checkpoint_killed_before_its_history_resumes_with_a_warning(tmp_path, caplog):
    """Found by the SIGKILL test: a kill between trainer_state.json and difficulty_history.json left a
    half-written history that broke the resume. It is written atomically now, and a missing one is
    a warning (the history is a report; the training state is whole)."""
    from types import SimpleNamespace

    from univg.train.grpo_trainer import HISTORY_FILE, DifficultyWeightedGRPOTrainer

    trainer = SimpleNamespace(difficulty_history=[])
    with caplog.at_level("WARNING"):
        DifficultyWeightedGRPOTrainer.load_difficulty_history(trainer, tmp_path)
    assert trainer.difficulty_history == [] and HISTORY_FILE in caplog.text
    (tmp_path / HISTORY_FILE).write_text('[{"step": 1}]')
    DifficultyWeightedGRPOTrainer.load_difficulty_history(trainer, tmp_path)
    assert trainer.difficulty_history == [{"step": 1}]
