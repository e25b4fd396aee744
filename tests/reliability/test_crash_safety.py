"""Crash safety, tested with a real SIGKILL of a real `univg` subprocess at a chosen moment.

What each kill may lose, and what these tests hold the code to:
- `data synth`: the run in progress (it is deterministic and starts over); never a file that
  looks finished: card.json (written last) is gone until the rerun ends, every split file and
  image present is whole.
- `data import`: the run in progress; the output files appear whole (temporary name, then rename)
  or not at all, even when the kill lands while they are written.
- `train sft` / `train grpo`: at most one save interval; the rerun resumes from the newest
  complete checkpoint.
- `cot generate` with a real teacher: at most the rows in flight; the rerun asks the teacher only
  for rows that were not finished.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from bad_inputs import make_images, synth_row, write_jsonl_rows
from PIL import Image
from processes import environment, finish, kill_when, printed_json, univg, whole_jsonl

from tests.train.conftest import TINY_MODEL, write_tiny_records


# ----------------------------------------------------------------------------- data
def test_kill_during_synth_leaves_nothing_that_looks_finished(tmp_path):
    out = tmp_path / "synth"
    command = univg("data", "synth", "--params", str(tmp_path / "none.yaml"), "--out", str(out),
                    "-S", "data.train_per_task=60", "-S", "data.val_per_task=2", "-S", "data.test_per_task=2",
                    cwd=tmp_path)
    env = environment(tmp_path)
    finish(command, tmp_path, env)  # a finished run first: the kill must not leave it passing for the new one
    first_card = json.loads((out / "card.json").read_text())

    started = time.time()

    def halfway() -> bool:  # the new run has written 100 train images
        try:
            fresh = [e for e in os.scandir(out / "images" / "train") if e.stat().st_mtime >= started]
        except FileNotFoundError:
            return False
        return len(fresh) >= 100

    kill_when(command, tmp_path, env, halfway)
    written = [p for p in (out / "images" / "train").iterdir() if not p.name.startswith(".")]
    assert not (out / "card.json").exists(), "a killed run left a card.json behind"
    for split in ("train", "val", "test"):
        if (out / f"{split}.jsonl").exists():
            whole_jsonl(out / f"{split}.jsonl")
    for png in written:
        Image.open(png).load()  # every visible image is whole
    finish(command, tmp_path, env)
    assert json.loads((out / "card.json").read_text()) == first_card  # deterministic: the same data again
    print(f"synth: killed after {len(written)} train images; the rerun regenerated them")


def test_kill_while_import_writes_its_files_leaves_none_half_written(tmp_path):
    folder = tmp_path / "root"
    make_images(folder, tmp_path / "outside")
    # big enough that writing the outputs takes a while (the kill lands then), small enough to import fast
    rows = [synth_row(id=f"s{i}", question=f"Locate thing {i}. " + "x" * 1500) for i in range(12_000)]
    source = write_jsonl_rows(folder / "rows.jsonl", rows)
    out = tmp_path / "imported"
    command = univg("data", "import", "--input", str(source), "--format", "mig-synth", "--out", str(out), cwd=tmp_path)

    def writing() -> bool:
        return out.is_dir() and any(p.name.endswith(".partial") for p in out.iterdir())

    kill_when(command, tmp_path, environment(tmp_path), writing)
    visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    counts = {name: whole_jsonl(out / name) for name in visible}
    assert set(visible) <= {"train.jsonl", "test.jsonl", "quarantine.jsonl"}  # each one whole (read above)
    finish(command, tmp_path, environment(tmp_path))
    assert sum(whole_jsonl(out / f"{s}.jsonl") for s in ("train", "test")) == len(rows)
    print(f"import: killed while writing; visible then: {counts}")


# ----------------------------------------------------------------------------- training
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from univg.models.tiny import build_tiny_model, corpus_from_records

    folder = tmp_path_factory.mktemp("crash-train")
    data = write_tiny_records(folder / "data", count=8)
    base = folder / "base"
    build_tiny_model(TINY_MODEL, corpus_from_records([data]), base)
    return data, base


@pytest.mark.parametrize("stage", ["sft", "grpo"])
def test_kill_during_training_loses_at_most_one_save_interval(tiny_run, tmp_path, stage):
    data, base = tiny_run
    out = tmp_path / stage
    profile = f"{stage}.tiny-cpu"
    settings = {"save_steps": 2, "logging_steps": 1, "sample_every_steps": 0, "per_device_train_batch_size": 2}
    if stage == "grpo":
        settings.update(num_generations=2, max_completion_length=8, per_device_train_batch_size=2)
    overrides = [arg for key, value in settings.items() for arg in ("-S", f"{profile}.{key}={value}")]
    command = univg("train", stage, "--params", str(tmp_path / "none.yaml"), "--train", str(data), "--model",
                    str(base), "--out", str(out), "--max-steps", "8", *overrides, cwd=tmp_path)
    env = environment(tmp_path)

    def saved_twice() -> bool:
        return (out / "checkpoint-4" / "trainer_state.json").is_file()

    kill_when(command, tmp_path, env, saved_twice)
    newest_at_kill = max(int(p.name.split("-")[1]) for p in out.glob("checkpoint-*")
                         if (p / "trainer_state.json").is_file())
    summary = printed_json(finish(command, tmp_path, env).stdout)
    resumed = int(Path(summary["resumed_from"]).name.split("-")[1])
    assert resumed == newest_at_kill >= 4
    assert summary["global_step"] == 8 and summary["steps_this_run"] == 8 - resumed
    assert (out / "final" / "config.json").is_file()
    print(f"{stage}: killed after checkpoint-{newest_at_kill}; resumed there, lost < 2 steps (save_steps=2)")


# ----------------------------------------------------------------------------- CoT
def test_kill_during_cot_generation_redoes_only_unfinished_rows(tmp_path):
    from tests.cot.fake_openai import FakeOpenAI

    folder = tmp_path / "root"
    make_images(folder, tmp_path / "outside")
    rows = [synth_row(id=f"s{i}", question=f"Locate thing {i}.") for i in range(12)]
    source = write_jsonl_rows(folder / "records.jsonl", rows)
    cache = tmp_path / "cache" / "openai-chains.jsonl"
    out = tmp_path / "cot" / "train.jsonl"
    fake = FakeOpenAI().start()
    try:
        def command(model: str) -> list[str]:
            return univg("cot", "generate", "--params", str(tmp_path / "none.yaml"), "--input", str(source),
                         "--out", str(out), "-S", "cot.teacher=openai", "-S", f"cot.openai.base_url={fake.base_url}",
                         "-S", f"cot.openai.model={model}", "-S", "cot.openai.max_concurrency=1",
                         "-S", "cot.num_candidates=1", "-S", f"cot.cache_dir={cache.parent}", cwd=tmp_path)

        env = {**environment(tmp_path), "OPENAI_API_KEY": "sk-test"}
        kill_when(command("slow0.2"), tmp_path, env, lambda: cache.is_file() and cache.read_text().count("\n") >= 4)
        finished = sum(1 for line in cache.read_text().splitlines() if line.endswith("}"))
        assert not out.exists()
        fake.reset()
        finish(command("slow0.2"), tmp_path, env)
        assert len(fake.requests) == len(rows) - finished  # finished rows are not asked again
        assert whole_jsonl(out) == len(rows)
        print(f"cot: killed after {finished} finished rows; the rerun asked for the other {len(rows) - finished}")
    finally:
        fake.stop()
