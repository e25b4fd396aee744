"""The one model loader every stage uses: local folders, LoRA adapters, hub ids and MLflow URIs.

A reference is one of
- a local checkpoint folder: a full model (config.json) or a PEFT adapter (adapter_config.json),
  whose base is loaded through this same function and the adapter merged unless `trainable`;
- a hub id such as `Qwen/Qwen2-VL-7B-Instruct`: the real `from_pretrained` path (HF cache,
  HF_TOKEN, mirrors); offline and not cached it fails with one clear `ModelNotAvailable` line;
- an MLflow URI (`models:/univg@champion`, `models:/univg/3`, `runs:/<id>/model`): artifacts are
  downloaded once into a cache and the checkpoint folder is found inside (registered models are
  pyfunc wrappers whose checkpoint sits below, under `artifacts/checkpoint`).
The architecture comes from the checkpoint's config, so Qwen2-VL and Qwen2.5-VL load alike.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from univg.errors import UserError

MODEL_FILES = ("config.json", "adapter_config.json")
TRAIN_INFO_FILE = "univg_train.json"  # what a training stage records beside its final model
# Checkpoints this project builds and ships in the repository, loadable by name.
SHIPPED_MODELS = {"univg-tiny": Path(__file__).resolve().parents[2] / "checkpoints" / "univg-tiny"}
MLFLOW_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/")
CACHE_ENV = "UNIVG_MODEL_CACHE"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_ALIAS = re.compile(r"^models:/([^/@]+)@([^/]+)(/.*)?$")
_VERSION = re.compile(r"^models:/([^/@]+)/(\d+)(/.*)?$")
_LOGGED_MODEL = re.compile(r"^models:/m-[0-9a-f]+(/.*)?$")
_MAX_ADAPTER_DEPTH = 4


class ModelNotAvailable(UserError, ValueError):
    """A model reference that cannot be resolved to weights here; the message says what to do."""


# ----------------------------------------------------------------------------- resolving
def is_mlflow_uri(ref: str | Path) -> bool:
    return str(ref).startswith(MLFLOW_SCHEMES)


def looks_like_hub_id(ref: str) -> bool:
    return bool(_HUB_ID.match(ref)) and not ref.startswith((".", "~"))


def find_checkpoint_folder(root: Path, max_depth: int = 5) -> Path:
    """The shallowest folder at or below `root` holding config.json or adapter_config.json.

    Hidden folders are skipped and the search stops `max_depth` levels down, so a wrong path
    (a repository root, a home folder) fails fast instead of crawling the disk.
    """
    root = Path(root)
    if not root.is_dir():
        raise ModelNotAvailable(f"not a checkpoint folder: {root} is not a directory")
    level = [root]
    for _ in range(max_depth + 1):
        found = [folder for folder in level if any((folder / name).is_file() for name in MODEL_FILES)]
        if len(found) == 1:
            return found[0]
        if found:
            names = ", ".join(str(f.relative_to(root)) for f in sorted(found))
            raise ModelNotAvailable(f"{root} holds several checkpoints ({names}); pass the one you mean")
        level = sorted(
            child for folder in level for child in folder.iterdir() if child.is_dir() and not child.name.startswith(".")
        )
    raise ModelNotAvailable(
        f"no checkpoint in {root}: no config.json or adapter_config.json at or up to {max_depth} levels below it"
    )


def pyfunc_checkpoint(model_dir: Path) -> Path | None:
    """The folder an MLflow pyfunc model lists as its "checkpoint" artifact, if it is one."""
    mlmodel = Path(model_dir) / "MLmodel"
    if not mlmodel.is_file():
        return None
    import yaml

    flavor = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {}).get("python_function", {})
    entry = (flavor.get("artifacts") or {}).get("checkpoint") or {}
    path = Path(model_dir) / entry["path"] if entry.get("path") else None
    return path if path is not None and path.is_dir() else None


def resolve_model_path(ref: str | Path, *, cache_dir: str | Path | None = None) -> Path:
    """The local checkpoint folder `ref` points at (downloading MLflow artifacts or a hub snapshot)."""
    text = str(ref)
    if is_mlflow_uri(text):
        downloaded = download_mlflow_model(text, cache_dir=cache_dir)
        return find_checkpoint_folder(pyfunc_checkpoint(downloaded) or downloaded)
    if text in SHIPPED_MODELS and (SHIPPED_MODELS[text] / "config.json").is_file():
        return SHIPPED_MODELS[text]
    path = Path(text).expanduser()
    if path.exists():
        return find_checkpoint_folder(pyfunc_checkpoint(path) or path)
    if looks_like_hub_id(text):
        return _hub_snapshot(text)
    raise ModelNotAvailable(_missing_message(text))


def parameter_counts(model: Any) -> dict[str, int]:
    """Parameters in all, trainable and frozen, and in the vision tower and the rest."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    visual = getattr(getattr(model, "model", model), "visual", None)
    vision = sum(p.numel() for p in visual.parameters()) if visual is not None else 0
    return {"total": total, "trainable": trainable, "frozen": total - trainable, "vision": vision, "text": total - vision}


