"""The visual evaluation report: one static HTML page with PNGs beside it.

report/index.html shows the headline metrics, a per-task Acc@0.5 bar chart (per_task.png), an
IoU histogram (iou_hist.png) and a sample of records, each with all its images, the ground
truth box in green on the target image, the predicted box in red on the image the answer named
(the target image when it named none), and the model's reasoning. Drawing never fails on a bad
image: an unreadable one is shown as a grey placeholder.
"""

from __future__ import annotations

import html
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from univg.data.benchmarks import LoadedBenchmark
from univg.data.images import ImageError, ImagePolicy, open_rgb, resolve_images
from univg.eval.scoring import SampleScore
from univg.schema import norm_to_pixels

GT_COLOR = (0, 200, 0)
PRED_COLOR = (230, 0, 0)
DISPLAY_SIDE = 256  # small benchmark images are scaled up so boxes are visible
_THINK = re.compile(r"<think>(.*?)(?:</think>|$)", re.DOTALL)


# ----------------------------------------------------------------------------- charts
def _figure(width: float, height: float):
    # Figure + Agg canvas instead of pyplot: no global state, safe in threads and tests.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def plot_per_task(metrics: dict[str, Any], path: Path) -> Path:
    """Bar chart of per-task Acc@0.5 with the unweighted average as a dashed line."""
    tasks = list(metrics.get("per_task", {}))
    values = [metrics["per_task"][t]["acc@0.5"] for t in tasks]
    figure = _figure(max(4.0, 0.6 * len(tasks) + 2), 3.6)
    axes = figure.add_subplot()
    axes.bar(range(len(tasks)), values, color="#4c72b0")
    axes.axhline(metrics.get("avg", 0.0), color="#dd8452", linestyle="--", label=f"avg {metrics.get('avg', 0.0):.3f}")
    axes.set_xticks(range(len(tasks)), tasks, rotation=35, ha="right", fontsize=8)
    axes.set_ylim(0, 1)
    axes.set_ylabel("Acc@0.5")
    axes.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    return path


def plot_iou_histogram(scores: list[SampleScore], path: Path) -> Path:
    """Histogram of per-sample IoU (misses at 0), with the 0.5 threshold marked."""
    figure = _figure(5.0, 3.2)
    axes = figure.add_subplot()
    axes.hist([s.iou for s in scores], bins=20, range=(0.0, 1.0), color="#55a868")
    axes.axvline(0.5, color="black", linestyle=":", linewidth=1)
    axes.set_xlabel("IoU")
    axes.set_ylabel("samples")
    figure.tight_layout()
    figure.savefig(path)
    return path


# ----------------------------------------------------------------------------- samples
def pick_samples(scores: list[SampleScore], count: int) -> list[SampleScore]:
    """Up to `count` drawable samples, round-robin over tasks, hits and misses interleaved."""
    queues: dict[str, list[SampleScore]] = defaultdict(list)
    for task in sorted({s.task for s in scores if s.status != "quarantined"}):
        mine = [s for s in scores if s.task == task and s.status != "quarantined"]
        hits, misses = [s for s in mine if s.hit()], [s for s in mine if not s.hit()]
        queues[task] = [s for pair in zip(misses, hits, strict=False) for s in pair]
        queues[task] += misses[len(hits):] + hits[len(misses):]
    chosen: list[SampleScore] = []
    while len(chosen) < count and any(queues.values()):
        for task in list(queues):
            if queues[task] and len(chosen) < count:
                chosen.append(queues[task].pop(0))
    return sorted(chosen, key=lambda s: s.index)


