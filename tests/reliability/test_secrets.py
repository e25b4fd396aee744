"""Secrets stay out of every record of a run: MLflow params, tags, metrics, artifacts, the files
the stages write, and what they print. A run with API keys in its environment goes through CoT
generation with a real (loopback) teacher, validation and a few SFT steps; then every byte the
run left on disk, and its output, is searched for the keys."""

from __future__ import annotations

import subprocess
from pathlib import Path

from processes import environment, univg

from tests.cot.fake_openai import FakeOpenAI
from tests.train.conftest import TINY_MODEL, write_tiny_records

SECRETS = {"OPENAI_API_KEY": "sk-SENTINEL-openai-4b1d", "UNIVG_API_KEY": "SENTINEL-serve-93ae",
           "HF_TOKEN": "hf_SENTINEL-hub-77c2", "MLFLOW_TRACKING_TOKEN": "SENTINEL-mlflow-0f3e"}


def test_no_key_reaches_mlflow_files_or_logs(tmp_path):
    from univg.models.tiny import build_tiny_model, corpus_from_records

    data = write_tiny_records(tmp_path / "data", count=4)
    base = tmp_path / "base"
    build_tiny_model(TINY_MODEL, corpus_from_records([data]), base)
    env = {**environment(tmp_path), **SECRETS}
    fake = FakeOpenAI().start()
    printed = []
    try:
        cot, validated = tmp_path / "cot" / "train.jsonl", tmp_path / "validated"
        params = ["--params", str(tmp_path / "none.yaml")]
        commands = [
            univg("cot", "generate", *params, "--input", str(data), "--out", str(cot), "-S", "cot.teacher=openai",
                  "-S", f"cot.openai.base_url={fake.base_url}", "-S", "cot.num_candidates=1",
                  "-S", f"cot.cache_dir={tmp_path / 'cache'}", cwd=tmp_path),
            univg("cot", "validate", *params, "--input", str(cot), "--out", str(validated), "-S",
                  "validate.min_accept_fraction=0", cwd=tmp_path),
            univg("train", "sft", *params, "--train", str(data), "--model", str(base), "--out", str(tmp_path / "sft"),
                  "--max-steps", "2", "-S", "sft.tiny-cpu.save_steps=1", "-S", "sft.tiny-cpu.sample_every_steps=0",
                  cwd=tmp_path),
        ]
        for command in commands:
            done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
            assert done.returncode == 0, done.stderr[-3000:]
            printed.append(done.stdout + done.stderr)
    finally:
        fake.stop()
    assert any(r["headers"].get("Authorization") == f"Bearer {SECRETS['OPENAI_API_KEY']}" for r in fake.requests)
    files = [p for p in Path(tmp_path).rglob("*") if p.is_file()]
    assert any(p.name == "mlruns.db" for p in files) and len(files) > 20
    for name, secret in SECRETS.items():
        needle = secret.encode()
        leaked = [str(p) for p in files if needle in p.read_bytes()]
        assert leaked == [], f"{name} found in {leaked}"
        assert not any(secret in text for text in printed), f"{name} printed"
