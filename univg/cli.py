"""`univg`: one command per pipeline verb. Each DVC stage runs one of these.

Heavy libraries (torch, transformers, great_expectations, mlflow) are imported inside the
commands, so `univg --help` answers instantly.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from univg.config import ConfigError, Params, load_params
from univg.errors import PATH_ERRORS, UserError, describe


class _Typer(typer.Typer):
    """A Typer whose commands turn input errors into one line on stderr (see univg.errors)."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable], Callable]:
        register = super().command(*args, **kwargs)
        return lambda function: register(_input_errors_as_messages(function))


def _input_errors_as_messages(function: Callable) -> Callable:
    @functools.wraps(function)  # typer reads the options from the wrapped signature
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except (UserError, *PATH_ERRORS) as error:
            if os.environ.get("UNIVG_DEBUG"):
                raise
            fail(describe(error))

    return run


app = _Typer(
    help=(
        "Reasoning-guided universal visual grounding (UniVG-R1), end to end: synthetic or imported "
        "multi-image grounding data -> teacher CoT -> validation -> SFT -> GRPO with difficulty-aware "
        "weighting -> evaluation -> MLflow promotion. Every knob lives in params.yaml; `dvc repro` runs "
        "the whole pipeline. Override any knob with -S section.key=value."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = _Typer(help="Generate, import and inspect grounding records.", no_args_is_help=True)
model_app = _Typer(help="Build or check base models.", no_args_is_help=True)
cot_app = _Typer(help="Write chains of thought with a teacher, then validate them.", no_args_is_help=True)
train_app = _Typer(help="Fine-tune: CoT SFT (cold start), then GRPO.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(model_app, name="model")
app.add_typer(cot_app, name="cot")
app.add_typer(train_app, name="train")

ParamsOpt = Annotated[Path, typer.Option("--params", help="The params file (every knob; DVC tracks it).")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-S", help="Override a param, e.g. -S grpo.tiny-cpu.beta=0.04 (repeatable)."),
]


def fail(message: str, code: int = 1) -> None:
    """Stop with a clear one-line message on stderr (never a bare traceback for bad input)."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def params_from(path: Path, overrides: list[str] | None) -> Params:
    parsed: dict[str, Any] = {}
    for item in overrides or []:
        if "=" not in item:
            fail(f"override {item!r} must look like section.key=value")
        key, value = item.split("=", 1)
        parsed[key.strip()] = value
    try:
        return load_params(path, parsed)
    except ConfigError as error:
        fail(str(error))
        raise  # unreachable; keeps type checkers happy


def echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


# ----------------------------------------------------------------------------- config
@app.command("params")
def show_params(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    defaults: Annotated[bool, typer.Option(
        "--defaults", help="Print the built-in defaults instead (what the shipped params.yaml holds).")] = False,
) -> None:
    """Print the effective params (file + overrides), validated, as YAML."""
    from univg.config import Params, dump_params

    typer.echo(dump_params(Params() if defaults else params_from(params, set_)))


# ----------------------------------------------------------------------------- data
@data_app.command("synth")
def data_synth(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: data.out_dir).")] = None,
) -> None:
    """Generate mig-synth: train/val/test JSONL + PNGs + a dataset card, logged to MLflow."""
    from univg.data.stage import run_data_stage

    echo_json(run_data_stage(params_from(params, set_), out))


@data_app.command("import")
def data_import(
    input: Annotated[Path, typer.Option("--input", help="Benchmark or training file to import.")],
    format: Annotated[str, typer.Option(help="Loader name: mig-bench (original 0..1 or revised 0..1000), univg-r1 (UniVG-R1 SFT/RL files, MGrounding-630k), reasoning-grounding (LISA, LLMSeg, ReVOS, ReasonVOS), mig-synth.")],
    out: Annotated[Path, typer.Option(help="Output folder for records.jsonl and quarantine.jsonl.")],
    image_root: Annotated[Path | None, typer.Option(help="Image folder (default: the file's folder).")] = None,
    path_map: Annotated[list[str] | None, typer.Option(help="OLD=NEW: rewrite image paths starting with OLD (release files name their authors' absolute folders); repeatable.")] = None,
) -> None:
    """Convert a file into grounding records; malformed rows are quarantined with reasons."""
    from univg.data.stage import import_records

    try:
        echo_json(import_records(format, input, out, image_root, path_map=_path_map(path_map)))
    except (FileNotFoundError, ValueError) as error:
        fail(str(error))


def _path_map(pairs: list[str] | None) -> dict[str, str]:
    mapping = {}
    for pair in pairs or []:
        old, sep, new = pair.partition("=")
        if not sep or not old:
            fail(f"--path-map {pair!r}: write it as OLD=NEW (NEW may be empty)")
        mapping[old] = new
    return mapping


@data_app.command("inspect")
def data_inspect(
    file: Annotated[Path, typer.Argument(help="A grounding-record JSONL file.")],
    image_root: Annotated[Path | None, typer.Option(help="Image folder (default: the file's folder).")] = None,
    sheet: Annotated[Path | None, typer.Option(help="Write a contact-sheet PNG with ground-truth boxes.")] = None,
    max_samples: Annotated[int, typer.Option(help="Samples on the contact sheet.")] = 16,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Counts per task and every schema problem with its line number and reason."""
    from univg.data.inspect import format_report, inspect_file

    if not file.is_file():
        fail(f"{file}: no such file")
    report = inspect_file(file, image_root=image_root, sheet_path=sheet, max_samples=max_samples)
    typer.echo(json.dumps(report, indent=2) if as_json else format_report(report))
    if report.get("invalid"):
        raise typer.Exit(2)


# ----------------------------------------------------------------------------- model
@model_app.command("build")
def model_build(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    corpus: Annotated[list[Path] | None, typer.Option(help="Record files whose text trains the tokenizer.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: model.out_dir).")] = None,
) -> None:
    """Put the base model in models/base (model.base): the shipped univg-tiny, a from-scratch tiny build, or a real checkpoint.

    univg-tiny (the default) is copied after checking its sha256. 'scratch' trains a tokenizer on --corpus, builds a tiny Qwen2-VL and perception pre-trains it for model.pretrain_steps. Anything else is a folder, a hub id or an MLflow models:/ URI.
    """
    from univg.models.stage import run_base_model_stage

    echo_json(run_base_model_stage(params_from(params, set_), corpus or [], out))


@model_app.command("pretrain")
def model_pretrain(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    out: Annotated[Path | None, typer.Option(help="Output folder (default: pretrain.out_dir).")] = None,
    steps: Annotated[int | None, typer.Option(help="Override pretrain.steps (smoke runs).")] = None,
) -> None:
    """Build univg-tiny, the pretrained tiny base model this project ships (the pretrain params; hours on CPU).

    One run mixes perception (describe images cell by cell, name objects), in-context recall on text and referring grounding in every step, then measures the release gates on held-out data and writes the model card. Its own DVC pipeline: dvc repro pretrain/dvc.yaml.
    """
    from univg.models.univg_tiny import pretrain

    cfg = params_from(params, set_)
    release = pretrain(cfg, out or Path(cfg.pretrain.out_dir), steps=steps)
    echo_json({k: release[k] for k in ("name", "steps", "train_seconds", "gates", "gates_passed", "sha256")})


# ----------------------------------------------------------------------------- cot
@cot_app.command("generate")
def cot_generate(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    input: Annotated[Path | None, typer.Option("--input", help="Records (default: <data.out_dir>/train.jsonl).")] = None,
    out: Annotated[Path | None, typer.Option(help="Output JSONL (default: <cot.out_dir>/train.jsonl).")] = None,
    image_root: Annotated[Path | None, typer.Option(help="Image folder (default: the file's folder).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N records.")] = None,
) -> None:
    """Write chains with the configured teacher (rule or any OpenAI-compatible endpoint)."""
    from univg.cot.generate import run_cot_stage

    cfg = params_from(params, set_)
    input = input or Path(cfg.data.out_dir) / "train.jsonl"
    out = out or Path(cfg.cot.out_dir) / "train.jsonl"
    if not input.is_file():
        fail(f"{input}: no such file (run the data stage first)")
    echo_json(run_cot_stage(cfg, input, out, image_root=image_root, limit=limit))


@cot_app.command("validate")
def cot_validate(
    input: Annotated[Path, typer.Option("--input", help="CoT records to validate.")],
    out: Annotated[Path, typer.Option(help="Folder for accepted.jsonl, rejected.jsonl, report.json, data_docs/.")],
    image_root: Annotated[Path | None, typer.Option(help="Image folder (default: the file's folder).")] = None,
    test_split: Annotated[Path | None, typer.Option(help="Test records: their ids must not appear here.")] = None,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Validate CoT data with a Great Expectations suite; every input line lands in exactly one file."""
    from univg.cot.validate import ValidationFailed, run_validate_stage

    if not input.is_file():
        fail(f"{input}: no such file")
    try:
        echo_json(run_validate_stage(params_from(params, set_), input, out, image_root, test_split))
    except ValidationFailed as error:
        fail(str(error))


# ----------------------------------------------------------------------------- train
@train_app.command("sft")
def train_sft(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    train: Annotated[Path | None, typer.Option(help="Validated CoT records (default: <validate.out_dir>/accepted.jsonl).")] = None,
    model: Annotated[str | None, typer.Option(help="Base model: folder, hub id or models:/ URI (default: model.out_dir).")] = None,
    out: Annotated[Path | None, typer.Option(help="Checkpoint folder (default: sft.out_dir).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after N optimizer steps.")] = None,
) -> None:
    """CoT SFT (cold start) with TRL's SFTTrainer; loss on the completion only."""
    from univg.train.sft import train_sft as run

    cfg = params_from(params, set_)
    train = train or Path(cfg.validate_.out_dir) / "accepted.jsonl"
    if not train.is_file():
        fail(f"{train}: no such file (run the validate stage first)")
    echo_json(run(cfg, train, model or cfg.model.out_dir, out or Path(cfg.sft.out_dir), max_steps=max_steps))


@train_app.command("grpo")
def train_grpo(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    train: Annotated[Path | None, typer.Option(help="Records with boxes (default: <data.out_dir>/train.jsonl).")] = None,
    model: Annotated[str | None, typer.Option(help="Start model (default: the SFT or base model, per grpo.init).")] = None,
    out: Annotated[Path | None, typer.Option(help="Checkpoint folder (default: grpo.out_dir).")] = None,
    max_steps: Annotated[int | None, typer.Option(help="Stop after N optimizer steps.")] = None,
) -> None:
    """GRPO with IoU + format rewards and difficulty-aware weighting (TRL's GRPOTrainer)."""
    from univg.train.grpo import train_grpo as run

    cfg = params_from(params, set_)
    train = train or Path(cfg.data.out_dir) / "train.jsonl"
    if not train.is_file():
        fail(f"{train}: no such file (run the data stage first)")
    init = model or (str(Path(cfg.sft.out_dir) / "final") if cfg.grpo.init == "sft" else cfg.model.out_dir)
    echo_json(run(cfg, train, init, out or Path(cfg.grpo.out_dir), max_steps=max_steps))


# ----------------------------------------------------------------------------- eval
@app.command("eval")
def evaluate(
    model: Annotated[str | None, typer.Option(help="Model folder, hub id or models:/ URI.")] = None,
    benchmark: Annotated[str | None, typer.Option(help="Benchmark loader: mig-synth, mig-bench, univg-r1, reasoning-grounding.")] = None,
    annotations: Annotated[Path | None, typer.Option(help="The benchmark's annotation file.")] = None,
    out: Annotated[Path | None, typer.Option(help="Folder for predictions.jsonl, metrics.json and report/.")] = None,
    image_root: Annotated[Path | None, typer.Option(help="Image folder (default: the file's folder).")] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N records.")] = None,
    answer_format: Annotated[str | None, typer.Option(help="indexed or univg-r1 (default: the benchmark's).")] = None,
    coords: Annotated[str | None, typer.Option(help="How the model writes boxes: norm1000, pixels or qwen25 (default: its family's convention, see univg.models.family).")] = None,
    device: Annotated[str | None, typer.Option(help="auto (CUDA in bf16 when present, else CPU), cpu or cuda (default: eval.device).")] = None,
    path_map: Annotated[list[str] | None, typer.Option(help="OLD=NEW: rewrite image paths starting with OLD (release files name their authors' absolute folders); repeatable.")] = None,
    pipeline: Annotated[bool, typer.Option("--pipeline", help="Evaluate the pipeline's base/sft/grpo models on the test split (the DVC stage).")] = False,
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
) -> None:
    """Batched greedy generation, scoring with bootstrap intervals, and an HTML report."""
    cfg = params_from(params, set_)
    device = _device(device or cfg.eval.device)
    if pipeline:
        from univg.eval.run import run_eval_stage

        cfg.eval.device = device

        result = run_eval_stage(cfg, pipeline_models(cfg), Path(cfg.data.out_dir) / "test.jsonl",
                                Path(cfg.eval.out_dir), Path(cfg.eval.metrics_file),
                                Path(cfg.eval.compare_file), Path(cfg.eval.plots_file))
        from univg.summary import results_table

        typer.echo(results_table(result["eval"]))
        return
    missing = [name for name, value in (("--model", model), ("--benchmark", benchmark),
                                        ("--annotations", annotations), ("--out", out)) if value is None]
    if missing:
        fail(f"missing {', '.join(missing)} (or use --pipeline)")
    if not annotations.is_file():
        fail(f"{annotations}: no such file")
    from univg.eval.run import evaluate_model

    metrics = evaluate_model(model, benchmark, annotations, out, image_root=image_root,
                             batch_size=cfg.eval.batch_size, max_new_tokens=cfg.eval.max_new_tokens,
                             limit=limit, report_samples=cfg.eval.report_samples, answer_format=answer_format,
                             coords=coords, n_bootstrap=cfg.eval.n_bootstrap, params=cfg, device=device,
                             family=cfg.model.family, path_map=_path_map(path_map))
    if metrics is not None:  # None on the other ranks of a multi-process launch: rank 0 reports
        echo_json({k: metrics[k] for k in ("acc@0.3", "acc@0.5", "acc@0.7", "miou", "n", "avg", "family") if k in metrics})


def _device(device: str) -> str:
    from univg.models.loading import DEVICES

    if device not in DEVICES:
        fail(f"--device {device!r}: choose from {', '.join(DEVICES)}")
    return device


def pipeline_models(cfg: Params) -> dict[str, str]:
    """The pipeline's models that exist on disk, by eval name."""
    candidates = {
        "base": Path(cfg.model.out_dir),
        "sft": Path(cfg.sft.out_dir) / "final",
        "grpo": Path(cfg.grpo.out_dir) / "final",
    }
    return {name: str(path) for name, path in candidates.items()
            if name in cfg.eval.models and (path / "config.json").exists()}


@app.command("score")
def score(
    benchmark: Annotated[str, typer.Option(help="Benchmark loader name (decides the annotation format).")],
    annotations: Annotated[Path, typer.Option(help="The benchmark's annotation file.")],
    predictions: Annotated[Path, typer.Option(help='JSONL of {"index": i, "response": "..."}.')],
    out: Annotated[Path, typer.Option(help="Metrics JSON to write.")],
    image_root: Annotated[Path | None, typer.Option(help="Image folder (for pixel-coordinate conversions).")] = None,
    coords: Annotated[str, typer.Option(help="Prediction coordinates: norm1000 (0..1000), pixels (absolute, of the original image) or qwen25 (Qwen2.5-VL: pixels of the resized image).")] = "norm1000",
    answer_format: Annotated[str | None, typer.Option(help="indexed or univg-r1 (default: the benchmark's).")] = None,
    n_bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the 95% intervals.")] = 1000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
) -> None:
    """Score predictions: Acc@0.3/0.5/0.7, mean IoU, per task, task average, bootstrap 95% intervals."""
    from univg.eval.scoring import score_file

    for path in (annotations, predictions):
        if not path.is_file():
            fail(f"{path}: no such file")
    try:
        metrics = score_file(benchmark, annotations, predictions, out, image_root=image_root,
                             coords=coords, answer_format=answer_format, n_bootstrap=n_bootstrap, seed=seed)
    except ValueError as error:
        fail(str(error))
    echo_json({k: metrics[k] for k in ("acc@0.3", "acc@0.5", "acc@0.7", "miou", "n", "avg")})


# ----------------------------------------------------------------------------- registry / serving
@app.command("promote")
def promote(
    params: ParamsOpt = Path("params.yaml"),
    set_: SetOpt = None,
    rollback: Annotated[bool, typer.Option("--rollback", help="Restore the previous champion.")] = False,
) -> None:
    """Register the run's best trained model (highest Acc@0.5 of sft and grpo); move `champion` only if it significantly beats the current one."""
    from univg import registry

    cfg = params_from(params, set_)
    try:
        echo_json(registry.rollback(cfg) if rollback else registry.promote_pipeline(cfg))
    except registry.PromotionError as error:
        fail(str(error))


@app.command("lineage")
def lineage(
    model: Annotated[str, typer.Argument(help="A registered model version: models:/NAME@ALIAS or models:/NAME/N.")] = "models:/univg@champion",
    all_versions: Annotated[bool, typer.Option("--all", help="Instead: every DVC experiment the registry's versions of gate.model_name were made by (what `dvc gc` must keep).")] = False,
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Print what made a registered model: its DVC experiment, git commit, dvc.lock and data hashes, the DVC remote its outputs were pushed to, and where to clone from."""
    from univg.lineage import model_lineage, registered_experiments
    from univg.tracking import setup_mlflow

    cfg = params_from(params, None)
    setup_mlflow(cfg.tracking.uri, cfg.tracking.experiment)
    echo_json(registered_experiments(cfg.gate.model_name) if all_versions else model_lineage(model))


@app.command("restore")
def restore(
    model: Annotated[str, typer.Argument(help="A registered model version: models:/NAME@ALIAS or models:/NAME/N.")],
    into: Annotated[Path, typer.Option(help="A new folder: the clone with that model's data, params and outputs.")],
    params: ParamsOpt = Path("params.yaml"),
) -> None:
    """Bring back the exact code, params, data and outputs that made a registered model: git clone, dvc exp pull, dvc exp apply, dvc pull."""
    from univg.lineage import restore as run
    from univg.tracking import setup_mlflow

    cfg = params_from(params, None)
    setup_mlflow(cfg.tracking.uri, cfg.tracking.experiment)
    echo_json(run(model, into))


@app.command("predict")
def predict(
    query: Annotated[str, typer.Option(help="The question; it may need reasoning across the images.")],
    image: Annotated[list[Path], typer.Option(help="An image; repeat for several, in order (Image-1, Image-2, ...).")],
    model: Annotated[str, typer.Option(help="Model folder, hub id, univg-tiny, or an MLflow URI.")] = "models:/univg@champion",
    out: Annotated[Path | None, typer.Option(help="Write the target image with the answer's box drawn (PNG).")] = None,
    answer_format: Annotated[str | None, typer.Option(help="indexed or univg-r1 (default: what the model was trained on).")] = None,
    max_new_tokens: Annotated[int, typer.Option(help="Generation budget.")] = 256,
    device: Annotated[str, typer.Option(help="auto (CUDA in bf16 when present, else CPU), cpu or cuda.")] = "auto",
    family: Annotated[str, typer.Option(help="How the model writes boxes: auto (from its config), qwen2_vl, qwen2_5_vl or qwen3_vl.")] = "auto",
) -> None:
    """Ask a model one grounding question and print the answer as JSON: the image it names, the box in 0..1000 and in pixels, the reasoning and the raw text."""
    from univg.predict import InputError, Predictor, decode_image, draw_answer

    try:
        images = [decode_image(str(path.resolve()), _local_files(), f"--image {path}") for path in image]
        predictor = Predictor(model, max_new_tokens=max_new_tokens, device=_device(device), family=family)
        reply = predictor.generate([(predictor.conversation(len(images), query, answer_format), images)])[0]
    except InputError as error:
        fail(str(error))
    except Exception as error:  # a model that cannot be found or loaded: one line, no traceback
        fail(f"{type(error).__name__}: {error}")
    result = predictor.read_answer(reply.text, images)
    if out is not None:
        drawn = draw_answer(images, result)
        if drawn is None:
            typer.echo(f"note: no box to draw, {out} not written", err=True)
        else:
            out.parent.mkdir(parents=True, exist_ok=True)
            drawn.save(out)
            result["drawn"] = str(out)
    echo_json(result)


def _local_files():
    """The command line reads the files its user names: any path on this machine."""
    from univg.predict import ImageLimits

    return ImageLimits(image_root=Path("/"))


@app.command("serve")
def serve(
    model: Annotated[str, typer.Option(help="Model folder, hub id, univg-tiny, or an MLflow URI.")] = "models:/univg@champion",
    host: Annotated[str, typer.Option(help="Interface to bind (0.0.0.0 exposes it to the network).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8080,
    image_root: Annotated[Path | None, typer.Option(help="Allow requests to name image files inside this folder (default: none).")] = None,
    max_batch: Annotated[int, typer.Option(help="Requests generated together.")] = 16,
    batch_window_ms: Annotated[float, typer.Option(help="How long to wait for a batch to fill.")] = 2.0,
    max_queue: Annotated[int, typer.Option(help="Waiting requests before answering 503.")] = 64,
    max_images: Annotated[int, typer.Option(help="Images per request.")] = 8,
    max_pixels: Annotated[int, typer.Option(help="Pixels per image.")] = 4096 * 4096,
    max_body_mb: Annotated[float, typer.Option(help="Request body size in MiB.")] = 32.0,
    max_new_tokens: Annotated[int, typer.Option(help="Generation budget (caps a request's max_tokens).")] = 256,
    device: Annotated[str, typer.Option(help="auto (CUDA in bf16 when present, else CPU), cpu or cuda.")] = "auto",
    family: Annotated[str, typer.Option(help="How the model writes boxes: auto (from its config), qwen2_vl, qwen2_5_vl or qwen3_vl.")] = "auto",
) -> None:
    """Serve the model over HTTP: OpenAI-compatible /v1/chat/completions, /v1/ground, /health and /metrics, with batching. Set UNIVG_API_KEY to require a Bearer key."""
    from univg.predict import ImageLimits
    from univg.serve import ServeSettings
    from univg.serve import serve as run

    settings = ServeSettings(
        max_batch=max_batch, batch_window_ms=batch_window_ms, max_queue=max_queue, max_images=max_images,
        max_body_bytes=int(max_body_mb * (1 << 20)), max_new_tokens=max_new_tokens,
        limits=ImageLimits(max_pixels=max_pixels, image_root=image_root),
    )
    run(model, host, port, settings, device=_device(device), family=family)


def main() -> None:  # pragma: no cover - console entry
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
