"""The promotion gate: pure functions over per-record hits, no MLflow.

Promote only when the candidate's Acc@0.5 beats the reference by at least `min_delta` AND the
paired-bootstrap interval of the difference excludes 0. `univg.registry` applies the decision.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from univg.errors import UserError

HIT_IOU = 0.5


class PromotionError(UserError, RuntimeError):
    """The registry or the gate's inputs are not in a state promotion can work from."""


# ----------------------------------------------------------------------------- which candidate
def best_candidate(metrics: dict[str, Any], trained: list[str]) -> tuple[str, str]:
    """The run's model to put before the gate, and why: the highest Acc@0.5 among the trained
    models the eval stage scored (`metrics`: metrics/eval.json). A tie goes to the later stage in
    `trained` (GRPO over SFT: same score, more training). No score at all: the last trained model."""
    scored = {name: float(metrics[name]["acc@0.5"]) for name in trained
              if isinstance(metrics.get(name), dict) and "acc@0.5" in metrics[name]}
    if not scored:
        return trained[-1], f"no Acc@0.5 in the metrics for {trained}: the last trained model"
    order = {name: i for i, name in enumerate(trained)}
    best = max(scored, key=lambda name: (scored[name], order[name]))
    table = ", ".join(f"{name} {acc:.3f}" for name, acc in scored.items())
    return best, f"highest Acc@0.5 of the run's trained models ({table})"


# ----------------------------------------------------------------------------- the gate (pure)
@dataclass(frozen=True)
class GateDecision:
    promote: bool
    delta: float  # candidate Acc@0.5 minus reference Acc@0.5, paired on the same records
    ci: tuple[float, float]  # paired bootstrap interval of delta at `confidence`
    reason: str
    n: int = 0
    candidate_acc: float = float("nan")
    reference_acc: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["ci"] = list(self.ci)
        return data


def decide(
    candidate_hits: list[float] | Any,
    reference_hits: list[float] | Any,
    min_delta: float = 0.0,
    confidence: float = 0.95,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> GateDecision:
    """Promote only if the candidate beats the reference by >= min_delta and the CI excludes 0.

    The hit lists are aligned: position i is the same benchmark record for both models.
    """
    from univg.eval.stats import paired_bootstrap

    if len(candidate_hits) != len(reference_hits):
        raise ValueError(f"unpaired hits: {len(candidate_hits)} candidate vs {len(reference_hits)} reference")
    if len(candidate_hits) == 0:
        return GateDecision(False, float("nan"), (float("nan"), float("nan")), "no shared records to compare")
    stats = paired_bootstrap(candidate_hits, reference_hits, n=n_bootstrap, seed=seed, confidence=confidence)
    delta, (low, high) = float(stats["delta"]), (float(stats["ci95"][0]), float(stats["ci95"][1]))
    n = len(candidate_hits)
    cand_acc, ref_acc = sum(map(float, candidate_hits)) / n, sum(map(float, reference_hits)) / n
    level = f"{confidence:.0%}"
    if delta <= 0 or delta < min_delta:
        reason = f"delta {delta:+.4f} does not beat the reference by min_delta {min_delta:.4f}"
        promote = False
    elif low <= 0:
        reason = f"{level} interval [{low:+.4f}, {high:+.4f}] does not exclude 0"
        promote = False
    else:
        reason = f"delta {delta:+.4f} >= {min_delta:.4f} and {level} interval [{low:+.4f}, {high:+.4f}] excludes 0"
        promote = True
    return GateDecision(promote, delta, (low, high), reason, n, cand_acc, ref_acc)


# ----------------------------------------------------------------------------- per-sample hits
def read_hits(path: str | Path) -> dict[str, float]:
    """Per-record hit (IoU >= 0.5) from an eval per_sample.jsonl, keyed by record id (or index)."""
    path = Path(path)
    if not path.is_file():
        raise PromotionError(f"{path}: no per-sample file (run the eval stage first)")
    hits: dict[str, float] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            key = str(row["id"] if "id" in row else row["index"])
            iou = float(row["iou"]) if row.get("iou") is not None else 0.0  # a missing box is a miss
        except (ValueError, KeyError, TypeError) as error:
            raise PromotionError(f"{path}:{number}: not a per-sample row with id/index and iou ({error})") from None
        if key in hits:
            raise PromotionError(f"{path}:{number}: duplicate record id {key!r}")
        hits[key] = 1.0 if iou >= HIT_IOU else 0.0
    if not hits:
        raise PromotionError(f"{path}: empty per-sample file")
    return hits


def pair_hits(candidate: dict[str, float], reference: dict[str, float]) -> tuple[list[float], list[float], float]:
    """Aligned hit lists over the shared record ids, and the shared share of the candidate's ids."""
    shared = sorted(set(candidate) & set(reference))
    return [candidate[k] for k in shared], [reference[k] for k in shared], len(shared) / max(len(candidate), 1)
