"""A params override that makes the whole real pipeline run in about a minute on 2 cores."""

TINY_OVERRIDES = {
    "data.train_per_task": 2,
    "data.val_per_task": 0,
    "data.test_per_task": 1,
    "model.hidden_size": 32,
    "model.num_layers": 1,
    "model.num_heads": 2,
    "model.num_kv_heads": 1,
    "model.intermediate_size": 64,
    "model.vision_depth": 1,
    "model.vision_embed_dim": 32,
    "model.vision_heads": 2,
    "model.vocab_size": 300,
    "model.pretrain_steps": 2,  # the real pre-training path, kept short
    "model.pretrain_batch_size": 2,
    "sft.tiny-cpu.max_steps": 2,
    "sft.tiny-cpu.per_device_train_batch_size": 4,
    "sft.tiny-cpu.save_steps": 1,
    "grpo.tiny-cpu.max_steps": 1,
    "grpo.tiny-cpu.per_device_train_batch_size": 4,
    "grpo.tiny-cpu.num_generations": 2,
    "grpo.tiny-cpu.max_completion_length": 16,
    "eval.batch_size": 10,
    "eval.max_new_tokens": 24,
    "eval.n_bootstrap": 100,
    "eval.report_samples": 2,
    "validate.min_accept_fraction": 0.5,
}


def write_tiny_params(repo) -> None:
    """Rewrite repo/params.yaml with the tiny overrides laid over it."""
    import yaml

    from univg.config import dump_params, load_params

    params = load_params(repo / "params.yaml", TINY_OVERRIDES)
    (repo / "params.yaml").write_text(dump_params(params))
    yaml.safe_load((repo / "params.yaml").read_text())  # still valid YAML
