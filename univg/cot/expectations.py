"""The Great Expectations suite behind `univg cot validate`.

Derived columns are computed in pandas first (univg/cot/validate.py); each check here is a real GX
expectation on one of them, run through a Checkpoint whose UpdateDataDocsAction writes the HTML
Data Docs. Results come back with result_format COMPLETE, so every unexpected row index maps to
the check's short reason name (the `reason` in the expectation's meta).

GX is imported inside `run_suite` only: importing it takes seconds.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SUITE_NAME = "univg_cot"


@dataclass(frozen=True)
class Check:
    """One expectation: the reason rows get when they fail it, what it means, and the GX call."""

    reason: str
    description: str
    expectation: str  # class name in great_expectations.expectations
    kwargs: dict[str, Any] = field(default_factory=dict)


def _schema(name: str, allowed: list[str], what: str) -> Check:
    return Check(f"schema_{name}", f"'{name}' is {what}", "ExpectColumnValuesToBeInSet",
                 {"column": f"type_{name}", "value_set": allowed})


def suite_checks(cfg: Any) -> list[Check]:
    """Every check, in the order reasons are listed on a rejected row."""
    return [
        _schema("id", ["str"], "a non-empty string"),
        _schema("task", ["str"], "a non-empty string"),
        _schema("source", ["str"], "a string"),
        _schema("question", ["str"], "a string"),
        _schema("images", ["list[str]"], "a list of path strings"),
        _schema("target_image", ["int"], "an integer"),
        _schema("box", ["int[4]"], "four integers"),
        _schema("cot", ["str", "missing", "null"], "a string when present"),
        _schema("meta", ["dict", "missing", "null"], "an object when present"),
        Check("empty_question", "the question has text", "ExpectColumnValuesToBeBetween",
              {"column": "question_chars", "min_value": 1}),
        Check("image_count", f"1..{cfg.max_images} images", "ExpectColumnValuesToBeBetween",
              {"column": "n_images", "min_value": 1, "max_value": cfg.max_images}),
        Check("image_unreadable", "every image exists and decodes", "ExpectColumnValuesToBeInSet",
              {"column": "images_ok", "value_set": [True]}),
        Check("box_out_of_range", "box coordinates within 0..1000", "ExpectColumnValuesToBeBetween",
              {"column": "box_lo", "min_value": 0}),
        Check("box_out_of_range", "box coordinates within 0..1000", "ExpectColumnValuesToBeBetween",
              {"column": "box_hi", "max_value": 1000}),
        Check("box_inverted", "x1 < x2", "ExpectColumnPairValuesAToBeGreaterThanB",
              {"column_A": "box_x2", "column_B": "box_x1", "or_equal": False, "ignore_row_if": "either_value_is_missing"}),
        Check("box_inverted", "y1 < y2", "ExpectColumnPairValuesAToBeGreaterThanB",
              {"column_A": "box_y2", "column_B": "box_y1", "or_equal": False, "ignore_row_if": "either_value_is_missing"}),
        Check("target_out_of_range", "target_image >= 1", "ExpectColumnValuesToBeBetween",
              {"column": "target", "min_value": 1}),
        Check("target_out_of_range", "target_image <= number of images", "ExpectColumnPairValuesAToBeGreaterThanB",
              {"column_A": "n_images", "column_B": "target", "or_equal": True, "ignore_row_if": "either_value_is_missing"}),
        Check("chain_missing", "a chain of thought is present", "ExpectColumnValuesToNotBeNull",
              {"column": "chain"}),
        Check("chain_length", f"chain length {cfg.min_chain_chars}..{cfg.max_chain_chars} chars",
              "ExpectColumnValueLengthsToBeBetween",
              {"column": "chain", "min_value": cfg.min_chain_chars, "max_value": cfg.max_chain_chars}),
        Check("chain_has_tags", "the chain holds no <think>/<answer> tags (they would break the SFT target)",
              "ExpectColumnValuesToNotMatchRegex", {"column": "chain", "regex": r"</?\s*(?:think|answer)\s*>"}),
        Check("chain_names_no_image", "the chain names an image", "ExpectColumnValuesToBeInSet",
              {"column": "chain_names_image", "value_set": [True]}),
        Check("chain_names_wrong_image", "the last image the chain names is the target", "ExpectColumnPairValuesToBeEqual",
              {"column_A": "chain_conclusion", "column_B": "target", "ignore_row_if": "either_value_is_missing"}),
        Check("answer_box_mismatch", f"the answer box has IoU >= {cfg.answer_iou_threshold} with the ground truth",
              "ExpectColumnValuesToBeBetween", {"column": "answer_iou", "min_value": cfg.answer_iou_threshold}),
        Check("answer_names_wrong_image", "the teacher's answer names the target image", "ExpectColumnPairValuesToBeEqual",
              {"column_A": "answer_image", "column_B": "target", "ignore_row_if": "either_value_is_missing"}),
        Check("duplicate", "no repeated (question, images) pair (the first is kept)", "ExpectColumnValuesToBeBetween",
              {"column": "dup_rank", "max_value": 0}),
        Check("duplicate_id", "ids are unique (the first is kept)", "ExpectColumnValuesToBeBetween",
              {"column": "id_rank", "max_value": 0}),
        Check("in_test_split", "no test-split record (by id or by question and images)", "ExpectColumnValuesToBeInSet",
              {"column": "in_test", "value_set": [False]}),
        Check("image_in_test_split", "no image whose pixels are a test-split image's (a copy under another name)",
              "ExpectColumnValuesToBeInSet", {"column": "image_in_test", "value_set": [False]}),
    ]


def reason_names(cfg: Any) -> list[str]:
    return list(dict.fromkeys(check.reason for check in suite_checks(cfg)))


def run_suite(frame: Any, cfg: Any, docs_dir: Path | None) -> dict[str, list[int]]:
    """Validate `frame` (derived columns, RangeIndex) and return {reason: failing row positions}.

    With `docs_dir`, Data Docs (HTML) are written there by the checkpoint's UpdateDataDocsAction.
    """
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.checkpoint import UpdateDataDocsAction
    from great_expectations.data_context.types.base import ProgressBarsConfig

    checks = suite_checks(cfg)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    actions = []
    if docs_dir is not None:
        if docs_dir.exists():
            shutil.rmtree(docs_dir)  # one run per folder: no stale validation pages
        context.add_data_docs_site("cot_validation", {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir.resolve())},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        })
        actions.append(UpdateDataDocsAction(name="data_docs", site_names=["cot_validation"]))

    batch = context.data_sources.add_pandas("cot").add_dataframe_asset("records").add_batch_definition_whole_dataframe("all")
    suite = context.suites.add(gx.ExpectationSuite(name=SUITE_NAME))
    for number, check in enumerate(checks):
        expectation_class = getattr(gxe, check.expectation)
        suite.add_expectation(expectation_class(
            **check.kwargs, description=f"{check.reason}: {check.description}", meta={"reason": check.reason, "check": number},
        ))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=SUITE_NAME, data=batch, suite=suite))
    checkpoint = context.checkpoints.add(gx.Checkpoint(
        name=SUITE_NAME, validation_definitions=[definition], actions=actions, result_format={"result_format": "COMPLETE"},
    ))
    result = checkpoint.run(batch_parameters={"dataframe": frame})
    return _failing_rows(result)


def _failing_rows(result: Any) -> dict[str, list[int]]:
    failing: dict[str, list[int]] = {}
    for validation in result.run_results.values():
        for outcome in validation.results:
            config = outcome.expectation_config
            _raise_if_errored(outcome, config)
            reason = (config.meta or {})["reason"]
            indices = (outcome.result or {}).get("unexpected_index_list") or []
            failing.setdefault(reason, []).extend(int(i) for i in indices)
    return failing


def _raise_if_errored(outcome: Any, config: Any) -> None:
    """An expectation that could not run must stop the stage: treating it as 'passed' would let bad rows through."""
    info = outcome.exception_info or {}
    entries = [info] if "raised_exception" in info else list(info.values())
    for entry in entries:
        if isinstance(entry, dict) and entry.get("raised_exception"):
            raise RuntimeError(
                f"expectation {config.type} ({(config.meta or {}).get('reason')}) could not run: "
                f"{entry.get('exception_message')}"
            )
