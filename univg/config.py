"""Typed configuration, loaded from params.yaml.

params.yaml is the single source of every knob that DVC tracks. Each section below is a pydantic
model with help text; unknown keys are errors (a typo must not silently do nothing), and values
are coerced when that is unambiguous (DVC's `-S lr=3e-5` writes the string '3e-05').
Training sections hold named profiles (`tiny-cpu`, `qwen2-vl-7b`) and a `profile` key that picks
one, so switching to the paper's GPU settings is a one-word change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from univg.answers import AnswerFormat
from univg.errors import UserError

TASKS: tuple[str, ...] = (
    "common_object",
    "correspondence",
    "diff",
    "group_grounding",
    "multi_view",
    "object_tracking",
    "reasoning",
    "refer_grounding",
    "region",
    "view_diff",
)

WeightingMode = Literal["exp", "power", "log", "none"]
ChainStyle = Literal["scan", "keyed", "brief"]
PretrainImageTask = Literal["describe", "describe_all", "ground", "name"]  # univg.models.univg_tiny
RecallTask = Literal["ar", "lookup"]  # univg.models.recall


class ConfigError(UserError, ValueError):
    """A params file or override that cannot be turned into a valid config."""


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, validate_assignment=True)


class DataConfig(Section):
    source: Literal["synth", "univg-r1", "mig-bench", "reasoning-grounding"] = Field(
        "synth", description="Where the data stage gets records: generate mig-synth, or import a file with that "
        "loader (univg-r1 also reads MGrounding-630k conversations; see docs/real-models.md).",
    )
    import_path: str = Field("", description="File to import when source is not 'synth'.")
    image_root: str = Field("", description="Image folder for imported files (default: the file's folder).")
    path_map: dict[str, str] = Field(
        {}, description="Image path prefixes to rewrite on import, old -> new (release files name absolute "
        "folders of their authors' machines, e.g. '/path/to/MGrounding-630k/': 'MGrounding-630k/').",
    )
    allow_outside_root: bool = Field(
        False, description="Read images outside the data root (absolute paths, ../, symlinks leaving it). "
        "Off: such rows are quarantined or refused, at import, validation, training and evaluation.",
    )
    out_dir: str = Field("data/mig-synth", description="Folder the data stage writes splits and images to.")
    seed: int = Field(0, description="Base seed; train/val/test use disjoint seed streams derived from it.")
    tasks: list[str] = Field(list(TASKS), description="Which mig-synth tasks to generate.")
    train_per_task: int = Field(400, ge=1, description="Training samples per task.")
    val_per_task: int = Field(10, ge=0, description="Validation samples per task.")
    test_per_task: int = Field(50, ge=1, description="Test samples per task.")
    image_size: int = Field(112, ge=56, le=1024, description="Side of each square image in pixels (multiple of 28).")
    max_images: int = Field(4, ge=2, le=6, description="Upper bound on images per sample.")
    clutter: float = Field(0.0, ge=0.0, le=1.0, description="Share of background clutter (difficulty knob).")
    distractors: int = Field(2, ge=0, le=6, description="Extra objects per image besides the ones a task needs.")
    position_cue: float = Field(
        1.0, ge=0.0, le=2.0,
        description="Strength of a faint background gradient that encodes position (0: plain grey). "
        "Qwen2-VL's vision tower has only relative positions; a tiny model trained from scratch needs this cue.",
    )

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, tasks: list[str]) -> list[str]:
        unknown = sorted(set(tasks) - set(TASKS))
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; choose from {list(TASKS)}")
        return tasks

    @field_validator("image_size")
    @classmethod
    def _multiple_of_28(cls, size: int) -> int:
        if size % 28:
            raise ValueError(f"{size} is not a multiple of 28 (Qwen2-VL patch 14 x merge 2)")
        return size


class ModelConfig(Section):
    base: str = Field(
        "scratch",
        description="'univg-tiny': the pretrained tiny Qwen2-VL shipped in checkpoints/ (built by `univg model pretrain`); "
        "'scratch': build a tiny Qwen2-VL here (tokenizer, init, perception pre-training); otherwise a local "
        "path, a hub id or an MLflow models:/ URI.",
    )
    out_dir: str = Field("models/base", description="Where the base_model stage saves the checkpoint folder.")
    family: Literal["auto", "qwen2_vl", "qwen2_5_vl", "qwen3_vl"] = Field(
        "auto",
        description="How the model writes boxes (univg.models.family): 'auto' reads the checkpoint's model_type; "
        "qwen2_vl and qwen3_vl 0..1000, qwen2_5_vl pixels of the resized image. For 'scratch', the family built.",
    )
    vocab_size: int = Field(1024, ge=300, description="Tiny model (scratch, univg-tiny's recipe): BPE vocabulary size (before special tokens).")
    hidden_size: int = Field(128, ge=16, description="Tiny model: text hidden size.")
    num_layers: int = Field(4, ge=1, description="Tiny model: text decoder layers.")
    num_heads: int = Field(4, ge=1, description="Tiny model: attention heads (head_dim = hidden/heads).")
    num_kv_heads: int = Field(2, ge=1, description="Tiny model: key/value heads.")
    intermediate_size: int = Field(384, ge=16, description="Tiny model: MLP width.")
    vision_depth: int = Field(2, ge=1, description="Tiny model: vision transformer blocks.")
    vision_embed_dim: int = Field(96, ge=16, description="Tiny model: vision embedding size.")
    vision_heads: int = Field(4, ge=1, description="Tiny model: vision attention heads.")
    min_pixels: int = Field(56 * 56, ge=28 * 28, description="Processor: smallest image area after resizing.")
    max_pixels: int = Field(224 * 224, ge=28 * 28, description="Processor: largest image area after resizing.")
    seed: int = Field(0, description="Seed for the tiny model's initial weights.")
    pixel_mean: float = Field(0.894, gt=0, lt=1, description="Tiny model processor: normalisation mean (the synthetic background grey).")
    pixel_std: float = Field(0.25, gt=0, description="Tiny model processor: normalisation std.")
    seeing_init: bool = Field(
        True, description="Tiny model: start the patch embedding with colour-layout filters."
    )
    pretrain_steps: int = Field(
        400, ge=0, description="Tiny model: perception pre-training steps on freshly drawn scenes (0: none; see univg.models.pretrain)."
    )
    pretrain_batch_size: int = Field(32, ge=1, description="Tiny model: perception pre-training batch size.")
    pretrain_learning_rate: float = Field(1e-3, gt=0, description="Tiny model: perception pre-training peak learning rate.")


class PretrainConfig(Section):
    """The univg-tiny recipe (univg.models.univg_tiny); its own DVC pipeline, pretrain/dvc.yaml."""

    out_dir: str = Field("checkpoints/univg-tiny", description="Where the pretrained checkpoint and its card are written.")
    seed: int = Field(0, description="Seed of the init, the tokenizer corpus and the pre-training streams.")
    steps: int = Field(3500, ge=1, description="Optimizer steps; each sees one image batch and one text batch.")
    image_batch_size: int = Field(8, ge=1, description="Image examples per step (perception and grounding).")
    text_batch_size: int = Field(48, ge=1, description="Recall texts per step.")
    learning_rate: float = Field(1e-3, gt=0, description="Peak AdamW learning rate (cosine down to 10%).")
    warmup_ratio: float = Field(0.02, ge=0, le=1, description="Share of steps spent warming up.")
    image_mix: dict[PretrainImageTask, float] = Field(
        {"describe": 0.3, "describe_all": 0.15, "ground": 0.4, "name": 0.15},
        description="Shares of the image tasks: describe one image, describe each image, ground a named object, "
        "name the object in a cell.",
    )
    text_mix: dict[RecallTask, float] = Field(
        {"ar": 0.85, "lookup": 0.15},
        description="Shares of the recall texts: associative recall, scan lookup (a lookup text is ~10x longer).",
    )
    text_loss_weight: float = Field(1.0, ge=0, description="Weight of the recall loss beside the image loss.")
    log_every: int = Field(50, ge=1, description="Steps between logged running losses.")
    eval_every: int = Field(500, ge=1, description="Steps between held-out recall measurements.")
    gate_examples: int = Field(200, ge=10, description="Held-out examples per image gate (perception, grounding).")
    threads: int = Field(0, ge=0, description="torch CPU threads (0: torch's default).")


class OpenAITeacherConfig(Section):
    base_url: str = Field("http://127.0.0.1:8000/v1", description="OpenAI-compatible endpoint (vLLM, hosted Qwen-VL, OpenAI).")
    model: str = Field("qwen-vl-max", description="Model name sent with each request.")
    judge_model: str = Field("", description="Model that picks the best candidate; empty: pick by rule score.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the API key (never logged).")
    max_concurrency: int = Field(4, ge=1, description="Requests in flight at once.")
    max_retries: int = Field(5, ge=0, description="Retries on 429/5xx/timeouts, with exponential backoff.")
    timeout_s: float = Field(60.0, gt=0, description="Per-request timeout in seconds.")
    temperature: float = Field(0.7, ge=0, description="Sampling temperature for candidate chains.")
    price_per_1k_prompt_tokens: float = Field(0.0, ge=0, description="For the cost tally.")
    price_per_1k_completion_tokens: float = Field(0.0, ge=0, description="For the cost tally.")
    max_tokens: int = Field(512, ge=16, description="Completion token budget per candidate chain.")
    backoff_s: float = Field(1.0, ge=0, description="First retry delay in seconds; doubles each retry (Retry-After wins).")


class CotConfig(Section):
    teacher: Literal["rule", "openai"] = Field("rule", description="Which teacher writes the chains.")
    num_candidates: int = Field(3, ge=1, description="Chains generated per record; the best is kept.")
    chain_style: ChainStyle = Field(
        "scan",
        description="Rule teacher: 'scan' reads every image out cell by cell before reasoning; 'keyed' is 'scan' with fixed-wording "
        "steps down to a key object ('We look for the red circle in image 2.'); 'brief' gives only the decisive observations.",
    )
    answer_format: AnswerFormat = Field("indexed", description="Answer format of the SFT targets.")
    out_dir: str = Field("data/cot", description="Where generated chains are written.")
    openai: OpenAITeacherConfig = Field(default_factory=OpenAITeacherConfig)
    seed: int = Field(0, description="Seed for the rule teacher's wording.")
    cache_dir: str = Field(
        ".cache/cot",
        description="Resumable cache of finished teacher rows (kept outside DVC outputs, which DVC deletes before a rerun).",
    )


class ValidateConfig(Section):
    out_dir: str = Field("data/validated", description="Where accepted/rejected/report are written.")
    min_chain_chars: int = Field(20, ge=0, description="Shortest acceptable chain.")
    max_chain_chars: int = Field(2000, ge=1, description="Longest acceptable chain.")
    max_images: int = Field(8, ge=1, description="Most images a record may have.")
    answer_iou_threshold: float = Field(
        0.9, ge=0, le=1, description="Min IoU of a chain's own answer box with the ground truth."
    )
    min_accept_fraction: float = Field(0.8, ge=0, le=1, description="Stage fails below this accepted share.")


class TrainProfile(Section):
    """Settings shared by SFT and GRPO profiles."""

    learning_rate: float = Field(gt=0, description="Peak learning rate.")
    lr_scheduler_type: str = Field("cosine", description="transformers scheduler name.")
    warmup_ratio: float = Field(0.0, ge=0, le=1, description="Share of steps spent warming up.")
    num_train_epochs: float = Field(1.0, gt=0, description="Epochs over the training data.")
    max_steps: int = Field(-1, description="Stop after this many optimizer steps (-1: use epochs).")
    per_device_train_batch_size: int = Field(8, ge=1, description="Batch per device.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    use_lora: bool = Field(False, description="Train LoRA adapters instead of all weights.")
    lora_r: int = Field(16, ge=1, description="LoRA rank.")
    lora_alpha: int = Field(32, ge=1, description="LoRA alpha.")
    lora_dropout: float = Field(0.05, ge=0, le=1, description="LoRA dropout.")
    freeze_vision: bool = Field(True, description="Keep the vision tower frozen.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory.")
    bf16: bool | Literal["auto"] = Field("auto", description="bf16 where the hardware supports it.")
    max_pixels: int = Field(401408, ge=784, description="Largest image area fed to the model.")
    save_steps: int = Field(50, ge=1, description="Checkpoint interval in optimizer steps.")
    logging_steps: int = Field(5, ge=1, description="Metrics logging interval.")
    deepspeed: str = Field("", description="DeepSpeed config file (GPU profiles).")
    seed: int = Field(0, description="Training seed.")


class SFTProfile(TrainProfile):
    max_length: int = Field(6000, ge=16, description="Token cutoff per sample (longer samples are dropped, not cut).")
    sample_every_steps: int = Field(0, ge=0, description="Log sample generations every N steps (0: off).")
    group_by_length: bool = Field(
        False, description="Batch samples of similar token length together (transformers' LengthGroupedSampler, "
        "over the lengths already computed for max_length): less padding, so faster (tiny-cpu: 1.28x samples/s), "
        "but where length follows the task, as on mig-synth, each batch holds one or two tasks and learning "
        "suffers (tiny-cpu SFT Acc@0.5 0.122 vs 0.238; docs/performance.md). Off by default.",
    )


class GRPOProfile(TrainProfile):
    num_generations: int = Field(8, ge=2, description="Group size G: completions per prompt.")
    beta: float = Field(0.04, ge=0, description="KL coefficient against the frozen reference.")
    epsilon: float = Field(0.2, gt=0, description="PPO-style clip range.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    max_completion_length: int = Field(256, ge=8, description="Max new tokens per completion.")
    loss_type: str = Field("grpo", description="TRL loss type; 'grpo' averages per sequence, then over the batch.")
    scale_rewards: str = Field("group", description="TRL reward scaling: 'group' divides by the group std.")
    rewards: dict[str, float] = Field(
        {"iou": 1.0, "format": 1.0},
        description="Reward functions by name (univg.rewards.REWARD_FUNCTIONS: iou, format, image_index) and their "
        "weights in the sum; the paper: IoU + format, equal weights.",
    )
    weighting: WeightingMode = Field("exp", description="Difficulty-aware weighting mode ('none' = plain GRPO).")
    weighting_k: float = Field(1.0, gt=0, description="Exponent k of the 'power' mode.")
    use_vllm: bool = Field(False, description="Generate rollouts with vLLM (GPU only; docs/scaling.md).")
    vllm_mode: Literal["colocate", "server"] = Field(
        "colocate", description="'colocate': vLLM inside each training process, sharing its GPU; 'server': a "
        "`trl vllm-serve` process on GPUs of its own, reached at vllm_server_host:vllm_server_port.",
    )
    vllm_gpu_memory_utilization: float = Field(0.3, gt=0, le=1, description="vLLM memory share in colocate mode.")
    vllm_tensor_parallel_size: int = Field(1, ge=1, description="Colocate mode: GPUs each vLLM engine spans.")
    vllm_server_host: str = Field("127.0.0.1", description="Server mode: host of `trl vllm-serve`.")
    vllm_server_port: int = Field(8000, ge=1, le=65535, description="Server mode: port of `trl vllm-serve`.")
    vllm_server_timeout: float = Field(240.0, gt=0, description="Server mode: seconds to wait for the server at start.")
    sample_every_steps: int = Field(0, ge=0, description="Log sample completions every N steps (0: off).")


def _tiny_sft() -> SFTProfile:
    return SFTProfile(
        learning_rate=1e-3, lr_scheduler_type="cosine", warmup_ratio=0.05, num_train_epochs=3,
        per_device_train_batch_size=16, freeze_vision=False, max_length=1024, max_pixels=224 * 224,
        save_steps=100, logging_steps=10, sample_every_steps=0,
    )


def _paper_sft() -> SFTProfile:
    # UniVG-R1 cold start: lr 5e-6 cosine, warmup 0.015, 1 epoch, global batch 24 (8 GPUs x 3),
    # cutoff 6000 tokens, max pixels 401408, vision tower frozen, full fine-tune, ZeRO-3.
    return SFTProfile(
        learning_rate=5e-6, lr_scheduler_type="cosine", warmup_ratio=0.015, num_train_epochs=1,
        per_device_train_batch_size=3, gradient_accumulation_steps=1, freeze_vision=True,
        gradient_checkpointing=True, bf16=True, max_length=6000, max_pixels=401408, save_steps=500,
        logging_steps=10, deepspeed="infra/accelerate/zero3.json",
    )


def _tiny_grpo() -> GRPOProfile:
    return GRPOProfile(
        learning_rate=2e-5, lr_scheduler_type="constant", num_train_epochs=1, max_steps=60,
        per_device_train_batch_size=32, num_generations=8, beta=0.0, temperature=1.0,
        max_completion_length=320, freeze_vision=False, max_pixels=224 * 224, save_steps=25,
        logging_steps=2,
    )


def _paper_grpo() -> GRPOProfile:
    # UniVG-R1 RL: G=8, 16 prompts/step (8 GPUs x 2 prompts x 8 completions = 128 completions),
    # lr 1e-6 linear, beta 0.04, epsilon 0.2, temperature 1.0, 256 new tokens, 1 epoch.
    return GRPOProfile(
        learning_rate=1e-6, lr_scheduler_type="linear", num_train_epochs=1,
        per_device_train_batch_size=16, gradient_accumulation_steps=1, num_generations=8,
        beta=0.04, epsilon=0.2, temperature=1.0, max_completion_length=256, freeze_vision=True,
        gradient_checkpointing=True, bf16=True, max_pixels=401408, save_steps=100,
        deepspeed="infra/accelerate/zero3.json",
    )


# The GPU profiles: the paper's settings (UniVG-R1 on Qwen2-VL-7B) carried to the newer bases. Only the
# image budget differs: each keeps the paper's 512 visual tokens per image at its own patch grid
# (28 px for Qwen2-VL and Qwen2.5-VL, 32 px for Qwen3-VL).
QWEN3_MAX_PIXELS = 512 * 32 * 32
GPU_PROFILES = ("qwen2-vl-7b", "qwen25-vl-7b", "qwen3-vl-8b")
ProfileName = Literal["tiny-cpu", "qwen2-vl-7b", "qwen25-vl-7b", "qwen3-vl-8b"]


class _Profiles(Section):
    profile: ProfileName = Field(
        "tiny-cpu", description="Which profile below is used: tiny-cpu (the offline CPU default), or the paper's "
        "settings for a GPU base (qwen2-vl-7b, qwen25-vl-7b, qwen3-vl-8b; see docs/real-models.md).",
    )

    @property
    def active(self) -> Any:
        return getattr(self, self.profile.replace("-", "_"))


class SFTConfig(_Profiles):
    out_dir: str = Field("models/sft", description="Checkpoint folder of the SFT stage.")
    allow_generic_cot: bool = Field(
        False, description="Train on the rule teacher's content-free chains (meta.cot.scene = false: imported "
        "rows with no scene get 'the answer is in image k'). Off: SFT refuses them; use a real teacher "
        "(cot.teacher=openai) or the release's own chains.",
    )
    resume: Literal["auto", "never"] = Field("auto", description="'auto' continues from the newest checkpoint.")
    tiny_cpu: SFTProfile = Field(default_factory=_tiny_sft, alias="tiny-cpu")
    qwen2_vl_7b: SFTProfile = Field(default_factory=_paper_sft, alias="qwen2-vl-7b")
    qwen25_vl_7b: SFTProfile = Field(default_factory=_paper_sft, alias="qwen25-vl-7b")
    qwen3_vl_8b: SFTProfile = Field(
        default_factory=lambda: _paper_sft().model_copy(update={"max_pixels": QWEN3_MAX_PIXELS}), alias="qwen3-vl-8b")


class GRPOConfig(_Profiles):
    init: Literal["sft", "base"] = Field("sft", description="Start from the SFT checkpoint or the base model.")
    out_dir: str = Field("models/grpo", description="Checkpoint folder of the GRPO stage.")
    resume: Literal["auto", "never"] = Field("auto", description="'auto' continues from the newest checkpoint.")
    tiny_cpu: GRPOProfile = Field(default_factory=_tiny_grpo, alias="tiny-cpu")
    qwen2_vl_7b: GRPOProfile = Field(default_factory=_paper_grpo, alias="qwen2-vl-7b")
    qwen25_vl_7b: GRPOProfile = Field(default_factory=_paper_grpo, alias="qwen25-vl-7b")
    qwen3_vl_8b: GRPOProfile = Field(
        default_factory=lambda: _paper_grpo().model_copy(update={"max_pixels": QWEN3_MAX_PIXELS}), alias="qwen3-vl-8b")


class EvalConfig(Section):
    benchmark: str = Field("mig-synth", description="Benchmark loader name for the pipeline's eval stage.")
    models: list[str] = Field(["base", "sft", "grpo"], description="Which pipeline models the eval stage scores.")
    batch_size: int = Field(
        32, ge=1, description="Prompts per generation batch. Larger is faster on CPU (tiny model: 32 is 1.15x and 64 "
        "1.36x the speed of 16, benchmarks/eval_speed.py); a batch that fails, out of memory included, is retried "
        "one sample at a time.",
    )
    max_new_tokens: int = Field(320, ge=8, description="Generation budget per answer.")
    n_bootstrap: int = Field(1000, ge=100, description="Bootstrap resamples for the 95% intervals.")
    report_samples: int = Field(24, ge=0, description="Samples drawn in the HTML report.")
    out_dir: str = Field("eval", description="Per-model predictions, metrics and reports.")
    metrics_file: str = Field("metrics/eval.json", description="The pipeline's metrics file (contract).")
    seed: int = Field(0, description="Bootstrap seed.")
    answer_format: Literal["auto"] | AnswerFormat = Field(
        "auto", description="Prompt/scoring answer format; 'auto': the format the model was trained on (its "
        "univg_train.json), else the benchmark's default (mig-synth: indexed).",
    )
    limit: int = Field(0, ge=0, description="Evaluate only the first N rows of the annotations (0: all).")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="Where the model runs: 'auto' is CUDA (bf16) when present, else CPU. Under "
        "`accelerate launch` each process takes its own GPU and a slice of the benchmark.",
    )
    compare_file: str = Field("metrics/compare.json", description="Paired bootstrap comparisons sft-base, grpo-sft.")
    plots_file: str = Field("plots/eval_per_task.csv", description="dvc plots data: model, task, acc@0.5.")


class GateConfig(Section):
    benchmark: str = Field("mig-synth", description="Benchmark whose Acc@0.5 decides promotion.")
    min_delta: float = Field(0.0, ge=0, description="Acc@0.5 gain over the champion needed to promote.")
    confidence: float = Field(0.95, gt=0, lt=1, description="Paired-bootstrap interval level; it must exclude 0.")
    model_name: str = Field("univg", description="Registered model name in MLflow.")


class TrackingConfig(Section):
    uri: str = Field("", description="MLflow tracking URI; empty: sqlite mlruns.db in the repo. MLFLOW_TRACKING_URI wins.")
    experiment: str = Field("univg", description="MLflow experiment every stage logs to.")


class FanoutConfig(Section):
    """Fan-out of evaluation and CoT generation shards on Ray (flows/fanout.py, docs/scaling.md)."""

    ray_address: str = Field(
        "", description="Ray cluster to run shards on: 'ray://head:10001', or 'auto' on a cluster node; "
        "empty: start a local Ray on this machine.",
    )
    shards: int = Field(2, ge=1, description="How many shards (Prefect tasks on Ray) the work is split into.")
    cpus_per_shard: float = Field(1.0, gt=0, description="CPUs Ray reserves for each shard.")
    gpus_per_shard: float = Field(0.0, ge=0, description="GPUs Ray reserves for each shard (evaluation on GPUs: 1).")


class Params(Section):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    cot: CotConfig = Field(default_factory=CotConfig)
    validate_: ValidateConfig = Field(default_factory=ValidateConfig, alias="validate")
    sft: SFTConfig = Field(default_factory=SFTConfig)
    grpo: GRPOConfig = Field(default_factory=GRPOConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    gate: GateConfig = Field(default_factory=GateConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    fanout: FanoutConfig = Field(default_factory=FanoutConfig)


def _describe(error: ValidationError, raw: dict[str, Any]) -> str:
    lines = []
    for err in error.errors():
        key = ".".join(str(p) for p in err["loc"])
        value = raw
        for part in err["loc"]:
            value = value.get(part, "<missing>") if isinstance(value, dict) else "<n/a>"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown key '{key}'")
        else:
            lines.append(f"'{key}' = {value!r}: {err['msg']}")
    return "; ".join(lines)


def set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b.c` in a nested mapping, creating missing sections (`-S` overrides, params edits)."""
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{dotted}': '{part}' is not a section")
    node[parts[-1]] = value


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def parse_params(raw: dict[str, Any], overrides: dict[str, Any] | None = None, source: str = "params") -> Params:
    """Validate a params tree (plus dotted overrides like {'grpo.tiny-cpu.beta': 0.04}).

    A partial tree is laid over the defaults, so `{'sft': {'tiny-cpu': {'learning_rate': 1e-3}}}`
    changes one knob of one profile and keeps the rest of it.
    """
    raw = _deep_merge(Params().model_dump(by_alias=True, mode="json"), raw or {})
    for dotted, value in (overrides or {}).items():
        set_dotted(raw, dotted, yaml.safe_load(value) if isinstance(value, str) else value)
    try:
        return Params.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"{source}: {_describe(error, raw)}") from None


def load_params(path: str | Path = "params.yaml", overrides: dict[str, Any] | None = None) -> Params:
    """Read params.yaml into typed config; a missing file gives the defaults."""
    path = Path(path)
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {error}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return parse_params(raw, overrides, source=str(path))


def dump_params(params: Params) -> str:
    """The params tree as YAML, with the aliases users write (tiny-cpu, validate)."""
    return yaml.safe_dump(params.model_dump(by_alias=True, mode="json"), sort_keys=False)
