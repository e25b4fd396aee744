"""Registration and the champion alias on a real (sqlite) MLflow store: first model vs base,
idempotency, gating against the champion, benchmark mismatch, rollback, and model logging."""

from __future__ import annotations

import json

import mlflow
import pytest
from registry_helpers import write_checkpoint, write_per_sample

from univg import registry
from univg.registry import PromotionError, promote, promote_pipeline, rollback
from univg.tracking import FINGERPRINT_TAG, checkpoint_fingerprint, log_model_checkpoint, stage_run


def _promote(params, tmp_path, tag: str, hit_share: float, seed: int = 1, prefix: str = "r"):
    """Gate a new checkpoint `tag` whose per-sample hit share is `hit_share` (base: 0.2)."""
    return promote(
        params,
        candidate_per_sample=write_per_sample(tmp_path / f"eval-{tag}" / "per_sample.jsonl", hit_share, seed=seed,
                                              prefix=prefix),
        reference_per_sample=write_per_sample(tmp_path / "eval-base" / "per_sample.jsonl", 0.2, seed=99),
        checkpoint_dir=write_checkpoint(tmp_path / f"ckpt-{tag}", tag),
        out=tmp_path / "metrics" / "promotion.json",
    )


def _state(client):
    versions = sorted((v.version, tuple(sorted(v.tags.items())), tuple(sorted(v.aliases)))
                      for v in client.search_model_versions("name='univg'"))
    return versions


def test_first_model_is_gated_against_base_and_a_rerun_changes_nothing(params, tmp_path, client):
    first = _promote(params, tmp_path, "v1", 0.6)
    assert first["changed"] and first["promoted"] and first["decision"]["reference"] == "base"
    assert client.get_model_version_by_alias("univg", "champion").version == 1
    assert client.get_model_version_by_alias("univg", "challenger").version == 1
    written = (tmp_path / "metrics" / "promotion.json").read_text()
    before = _state(client)

    again = _promote(params, tmp_path, "v1", 0.6)
    assert not again["changed"]
    assert _state(client) == before
    assert (tmp_path / "metrics" / "promotion.json").read_text() == written


def test_version_carries_lineage_metrics_and_its_per_sample_record(params, tmp_path, client):
    metrics_file = tmp_path / "eval.json"
    metrics_file.write_text(json.dumps({"grpo": {"acc@0.5": 0.61, "miou": 0.5, "n": 200}}))
    promote(params, write_per_sample(tmp_path / "c.jsonl", 0.6), write_per_sample(tmp_path / "b.jsonl", 0.2),
            checkpoint_dir=write_checkpoint(tmp_path / "ckpt", "x"), metrics_file=metrics_file,
            out=tmp_path / "promotion.json")
    version = client.get_model_version("univg", "1")
    assert version.tags["eval.acc_at_0.5"] == "0.61"
    assert {"data_hash", "git_commit", FINGERPRINT_TAG} <= set(version.tags)
    assert version.tags["univg.gate.decision"] == "promote"
    per_sample = version.tags["univg.per_sample_uri.mig-synth"]
    assert registry._download_hits(per_sample) == registry.read_hits(tmp_path / "c.jsonl")


def test_champion_moves_only_for_a_significant_win(params, tmp_path, client):
    _promote(params, tmp_path, "v1", 0.5)
    worse = _promote(params, tmp_path, "v2", 0.45, seed=2)
    assert not worse["promoted"] and worse["decision"]["reference"] == "champion:v1"
    assert client.get_model_version_by_alias("univg", "champion").version == 1
    assert client.get_model_version_by_alias("univg", "challenger").version == 2

    better = _promote(params, tmp_path, "v3", 0.9, seed=3)
    assert better["promoted"] and better["champion_before"] == "1" and better["champion_after"] == "3"
    champion = client.get_model_version_by_alias("univg", "champion")
    assert champion.version == 3 and champion.tags[registry.PREVIOUS_TAG] == "1"


