"""The one loader: local folders, LoRA adapter folders, offline hub ids, MLflow runs:/ and models:/ URIs."""

from __future__ import annotations

import json
import shutil

import mlflow
import pytest
import torch

from univg.models.loading import (
    ModelNotAvailable,
    find_checkpoint_folder,
    load_model_and_processor,
    resolve_model_path,
)
from univg.prompts import user_message


@pytest.fixture(scope="module")
def probe(tiny, request):
    """A fixed text+image batch to compare models by their logits."""
    from PIL import Image

    _, processor = tiny
    text = processor.apply_chat_template([user_message(1, "Where?")], tokenize=False, add_generation_prompt=True)
    return processor(text=[text], images=[Image.new("RGB", (112, 112), (10, 200, 10))], return_tensors="pt")


def logits(model, batch):
    with torch.no_grad():
        return model(**batch).logits


@pytest.fixture(scope="module")
def adapter_layout(tiny_dir, tmp_path_factory):
    """base/ (a copy of the tiny model) and adapter/ (random LoRA weights) whose config names ../base."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    root = tmp_path_factory.mktemp("adapter")
    shutil.copytree(tiny_dir, root / "base")
    base = AutoModelForImageTextToText.from_pretrained(root / "base")
    torch.manual_seed(0)
    # init_lora_weights=False: B is random too, so the adapter really changes the outputs.
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(base, config)
    peft_model.save_pretrained(root / "adapter")
    adapter_config = root / "adapter" / "adapter_config.json"
    data = json.loads(adapter_config.read_text())
    data["base_model_name_or_path"] = "../base"  # relative: resolved against the adapter folder
    adapter_config.write_text(json.dumps(data))
    return root, peft_model.eval()


def test_local_folder_loads_in_eval_mode_with_left_padding(tiny_dir):
    model, processor = load_model_and_processor(tiny_dir, padding_side="right")
    assert processor.tokenizer.padding_side == "right"
    assert not model.training
    assert next(model.parameters()).dtype == torch.float32


def test_dtype_and_trainable_are_honoured(tiny_dir):
    model, _ = load_model_and_processor(tiny_dir, dtype="bfloat16", trainable=True)
    assert next(model.parameters()).dtype == torch.bfloat16
    assert model.training
    with pytest.raises(ValueError, match="unknown dtype"):
        load_model_and_processor(tiny_dir, dtype="float7")


def test_max_pixels_caps_the_processor(tiny_dir):
    _, processor = load_model_and_processor(tiny_dir, max_pixels=56 * 56)
    from PIL import Image

    out = processor.image_processor(images=[Image.new("RGB", (112, 112))], return_tensors="pt")
    assert out["image_grid_thw"].tolist() == [[1, 4, 4]]  # 56x56 -> 4x4 patches


def test_adapter_folder_is_merged_for_inference(adapter_layout, probe, tiny):
    root, peft_model = adapter_layout
    merged, processor = load_model_and_processor(root / "adapter")
    assert type(merged).__name__ == "Qwen2VLForConditionalGeneration"  # merged, not a PeftModel
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert torch.allclose(logits(merged, probe), logits(peft_model, probe), atol=1e-4)
    assert not torch.allclose(logits(merged, probe), logits(tiny[0], probe), atol=1e-3)
    assert processor.tokenizer.padding_side == "left"


def test_adapter_folder_stays_trainable_when_asked(adapter_layout, probe):
    from peft import PeftModel

    root, peft_model = adapter_layout
    model, _ = load_model_and_processor(root / "adapter", trainable=True)
    assert isinstance(model, PeftModel)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name for name in trainable)
    model.eval()
    assert torch.allclose(logits(model, probe), logits(peft_model, probe), atol=1e-4)


def test_unknown_hub_id_offline_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fake = "univg-test/definitely-not-a-model-42"
    with pytest.raises(ModelNotAvailable) as raised:
        load_model_and_processor(fake)
    message = str(raised.value)
    assert fake in message and "HF_HUB_OFFLINE" in message and "hf download" in message
    assert "\n" not in message
    assert raised.value.__cause__ is None  # no chained traceback from deep inside huggingface_hub
    with pytest.raises(ModelNotAvailable, match="not available offline"):
        resolve_model_path(fake)


def test_missing_local_folder_names_it(tmp_path):
    with pytest.raises(ModelNotAvailable, match="checkpoint folder not found"):
        load_model_and_processor(tmp_path / "nope" / "deeper" / "sft")
    with pytest.raises(ModelNotAvailable, match="base-model stage"):
        resolve_model_path("scratch")


def test_checkpoint_search_finds_the_shallowest_and_refuses_ambiguity(tmp_path):
    (tmp_path / "a" / "artifacts" / "checkpoint").mkdir(parents=True)
    (tmp_path / "a" / "artifacts" / "checkpoint" / "config.json").write_text("{}")
    (tmp_path / "a" / "artifacts" / "checkpoint" / "checkpoint-5").mkdir()
    (tmp_path / "a" / "artifacts" / "checkpoint" / "checkpoint-5" / "config.json").write_text("{}")
    assert find_checkpoint_folder(tmp_path / "a") == tmp_path / "a" / "artifacts" / "checkpoint"
    for step in (1, 2):
        (tmp_path / "b" / f"checkpoint-{step}").mkdir(parents=True)
        (tmp_path / "b" / f"checkpoint-{step}" / "adapter_config.json").write_text("{}")
    with pytest.raises(ModelNotAvailable, match="several checkpoints"):
        find_checkpoint_folder(tmp_path / "b")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotAvailable, match="no checkpoint"):
        find_checkpoint_folder(tmp_path / "empty")


class CheckpointModel(mlflow.pyfunc.PythonModel):
    """Stands in for the registry's pyfunc wrapper: only its artifacts matter to the loader."""

    def predict(self, context, model_input, params=None):
        return model_input


