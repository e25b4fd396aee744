"""`make mutation`: mutation testing of the contract modules, one module at a time, and their scores.

Each contract module is mutated by mutmut (config: [tool.mutmut] in pyproject.toml), and each mutant
runs against the focused tests that reach the mutated function. Results are cached in mutants/:
a rerun only re-tests functions that changed. The report counts, per module, mutants killed, the
survivors documented as equivalent in tools/mutation_equivalents.json (with the reason each
cannot change behaviour), and the survivors nobody explained; it fails when those exceed
MAX_SURVIVORS of a module's mutants.

    python tools/mutation.py                 # run every module, then report
    python tools/mutation.py answers gate    # only these
    python tools/mutation.py --report        # report what mutants/ holds, run nothing
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODULES = {  # short name -> the contract module
    "answers": "univg/answers.py",
    "rewards": "univg/rewards.py",
    "weighting": "univg/train/weighting.py",
    "scoring": "univg/eval/scoring.py",
    "stats": "univg/eval/stats.py",
    "validate": "univg/cot/validate.py",
    "gate": "univg/gate.py",
}
EQUIVALENTS = REPO / "tools" / "mutation_equivalents.json"
MAX_SURVIVORS = 0.05
KILLED = {"killed", "timeout"}


def dotted(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def retest_survivors(path: str) -> int:
    """Mark the module's non-killed mutants untested. mutmut keeps a verdict until the mutated
    function changes; a survivor must also meet the tests written since. Killed ones stay cached."""
    from mutmut.stats import status_by_exit_code

    meta = REPO / "mutants" / f"{path}.meta"
    if not meta.is_file():
        return 0
    data = json.loads(meta.read_text())
    codes = data["exit_code_by_key"]
    stale = [key for key, code in codes.items() if code is not None and status_by_exit_code[code] not in KILLED]
    for key in stale:
        codes[key] = None
    meta.write_text(json.dumps(data))
    return len(stale)


def run(names: list[str]) -> None:
    for name in names:
        print(f"== mutmut: {MODULES[name]} ({retest_survivors(MODULES[name])} survivors to retest)", flush=True)
        subprocess.run([sys.executable, "-m", "mutmut", "run", f"{dotted(MODULES[name])}.*"], cwd=REPO, check=False)


def statuses(path: str) -> dict[str, str]:
    """{mutant name: status} of one module, from mutmut's cache."""
    from mutmut.stats import status_by_exit_code

    meta = REPO / "mutants" / f"{path}.meta"
    if not meta.is_file():
        return {}
    codes = json.loads(meta.read_text())["exit_code_by_key"]
    return {key: ("not checked" if code is None else status_by_exit_code[code]) for key, code in codes.items()}


def report(names: list[str]) -> list[dict]:
    equivalents = json.loads(EQUIVALENTS.read_text()) if EQUIVALENTS.is_file() else {}
    rows = []
    for name in names:
        found = statuses(MODULES[name])
        survivors = sorted(k for k, status in found.items() if status not in KILLED)
        explained = [k for k in survivors if k in equivalents]
        unexplained = [k for k in survivors if k not in equivalents]
        total = len(found)
        rows.append({"module": MODULES[name], "mutants": total, "killed": total - len(survivors),
                     "equivalent": len(explained), "survivors": len(unexplained),
                     "survivor_rate": round(len(unexplained) / total, 4) if total else None,
                     "unexplained": [f"{k} ({found[k]})" for k in unexplained]})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modules", nargs="*", help=f"Short names among {', '.join(MODULES)} (default: all).")
    parser.add_argument("--report", action="store_true", help="Only report the cached results.")
    args = parser.parse_args()
    names = args.modules or list(MODULES)
    unknown = sorted(set(names) - set(MODULES))
    if unknown:
        parser.error(f"unknown module(s) {unknown}; choose from {list(MODULES)}")
    if not args.report:
        run(names)
    rows = report(names)
    print("\n| module | mutants | killed | equivalent | survivors | survivor rate |\n|---|---|---|---|---|---|")
    for row in rows:
        rate = "n/a" if row["survivor_rate"] is None else f"{row['survivor_rate']:.1%}"
        print(f"| {row['module']} | {row['mutants']} | {row['killed']} | {row['equivalent']} | {row['survivors']} | {rate} |")
    for row in rows:
        for mutant in row["unexplained"]:
            print(f"survivor: {mutant}   (mutmut show {mutant.split()[0]})")
    (REPO / "mutants").mkdir(exist_ok=True)
    (REPO / "mutants" / "report.json").write_text(json.dumps(rows, indent=2) + "\n")
    failing = [r["module"] for r in rows if r["survivor_rate"] is None or r["survivor_rate"] > MAX_SURVIVORS]
    if failing:
        print(f"over {MAX_SURVIVORS:.0%} unexplained survivors (or never run): {', '.join(failing)}")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