def _placeholder(reason: str) -> Image.Image:
    image = Image.new("RGB", (DISPLAY_SIDE, DISPLAY_SIDE // 2), (150, 150, 150))
    ImageDraw.Draw(image).text((8, 8), reason[:40], fill=(0, 0, 0))
    return image


def _draw_box(image: Image.Image, box: list[float], size: tuple[int, int], color: tuple[int, int, int]) -> None:
    x1, y1, x2, y2 = norm_to_pixels(box, *size)
    ImageDraw.Draw(image).rectangle([x1, y1, max(x1, x2), max(y1, y2)], outline=color, width=3)


def draw_sample(score: SampleScore, record: dict[str, Any], base_dir: Path,
                policy: ImagePolicy = ImagePolicy()) -> list[Image.Image]:
    """The record's images, scaled for display, with GT (green) and prediction (red) drawn."""
    drawn = []
    paths = resolve_images(record["images"], base_dir, policy)
    pred_on = score.pred_image if score.pred_image and 1 <= score.pred_image <= len(paths) else record["target_image"]
    for k, path in enumerate(paths, start=1):
        try:
            image = open_rgb(path)
        except ImageError:
            drawn.append(_placeholder(f"unreadable: {path.name}"))
            continue
        scale = max(1.0, DISPLAY_SIDE / max(image.size))
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.BICUBIC)
        if k == record["target_image"] and score.gt_box:
            _draw_box(image, score.gt_box, image.size, GT_COLOR)
        if k == pred_on and score.pred_box:
            _draw_box(image, score.pred_box, image.size, PRED_COLOR)
        drawn.append(image)
    return drawn


def reasoning_text(response: str) -> str:
    found = _THINK.search(response or "")
    return (found.group(1) if found else response or "").strip()


# ----------------------------------------------------------------------------- page
_STYLE = """body{font-family:sans-serif;margin:24px;color:#222}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}.card{border:1px solid #ddd;margin:12px 0;padding:8px}
.card img{margin:2px;border:1px solid #eee;vertical-align:top}.hit{color:#080}.miss{color:#c00}
pre{white-space:pre-wrap;background:#f6f6f6;padding:6px;max-height:240px;overflow:auto}"""


def _metrics_table(metrics: dict[str, Any]) -> str:
    keys = ["acc@0.3", "acc@0.5", "acc@0.7", "miou"]
    head = "".join(f"<th>{k}</th>" for k in ["task", *keys, "n"])
    rows = [("all", metrics)] + list(metrics.get("per_task", {}).items())
    body = "".join(
        f"<tr><td style='text-align:left'>{html.escape(t)}</td>" + "".join(f"<td>{m[k]:.3f}</td>" for k in keys)
        + f"<td>{m['n']}</td></tr>" for t, m in rows
    )
    extras = ", ".join(f"{k} = {metrics[k]}" for k in ("avg", "index_acc", "parsed", "errors", "missing", "quarantined")
                       if k in metrics)
    intervals = ", ".join(f"{k} [{lo:.3f}, {hi:.3f}]" for k, (lo, hi) in (metrics.get("ci95") or {}).items())
    ci = f"<p>bootstrap 95% intervals: {html.escape(intervals)}</p>" if intervals else ""
    return f"<table><tr>{head}</tr>{body}</table><p>{html.escape(extras)}</p>{ci}"


def _card(score: SampleScore, record: dict[str, Any], image_names: list[str]) -> str:
    verdict = "hit" if score.hit() else "miss"
    images = "".join(f"<img src='{name}' alt='image {k}'>" for k, name in enumerate(image_names, start=1))
    named = f"Image-{score.pred_image}" if score.pred_image else "no image named"
    return (
        f"<div class='card'><b>#{score.index}</b> {html.escape(str(record['id']))} · {html.escape(str(score.task))} · "
        f"<span class='{verdict}'>{verdict}</span> · IoU {score.iou:.3f} (box IoU {score.box_iou:.3f}) · "
        f"status {score.status} · target Image-{record['target_image']}, answer {named}"
        f"<p>{html.escape(record['question'])}</p><div>{images}</div>"
        f"<p><b>Reasoning</b></p><pre>{html.escape(reasoning_text(score.response)) or '(none)'}</pre>"
        f"<details><summary>raw response</summary><pre>{html.escape(score.response)}</pre></details>"
        + (f"<p class='miss'>error: {html.escape(score.error)}</p>" if score.error else "")
        + "</div>"
    )


def write_report(out_dir: Path, benchmark: LoadedBenchmark, scores: list[SampleScore], metrics: dict[str, Any],
                 title: str = "univg evaluation", max_samples: int = 24) -> Path:
    """Write out_dir/index.html with its charts and sample images; returns the HTML path."""
    out_dir = Path(out_dir)
    (out_dir / "samples").mkdir(parents=True, exist_ok=True)
    plot_per_task(metrics, out_dir / "per_task.png")
    plot_iou_histogram(scores, out_dir / "iou_hist.png")
    records = {s.index: s.record for s in benchmark.samples}
    cards = []
    for score in pick_samples(scores, max_samples):
        names = []
        for k, image in enumerate(draw_sample(score, records[score.index], benchmark.base_dir, benchmark.policy), start=1):
            name = f"samples/{score.index:05d}_{k}.png"
            image.save(out_dir / name)
            names.append(name)
        cards.append(_card(score, records[score.index], names))
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
        f"<p>benchmark {html.escape(benchmark.name)} · {html.escape(str(benchmark.path))} · answer format "
        f"{html.escape(str(metrics.get('answer_format')))} · ground truth <span class='hit'>green</span>, "
        f"prediction <span class='miss'>red</span></p>{_metrics_table(metrics)}"
        "<h2>Per task</h2><img src='per_task.png' alt='per-task Acc@0.5'>"
        "<h2>IoU distribution</h2><img src='iou_hist.png' alt='IoU histogram'>"
        f"<h2>Samples ({len(cards)} of {len(scores)})</h2>{''.join(cards)}</body></html>"
    )
    (out_dir / "index.html").write_text(page, encoding="utf-8")
    return out_dir / "index.html"
