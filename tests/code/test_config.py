from pathlib import Path

import pytest
import yaml

from univg.config import ConfigError, Params, dump_params, load_params, parse_params

REPO = Path(__file__).resolve().parents[2]


def test_repo_params_file_is_the_config_defaults_written_out():
    """One source of truth: params.yaml holds exactly the defaults of univg/config.py, every key in
    the same order (a default changed in one place only fails here)."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    assert raw == Params().model_dump(by_alias=True, mode="json")
    assert yaml.safe_dump(raw, sort_keys=False) == dump_params(Params())
    params = load_params(REPO / "params.yaml")
    assert params.sft.active is params.sft.tiny_cpu


def test_every_knob_has_help_text():
    def undocumented(model, prefix=""):
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            if hasattr(type(value), "model_fields"):
                yield from undocumented(value, f"{prefix}{name}.")
            elif not field.description:
                yield f"{prefix}{name}"

    assert list(undocumented(Params())) == []


def test_dvc_string_number_is_coerced():
    params = parse_params({"sft": {"tiny-cpu": {"learning_rate": "3e-05"}}})
    assert params.sft.active.learning_rate == pytest.approx(3e-5)


def test_override_with_dotted_key_and_yaml_value():
    params = parse_params({}, {"grpo.tiny-cpu.beta": "0.04", "grpo.profile": "qwen2-vl-7b"})
    assert params.grpo.tiny_cpu.beta == pytest.approx(0.04)
    assert params.grpo.active.learning_rate == pytest.approx(1e-6)


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ({"sft": {"tiny-cpu": {"learning_rate": -1}}}, "'sft.tiny-cpu.learning_rate' = -1"),
        ({"data": {"bogus": 1}}, "unknown key 'data.bogus'"),
        ({"data": {"image_size": 100}}, "multiple of 28"),
        ({"data": {"tasks": ["diff", "nope"]}}, "unknown task"),
        ({"grpo": {"tiny-cpu": {"weighting": "cubic"}}}, "'grpo.tiny-cpu.weighting' = 'cubic'"),
    ],
)
def test_bad_values_name_key_and_value(raw, fragment):
    with pytest.raises(ConfigError) as error:
        parse_params(raw)
    assert fragment in str(error.value)


def test_missing_file_gives_defaults_and_bad_yaml_is_named(tmp_path):
    assert load_params(tmp_path / "absent.yaml") == Params()
    bad = tmp_path / "params.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="params.yaml: not valid YAML"):
        load_params(bad)


def test_dump_round_trips():
    params = parse_params({"data": {"seed": 7}})
    import yaml

    assert parse_params(yaml.safe_load(dump_params(params))) == params


def test_paper_profiles_match_the_spec():
    params = Params()
    sft, grpo = params.sft.qwen2_vl_7b, params.grpo.qwen2_vl_7b
    assert (sft.learning_rate, sft.lr_scheduler_type, sft.warmup_ratio, sft.num_train_epochs) == (5e-6, "cosine", 0.015, 1)
    assert sft.max_pixels == 401408 and sft.freeze_vision
    assert (grpo.num_generations, grpo.beta, grpo.learning_rate, grpo.epsilon) == (8, 0.04, 1e-6, 0.2)
    assert (grpo.temperature, grpo.max_completion_length, grpo.weighting) == (1.0, 256, "exp")