def trained_answer_format(ref: str | Path) -> str | None:
    """The answer format a checkpoint was trained to write (its univg_train.json), or None when it
    records none (a base model, a hub checkpoint) or cannot be resolved."""
    try:
        info = resolve_model_path(ref) / TRAIN_INFO_FILE
    except ModelNotAvailable:
        return None
    if not info.is_file():
        return None
    try:
        return json.loads(info.read_text()).get("answer_format")
    except (OSError, ValueError, AttributeError):
        return None


def _missing_message(ref: str) -> str:
    if ref == "scratch":
        return "model 'scratch' is built, not loaded: run the base-model stage first and pass its out_dir"
    if ref in SHIPPED_MODELS:
        return (f"the shipped checkpoint {ref!r} is not in this checkout ({SHIPPED_MODELS[ref]}); "
                "rebuild it with `dvc repro pretrain/dvc.yaml`")
    return f"checkpoint folder not found: {ref} (expected a folder, a hub id like Qwen/Qwen2-VL-7B-Instruct, or models:/NAME@ALIAS)"


def _offline() -> bool:
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("TRANSFORMERS_OFFLINE", ""))
    return constants.HF_HUB_OFFLINE or any(flag.upper() in {"1", "ON", "YES", "TRUE"} for flag in flags)


def _offline_message(repo_id: str) -> str:
    return (
        f"model '{repo_id}' is not available offline: there is no local folder of that name, it is not in "
        "the local Hugging Face cache, and "
        f"HF_HUB_OFFLINE=1. Download it once with network access (`hf download {repo_id}`), point HF_HOME "
        "at a cache that holds it, or pass a local checkpoint folder or an MLflow models:/ URI instead."
    )


def _check_hub_reachable(repo_id: str) -> None:
    """Offline, a hub id must already be cached: say so in one line instead of a deep traceback."""
    from huggingface_hub import try_to_load_from_cache

    if _offline() and not isinstance(try_to_load_from_cache(repo_id, "config.json"), str):
        raise ModelNotAvailable(_offline_message(repo_id))


def _hub_error(repo_id: str, error: Exception) -> ModelNotAvailable:
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return ModelNotAvailable(
        f"model '{repo_id}' could not be fetched from the Hugging Face hub ({type(error).__name__}: {first_line}). "
        "Check the id, set HF_TOKEN for gated or private models, or pass a local checkpoint folder."
    )


def _hub_snapshot(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    _check_hub_reachable(repo_id)
    patterns = ["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model", "*.tiktoken"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=_offline()))
    except Exception as error:  # network, auth, missing repo: all become one actionable line
        raise _hub_error(repo_id, error) from None


# ----------------------------------------------------------------------------- MLflow
def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "univg" / "models")


