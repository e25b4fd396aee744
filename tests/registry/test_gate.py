"""The promotion gate as a pure function, and the per-sample files it reads."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from univg.registry import PromotionError, decide, pair_hits, read_hits


def test_clear_win_is_promoted():
    decision = decide([1] * 70 + [0] * 30, [1] * 20 + [0] * 80, min_delta=0.0, n_bootstrap=500)
    assert decision.promote
    assert decision.delta == pytest.approx(0.5)
    assert 0 < decision.ci[0] < 0.5 < decision.ci[1]
    assert decision.candidate_acc == pytest.approx(0.7) and decision.reference_acc == pytest.approx(0.2)
    assert "excludes 0" in decision.reason


def test_a_tie_is_not_promoted():
    hits = [1, 0] * 50
    decision = decide(hits, hits)
    assert not decision.promote and decision.delta == 0 and "min_delta" in decision.reason


def test_a_win_inside_the_noise_is_not_promoted():
    # 2 records out of 100 flip in the candidate's favour: positive delta, interval reaches 0
    reference = [1] * 50 + [0] * 50
    candidate = [1] * 52 + [0] * 48
    decision = decide(candidate, reference, n_bootstrap=1000)
    assert decision.delta == pytest.approx(0.02)
    assert not decision.promote and decision.ci[0] <= 0 and "does not exclude 0" in decision.reason


def test_min_delta_is_required_even_when_significant():
    candidate, reference = [1] * 70 + [0] * 30, [1] * 60 + [0] * 40
    assert decide(candidate, reference, min_delta=0.05, n_bootstrap=500).promote
    blocked = decide(candidate, reference, min_delta=0.2, n_bootstrap=500)
    assert not blocked.promote and "min_delta 0.2000" in blocked.reason


def test_worse_candidate_is_not_promoted():
    assert not decide([0] * 100, [1] * 100).promote


def test_unpaired_or_empty_inputs():
    with pytest.raises(ValueError, match="unpaired"):
        decide([1, 0], [1])
    empty = decide([], [])
    assert not empty.promote and "no shared records" in empty.reason


def test_same_inputs_same_decision():
    a, b = [1, 0, 1, 1, 0] * 20, [0, 0, 1, 0, 1] * 20
    assert decide(a, b, seed=3) == decide(a, b, seed=3)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=60),
       st.floats(min_value=0, max_value=0.3))
def test_gate_never_promotes_both_ways_and_keeps_its_promise(pairs, min_delta):
    a = [float(x) for x, _ in pairs]
    b = [float(y) for _, y in pairs]
    forward, backward = decide(a, b, min_delta, n_bootstrap=200), decide(b, a, min_delta, n_bootstrap=200)
    assert not (forward.promote and backward.promote)
    for decision in (forward, backward):
        if decision.promote:
            assert decision.delta >= min_delta and decision.delta > 0 and decision.ci[0] > 0


def test_read_hits_thresholds_iou_and_keys_by_id(tmp_path):
    path = tmp_path / "per_sample.jsonl"
    rows = [{"id": "a", "iou": 0.5}, {"id": "b", "iou": 0.49}, {"index": 7, "iou": None}, {"id": "c", "iou": 0.9}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    assert read_hits(path) == {"a": 1.0, "b": 0.0, "7": 0.0, "c": 1.0}


@pytest.mark.parametrize("content, message", [
    ('{"id": "a", "iou": 0.7}\n{"id": "a", "iou": 0.1}\n', r"per_sample.jsonl:2: duplicate record id 'a'"),
    ('{"id": "a", "iou": 0.7}\nnot json\n', r"per_sample.jsonl:2: not a per-sample row"),
    ('{"task": "x", "iou": 0.7}\n', r"per_sample.jsonl:1: not a per-sample row"),
    ("", "empty per-sample file"),
])
def test_bad_per_sample_files_are_named(tmp_path, content, message):
    path = tmp_path / "per_sample.jsonl"
    path.write_text(content)
    with pytest.raises(PromotionError, match=message):
        read_hits(path)


def test_missing_per_sample_file_says_which_stage(tmp_path):
    with pytest.raises(PromotionError, match="run the eval stage"):
        read_hits(tmp_path / "nope.jsonl")


def test_pairing_uses_shared_ids_only():
    cand, ref, shared = pair_hits({"a": 1.0, "b": 0.0, "c": 1.0, "d": 1.0}, {"b": 1.0, "a": 0.0, "z": 1.0})
    assert (cand, ref) == ([1.0, 0.0], [0.0, 1.0])  # sorted by id: a, b
    assert shared == 0.5


def test_best_candidate_is_the_highest_scoring_trained_model():
    from univg.gate import best_candidate

    # the run of docs/results.md: SFT 0.238 beat GRPO 0.224, yet the last stage was crowned
    chosen, why = best_candidate({"base": {"acc@0.5": 0.9}, "sft": {"acc@0.5": 0.238}, "grpo": {"acc@0.5": 0.224}},
                                 ["sft", "grpo"])
    assert chosen == "sft" and "sft 0.238" in why and "grpo 0.224" in why
    assert best_candidate({"sft": {"acc@0.5": 0.2}, "grpo": {"acc@0.5": 0.3}}, ["sft", "grpo"])[0] == "grpo"
    assert best_candidate({"sft": {"acc@0.5": 0.25}, "grpo": {"acc@0.5": 0.25}}, ["sft", "grpo"])[0] == "grpo"
    assert best_candidate({"sft": {"acc@0.5": 0.25}}, ["sft", "grpo"])[0] == "sft"  # grpo not evaluated
    chosen, why = best_candidate({}, ["sft", "grpo"])
    assert chosen == "grpo" and "no Acc@0.5" in why


# ----------------------------------------------------------------------------- pinned by mutation testing
def test_no_shared_records_is_a_plain_no():
    decision = decide([], [])
    assert decision.promote is False and math.isnan(decision.delta) and all(math.isnan(v) for v in decision.ci)
    assert decision.reason == "no shared records to compare" and decision.n == 0


def test_the_interval_is_the_documented_paired_bootstrap():
    from univg.eval.stats import paired_bootstrap

    candidate, reference = [1.0] * 30 + [0.0] * 10, [1.0] * 20 + [0.0] * 20
    decision = decide(candidate, reference)  # defaults: 1000 resamples, seed 0, 95%
    stats = paired_bootstrap(candidate, reference, n=1000, seed=0, confidence=0.95)
    assert list(decision.ci) == [float(v) for v in stats["ci95"]] and decision.n == 40
    assert decision.promote is True and "95% interval" in decision.reason
    assert decide(candidate, reference, confidence=0.5).ci != decision.ci
    assert json.loads(json.dumps(decision.to_dict()))["ci"] == list(decision.ci)  # JSON-ready, ci a list
    losing = decide(reference, candidate)
    assert losing.promote is False and losing.candidate_acc == 0.5 and losing.reference_acc == 0.75


def test_a_delta_exactly_at_min_delta_is_enough():
    candidate, reference = [1.0] * 30 + [0.0] * 10, [1.0] * 20 + [0.0] * 20
    assert decide(candidate, reference, min_delta=0.25).promote is True  # delta is exactly 0.25
    assert decide(candidate, reference, min_delta=0.2501).promote is False


def test_read_hits_skips_blank_lines_anywhere(tmp_path):
    path = tmp_path / "per_sample.jsonl"
    path.write_text('{"id": "a", "iou": 0.9}\n\n{"id": "b", "iou": 0.1}\n')
    assert read_hits(path) == {"a": 1.0, "b": 0.0}


def test_coverage_of_a_single_record():
    assert pair_hits({"a": 1.0}, {"a": 0.0}) == ([1.0], [0.0], 1.0)


def test_without_scores_the_last_trained_model_is_the_candidate_and_the_reason_lists_scores():
    from univg.gate import best_candidate

    assert best_candidate({}, ["sft", "grpo", "dpo"])[0] == "dpo"
    name, reason = best_candidate({"sft": {"acc@0.5": 0.238}, "grpo": {"acc@0.5": 0.224}}, ["sft", "grpo"])
    assert name == "sft" and "(sft 0.238, grpo 0.224)" in reason


def test_the_gate_uses_1000_resamples_and_seed_0_by_default():
    """Continuous values (the gate takes any per-record numbers) so that every n and seed moves the interval."""
    from univg.eval.stats import paired_bootstrap

    candidate = [(200 - 4 * i) * (200 - 3 * i) / 40000 for i in range(40)]
    reference = [(200 - 3 * i) * (200 - 5 * i) / 40000 for i in range(40)]
    expected = paired_bootstrap(candidate, reference, n=1000, seed=0)["ci95"]
    assert expected != paired_bootstrap(candidate, reference, n=1001, seed=0)["ci95"]
    assert expected != paired_bootstrap(candidate, reference, n=1000, seed=1)["ci95"]
    assert list(decide(candidate, reference).ci) == expected


def test_a_win_inside_the_noise_is_a_plain_no_and_ci_is_a_list():
    decision = decide([1, 0, 1, 0, 1], [0, 1, 1, 0, 0])
    assert decision.promote is False and "does not exclude 0" in decision.reason
    assert type(decision.to_dict()["ci"]) is list


def test_resamples_and_seed_reach_the_bootstrap():
    from univg.eval.stats import paired_bootstrap

    candidate = [(200 - 4 * i) * (200 - 3 * i) / 40000 for i in range(40)]
    reference = [(200 - 3 * i) * (200 - 5 * i) / 40000 for i in range(40)]
    chosen = decide(candidate, reference, n_bootstrap=700, seed=5)
    assert list(chosen.ci) == paired_bootstrap(candidate, reference, n=700, seed=5)["ci95"]
    assert list(chosen.ci) != list(decide(candidate, reference).ci)