def _register(checkpoint, experiment_id, name):
    """Log a pyfunc holding `checkpoint` as its "checkpoint" artifact, registered as `name`."""
    with mlflow.start_run(experiment_id=experiment_id):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=CheckpointModel(), artifacts={"checkpoint": str(checkpoint)},
            pip_requirements=["transformers"], registered_model_name=name,
        )
    return info.registered_model_version


def _fresh_store(uri, root):
    mlflow.set_tracking_uri(uri)
    return mlflow.create_experiment("loader-test", artifact_location=(root / "artifacts").as_uri())


def test_mlflow_run_uri_loads(mlflow_uri, tiny_dir, tmp_path, probe, tiny):
    experiment = _fresh_store(mlflow_uri, tmp_path)
    with mlflow.start_run(experiment_id=experiment) as run:
        mlflow.log_artifacts(str(tiny_dir), artifact_path="model/artifacts/checkpoint")
    cache = tmp_path / "cache"

    model, processor = load_model_and_processor(f"runs:/{run.info.run_id}/model", cache_dir=cache)
    assert torch.allclose(logits(model, probe), logits(tiny[0], probe))
    assert processor.tokenizer.padding_side == "left"
    assert resolve_model_path(f"runs:/{run.info.run_id}/model", cache_dir=cache).name == "checkpoint"
    with pytest.raises(ModelNotAvailable, match="cannot download runs:/0123"):
        load_model_and_processor("runs:/0123456789abcdef0123456789abcdef/model", cache_dir=cache)


def test_mlflow_registry_alias_loads_and_never_serves_a_stale_copy(
    mlflow_uri, tiny_dir, tmp_path, probe, tiny, test_model_config, corpus_factory
):
    from univg.models.tiny import build_tiny_model

    cache = tmp_path / "cache"
    experiment = _fresh_store(mlflow_uri, tmp_path / "one")
    version = _register(tiny_dir, experiment, "univg-loader-test")
    mlflow.MlflowClient().set_registered_model_alias("univg-loader-test", "champion", version)
    model, _ = load_model_and_processor("models:/univg-loader-test@champion", cache_dir=cache)
    assert torch.allclose(logits(model, probe), logits(tiny[0], probe))
    found = resolve_model_path(f"models:/univg-loader-test/{version}", cache_dir=cache)
    assert (found / "config.json").is_file() and found.parent.name == "artifacts"
    with pytest.raises(ModelNotAvailable, match="alias 'nobody'"):
        load_model_and_processor("models:/univg-loader-test@nobody", cache_dir=cache)

    # A store rebuilt from scratch reuses "version 1" for another model: the cache must not answer.
    other = tmp_path / "other-seed"
    build_tiny_model(test_model_config.model_copy(update={"seed": 1}), corpus_factory(), other)
    experiment = _fresh_store(f"sqlite:///{tmp_path / 'rebuilt.db'}", tmp_path / "two")
    assert _register(other, experiment, "univg-loader-test") == version
    reloaded, _ = load_model_and_processor(f"models:/univg-loader-test/{version}", cache_dir=cache)
    expected, _ = load_model_and_processor(other)
    assert torch.allclose(logits(reloaded, probe), logits(expected, probe))
    assert not torch.allclose(logits(reloaded, probe), logits(tiny[0], probe))


def test_trained_answer_format_is_read_from_the_checkpoint(tmp_path):
    from univg.models.loading import TRAIN_INFO_FILE, trained_answer_format

    folder = tmp_path / "final"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert trained_answer_format(folder) is None  # a base model records no format
    (folder / TRAIN_INFO_FILE).write_text(json.dumps({"stage": "grpo", "answer_format": "univg-r1"}))
    assert trained_answer_format(folder) == "univg-r1"
    assert trained_answer_format(tmp_path / "missing") is None