def _pin(uri: str) -> tuple[str, str | None]:
    """(URI to download, its identity for the cache; None when the URI may change meaning).

    An alias is pinned to its version now, so an alias moved later never serves a stale copy; a
    version's identity includes its source and creation time, so a store rebuilt from scratch
    (version 1 again, another model) is not confused with the cached one.
    """
    from mlflow import MlflowClient

    alias, numbered = _ALIAS.match(uri), _VERSION.match(uri)
    if not (alias or numbered):
        immutable = uri.startswith("runs:/") or bool(_LOGGED_MODEL.match(uri))
        return uri, (uri if immutable else None)
    name, label, rest = (alias or numbered).groups()
    try:
        client = MlflowClient()
        found = client.get_model_version_by_alias(name, label) if alias else client.get_model_version(name, label)
    except Exception as error:
        what = f"alias '{label}'" if alias else f"version {label}"
        raise ModelNotAvailable(f"MLflow has no model '{name}' with {what} ({_first_line(error)})") from None
    pinned = f"models:/{name}/{found.version}{rest or ''}"
    return pinned, f"{pinned}\n{found.source}\n{found.creation_timestamp}"


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:300]


def download_mlflow_model(uri: str, *, cache_dir: str | Path | None = None) -> Path:
    """Download an MLflow model/run artifact folder once; immutable URIs are served from the cache."""
    import mlflow

    pinned, identity = _pin(uri)
    store = mlflow.get_tracking_uri()
    # Identities hold globally unique ids (run ids, logged-model ids in a version's source), so a
    # cached copy is shared across stores; a URI whose meaning may change is keyed by its store.
    key = hashlib.sha256((identity or f"{store}\n{pinned}").encode()).hexdigest()[:20]
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    target = root / "mlflow" / key
    if target.is_dir() and identity is not None:
        return target
    root.joinpath("mlflow").mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=root / "mlflow", prefix=".download-"))
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=pinned, dst_path=str(staging))
    except Exception as error:  # unknown run/version, unreachable store: one actionable line
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelNotAvailable(f"cannot download {uri} from MLflow at {store}: {_first_line(error)}") from None
    # Rename into place only when complete, so an interrupted download never looks cached.
    if target.exists():
        shutil.rmtree(target, ignore_errors=True)
    try:
        staging.rename(target)
    except OSError:  # a concurrent loader finished first: use its copy
        shutil.rmtree(staging, ignore_errors=True)
    return target


