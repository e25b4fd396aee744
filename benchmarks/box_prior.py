"""Box-prior baseline: answer the mean training box, in image 1, for every test sample.

A benchmark whose answers can be guessed without looking is broken; mig-synth must keep this
baseline under 10% Acc@0.5.

    python benchmarks/box_prior.py                      # fresh default mig-synth in a temp dir
    python benchmarks/box_prior.py --train data/mig-synth/train.jsonl --test data/mig-synth/test.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from univg.config import DataConfig
from univg.data.synth import box_prior_accuracy, generate_dataset
from univg.schema import read_records

THRESHOLD = 0.10


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", type=Path, help="training records (JSONL); default: generate mig-synth")
    parser.add_argument("--test", type=Path, help="test records (JSONL); default: generate mig-synth")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated dataset")
    return parser.parse_args(argv)


def load_or_generate(args: argparse.Namespace, scratch: Path) -> tuple[list[dict], list[dict]]:
    if (args.train is None) != (args.test is None):
        raise SystemExit("give both --train and --test, or neither")
    if args.train is not None:
        return read_records(args.train), read_records(args.test)
    generate_dataset(DataConfig(seed=args.seed), scratch)
    return read_records(scratch / "train.jsonl"), read_records(scratch / "test.jsonl")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mig-synth-") as scratch:
        train, test = load_or_generate(args, Path(scratch))
    result = box_prior_accuracy(train, test)
    print(f"mean training box: {result['mean_box']}  (n test = {result['n']})")
    for task, row in result["per_task"].items():
        print(f"  {task:<17} acc@0.5 {row['acc@0.5']:.3f}  (n={row['n']})")
    print(f"overall acc@0.5 {result['acc@0.5']:.3f}   with image index {result['acc@0.5_indexed']:.3f}")
    print(json.dumps(result))
    return 0 if result["acc@0.5"] < THRESHOLD else 1


if __name__ == "__main__":
    sys.exit(main())