def test_champion_scored_on_another_benchmark_version_blocks_promotion(params, tmp_path, client):
    _promote(params, tmp_path, "v1", 0.3)
    other = _promote(params, tmp_path, "v2", 0.95, prefix="new-ids-")
    assert not other["promoted"]
    assert "different benchmark version" in other["decision"]["reason"]
    assert client.get_model_version_by_alias("univg", "champion").version == 1


def test_rollback_restores_the_previous_champion_and_sticks(params, tmp_path, client):
    with pytest.raises(PromotionError, match="no champion"):
        rollback(params)
    _promote(params, tmp_path, "v1", 0.5)
    with pytest.raises(PromotionError, match="first champion"):
        rollback(params)
    _promote(params, tmp_path, "v2", 0.95, seed=2)
    result = rollback(params)
    assert result == {"model_name": "univg", "champion_before": "2", "champion_after": "1", "rolled_back": True}
    assert client.get_model_version_by_alias("univg", "champion").version == 1
    # the nightly run gating the same checkpoint again must not undo the operator's rollback
    rerun = _promote(params, tmp_path, "v2", 0.95, seed=2)
    assert not rerun["changed"] and rerun["rolled_back"]
    assert client.get_model_version_by_alias("univg", "champion").version == 1


def test_pipeline_entry_uses_the_pipeline_layout(params, tmp_path, client, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_checkpoint(tmp_path / "models" / "grpo" / "final", "pipeline")
    write_per_sample(tmp_path / "eval" / "grpo" / "per_sample.jsonl", 0.7)
    write_per_sample(tmp_path / "eval" / "base" / "per_sample.jsonl", 0.1, seed=5)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "eval.json").write_text(json.dumps({"grpo": {"acc@0.5": 0.7}}))
    with stage_run("grpo", params):  # the grpo stage logged its final model
        logged = log_model_checkpoint(tmp_path / "models" / "grpo" / "final")
    result = promote_pipeline(params)
    assert result["promoted"] and result["source"] == logged  # found by fingerprint, not logged twice
    assert json.loads((tmp_path / "metrics" / "promotion.json").read_text())["version"] == "1"

    record = json.loads((tmp_path / "metrics" / "promotion.json").read_text())
    assert record["candidate"] == "grpo" and "grpo 0.700" in record["chosen_because"]

    params.gate.benchmark = "mig-bench"
    with pytest.raises(PromotionError, match="differs from eval.benchmark"):
        promote_pipeline(params)


def test_pipeline_promotes_the_best_model_of_the_run_not_the_last(params, tmp_path, client, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params.eval.models = ["base", "sft", "grpo"]
    for stage, share in (("sft", 0.7), ("grpo", 0.4)):
        write_checkpoint(tmp_path / "models" / stage / "final", stage)
        write_per_sample(tmp_path / "eval" / stage / "per_sample.jsonl", share, seed=3)
    write_per_sample(tmp_path / "eval" / "base" / "per_sample.jsonl", 0.1, seed=5)
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics" / "eval.json").write_text(json.dumps({"sft": {"acc@0.5": 0.7}, "grpo": {"acc@0.5": 0.4}}))
    result = promote_pipeline(params)
    assert result["promoted"] and result["candidate"] == "sft"
    assert "sft 0.700, grpo 0.400" in result["chosen_because"]
    assert client.get_model_version_by_alias("univg", "champion").tags["univg.candidate"] == "sft"


def test_logged_checkpoint_resolves_back_to_its_folder(tmp_path, params):
    from univg.models.loading import resolve_model_path

    folder = write_checkpoint(tmp_path / "final", "roundtrip")
    with stage_run("sft", params):
        uri = log_model_checkpoint(folder, name="model")
    assert uri.startswith("models:/m-")
    found = resolve_model_path(uri, cache_dir=tmp_path / "cache")
    assert (found / "config.json").read_text() == (folder / "config.json").read_text()
    assert (found / "model.safetensors").read_bytes() == (folder / "model.safetensors").read_bytes()
    model = mlflow.get_logged_model(uri.removeprefix("models:/"))
    assert model.tags[FINGERPRINT_TAG] == checkpoint_fingerprint(folder)

    with pytest.raises(FileNotFoundError, match="no config.json"):
        log_model_checkpoint(tmp_path)