# ----------------------------------------------------------------------------- loading
def _torch_dtype(dtype: Any) -> Any:
    import torch

    if dtype is None or dtype == "auto":
        return "auto"
    if isinstance(dtype, str):
        resolved = getattr(torch, dtype.removeprefix("torch."), None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16' or 'auto'")
        return resolved
    return dtype


DEVICES = ("auto", "cpu", "cuda")


def choose_placement(device: str | None, dtype: Any = None, cuda_available: bool | None = None,
                     local_rank: int | None = None) -> tuple[str | None, Any]:
    """(device, dtype) to load a model for inference.

    device: None leaves the model where it loads (CPU); 'auto' is CUDA when present, else CPU; 'cuda'
    without a GPU is an error, not a silent CPU run. Under a multi-process launch (LOCAL_RANK) each
    process takes its own GPU. On a GPU an unset dtype becomes bfloat16 (what Qwen VL checkpoints
    are trained in); on CPU the checkpoint's own dtype is kept.
    """
    if device is None:
        return None, dtype
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
    if local_rank is None:
        local_rank = int(os.environ.get("LOCAL_RANK", "-1"))
    if device == "auto":
        device = "cuda" if cuda_available else "cpu"
    if device.startswith("cuda"):
        if not cuda_available:
            raise ModelNotAvailable(f"device {device!r} asked for, but torch sees no CUDA GPU (use --device auto or cpu)")
        if device == "cuda" and local_rank >= 0:
            device = f"cuda:{local_rank}"
        if dtype is None:
            dtype = "bfloat16"
    return device, dtype


def _adapter_base(adapter_dir: Path) -> str:
    """The adapter's base reference; a relative path is tried against the adapter folder, then as given."""
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    base = config.get("base_model_name_or_path")
    if not base:
        raise ModelNotAvailable(f"{adapter_dir}/adapter_config.json names no base_model_name_or_path")
    if is_mlflow_uri(base) or Path(base).is_absolute():
        return base
    beside = adapter_dir / base
    return str(beside) if beside.exists() else base


def _has_processor_files(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("processor_config.json", "preprocessor_config.json"))


def _from_pretrained(source: str | Path, dtype: Any, attn_implementation: str | None):
    """Weights from safetensors only (a pickle can run code on load), and no code from the checkpoint
    unless the user sets UNIVG_TRUST_REMOTE_CODE=1 for a model that needs it."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    if Path(source).is_dir() and not any(Path(source).glob("*.safetensors")):
        raise ModelNotAvailable(f"{source}: no *.safetensors weights; univg loads safetensors only "
                                "(convert pickled .bin weights with transformers' save_pretrained)")
    trust = os.environ.get("UNIVG_TRUST_REMOTE_CODE", "") == "1"
    kwargs = {"dtype": _torch_dtype(dtype), "use_safetensors": True, "trust_remote_code": trust}
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    processor = AutoProcessor.from_pretrained(source, trust_remote_code=trust)
    model = AutoModelForImageTextToText.from_pretrained(source, **kwargs)
    return model, processor


def _load(ref: str | Path, dtype, trainable: bool, cache_dir, attn_implementation, depth: int):
    text = str(ref)
    is_local = is_mlflow_uri(text) or Path(text).expanduser().exists()
    if not is_local and looks_like_hub_id(text):
        _check_hub_reachable(text)
        try:
            return _from_pretrained(text, dtype, attn_implementation)
        except (OSError, ValueError) as error:  # transformers wraps hub/network failures in OSError
            raise _hub_error(text, error) from None
    folder = resolve_model_path(ref, cache_dir=cache_dir)
    if not (folder / "adapter_config.json").is_file():
        return _from_pretrained(folder, dtype, attn_implementation)

    # --- a PEFT adapter: its base through this same loader, then the adapter on top
    if depth >= _MAX_ADAPTER_DEPTH:
        raise ModelNotAvailable(f"{folder}: adapters nested more than {_MAX_ADAPTER_DEPTH} deep")
    from peft import PeftModel

    base_model, processor = _load(_adapter_base(folder), dtype, False, cache_dir, attn_implementation, depth + 1)
    model = PeftModel.from_pretrained(base_model, folder, is_trainable=trainable)
    if not trainable:
        model = model.merge_and_unload()
    if _has_processor_files(folder):
        from transformers import AutoProcessor

        processor = AutoProcessor.from_pretrained(folder)
    return model, processor


def load_model_and_processor(
    ref: str | Path,
    *,
    dtype: Any = None,
    device: str | None = None,
    padding_side: str = "left",
    trainable: bool = False,
    max_pixels: int | None = None,
    cache_dir: str | Path | None = None,
    attn_implementation: str | None = None,
) -> tuple[Any, Any]:
    """Load (model, processor) from a folder, adapter folder, hub id or MLflow URI.

    dtype: None/'auto' keeps the checkpoint's dtype; 'float32', 'bfloat16' or a torch.dtype casts.
    device: None leaves the model on CPU, 'auto' picks CUDA when present (bf16), else any torch device
      (see choose_placement).
    trainable: keep a LoRA adapter unmerged and trainable and leave the model in train mode;
      otherwise adapters are merged and the model is put in eval mode.
    max_pixels: cap the processor's image area (the paper trains at 401408 = 512*28*28).
    Raises ModelNotAvailable with a one-line explanation when the reference cannot be resolved.
    """
    device, dtype = choose_placement(device, dtype)
    model, processor = _load(ref, dtype, trainable, cache_dir, attn_implementation, depth=0)
    tokenizer = getattr(processor, "tokenizer", processor)
    tokenizer.padding_side = padding_side
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if max_pixels is not None:
        set_max_pixels(processor, max_pixels)
    if device:
        model = model.to(device)
    model.train(trainable)
    return model, processor


def set_max_pixels(processor, max_pixels: int) -> None:
    """Cap the image area of the processor's image (and video) processor, keeping min <= max."""
    for name in ("image_processor", "video_processor"):
        sub = getattr(processor, name, None)
        if sub is None or not hasattr(sub, "size"):
            continue
        size = dict(sub.size)
        size["longest_edge"] = int(max_pixels)
        size["shortest_edge"] = min(int(size.get("shortest_edge") or 0), int(max_pixels))
        sub.size = size


# ----------------------------------------------------------------------------- generation
