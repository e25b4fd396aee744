"""Models load from safetensors only, and never run code shipped inside a checkpoint unless the user
says so (UNIVG_TRUST_REMOTE_CODE=1)."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.train.conftest import TINY_MODEL, write_tiny_records
from univg.models.loading import ModelNotAvailable, load_model_and_processor


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    from univg.models.tiny import build_tiny_model, corpus_from_records

    folder = tmp_path_factory.mktemp("loading")
    data = write_tiny_records(folder / "data", count=2)
    build_tiny_model(TINY_MODEL, corpus_from_records([data]), folder / "model")
    return folder / "model"


def test_pickled_weights_are_refused(tiny_checkpoint, tmp_path):
    model, _ = load_model_and_processor(tiny_checkpoint)
    pickled = tmp_path / "pickled"
    shutil.copytree(tiny_checkpoint, pickled)
    for weights in pickled.glob("*.safetensors"):
        weights.unlink()
    import torch

    torch.save(model.state_dict(), pickled / "pytorch_model.bin")  # the pickle format older checkpoints use
    assert (pickled / "pytorch_model.bin").is_file() and not list(pickled.glob("*.safetensors"))
    with pytest.raises(ModelNotAvailable, match="safetensors only"):
        load_model_and_processor(pickled)


def test_code_inside_a_checkpoint_is_not_run(tiny_checkpoint, tmp_path, monkeypatch):
    hostile = tmp_path / "hostile"
    shutil.copytree(tiny_checkpoint, hostile)
    marker = tmp_path / "code-ran"
    (hostile / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = json.loads((hostile / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForImageTextToText": "evil.EvilModel"}
    config["model_type"] = "univg_evil"
    (hostile / "config.json").write_text(json.dumps(config))
    monkeypatch.delenv("UNIVG_TRUST_REMOTE_CODE", raising=False)
    with pytest.raises(Exception, match="trust_remote_code|univg_evil"):
        load_model_and_processor(hostile)
    assert not marker.exists()
