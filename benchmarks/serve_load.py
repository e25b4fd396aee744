"""Serving under load: requests/s and p95 latency at 1, 8 and 32 concurrent clients, with and
without batching, then a soak of 64 clients against a short queue (target: batching >= 3x
requests/s at 32 clients; the soak answers only 200 or the intended 503, and memory stays flat).

Each configuration runs `univg serve` as its own process on loopback; clients are threads posting
/v1/ground with a small image each. Without --model, a tiny random Qwen2-VL (the test size) is
built first, so the figure is the server's overhead and batching, not a model's speed.

    python benchmarks/serve_load.py                    # 20 s per point, 30 s soak
    python benchmarks/serve_load.py --quick            # 5 s per point, 10 s soak
    python benchmarks/serve_load.py --model models/grpo/final --out serve.json
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from PIL import Image

from univg.predict import encode_png


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tiny_model(folder: Path) -> Path:
    from univg.answers import format_completion, instruction_text
    from univg.config import ModelConfig
    from univg.models.tiny import build_tiny_model

    corpus = [instruction_text(f"Find the red circle in image {k}.") for k in range(1, 4)]
    corpus += [format_completion(f"Image {k} shows it.", [100, 100, 300, 300], k) for k in range(1, 4)]
    sizes = dict(vocab_size=400, hidden_size=64, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=128,
                 vision_depth=1, vision_embed_dim=32, vision_heads=2, min_pixels=56 * 56, max_pixels=112 * 112)
    build_tiny_model(ModelConfig(**sizes), corpus * 20, folder)
    return folder


class Server:
    def __init__(self, model: Path, max_batch: int, window_ms: float, max_queue: int, max_new_tokens: int):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "univg.cli", "serve", "--model", str(model), "--port", str(self.port),
                   "--max-batch", str(max_batch), "--batch-window-ms", str(window_ms), "--max-queue", str(max_queue),
                   "--max-new-tokens", str(max_new_tokens)]
        env = {k: v for k, v in os.environ.items() if k != "UNIVG_API_KEY"}
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.3)
        raise RuntimeError("server did not come up")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def load(url: str, clients: int, seconds: float, body: dict) -> dict:
    """`clients` threads posting back to back for `seconds`; latencies of the 200s, status counts."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client() -> None:
        with httpx.Client(timeout=120) as http:
            while time.monotonic() < stop:
                started = time.perf_counter()
                try:
                    status = http.post(f"{url}/v1/ground", json=body).status_code
                except httpx.HTTPError:
                    status = -1
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == 200:
                        latencies.append(time.perf_counter() - started)
                if status == 503:
                    time.sleep(0.05)  # as a client honouring Retry-After would, a little sooner

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    ordered = sorted(latencies)
    return {"clients": clients, "requests_per_s": round(len(latencies) / elapsed, 2),
            "p50_s": round(statistics.median(ordered), 4) if ordered else None,
            "p95_s": round(ordered[int(0.95 * (len(ordered) - 1))], 4) if ordered else None,
            "statuses": {str(k): v for k, v in sorted(statuses.items())}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="model folder (default: a tiny random one)")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per load point")
    parser.add_argument("--soak-seconds", type=float, default=30.0)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--quick", action="store_true", help="5 s per point, 10 s soak")
    parser.add_argument("--out", type=Path, help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.soak_seconds = 5.0, 10.0

    with tempfile.TemporaryDirectory() as scratch:
        model = args.model or tiny_model(Path(scratch) / "tiny")
        body = {"images": [encode_png(Image.new("RGB", (112, 112), (220, 30, 30)))], "question": "Find the red circle."}
        results: dict = {"max_new_tokens": args.max_new_tokens, "seconds_per_point": args.seconds}
        for name, batch, window in (("batched", 16, 2.0), ("unbatched", 1, 0.0)):
            server = Server(model, batch, window, max_queue=256, max_new_tokens=args.max_new_tokens)
            try:
                load(server.url, 4, 2.0, body)  # warm-up
                results[name] = [load(server.url, clients, args.seconds, body) for clients in (1, 8, 32)]
            finally:
                server.stop()
        server = Server(model, 16, 2.0, max_queue=32, max_new_tokens=args.max_new_tokens)
        try:
            rss_before = server.rss_mb()
            soak = load(server.url, 64, args.soak_seconds, body)
            soak["rss_mb_before"], soak["rss_mb_after"] = round(rss_before, 1), round(server.rss_mb(), 1)
            results["soak_64_clients"] = soak
        finally:
            server.stop()

    print("| clients | batched req/s | p95 s | unbatched req/s | p95 s | ratio |")
    print("|---|---|---|---|---|---|")
    for batched, single in zip(results["batched"], results["unbatched"], strict=True):
        ratio = batched["requests_per_s"] / single["requests_per_s"] if single["requests_per_s"] else float("nan")
        print(f"| {batched['clients']} | {batched['requests_per_s']} | {batched['p95_s']} | "
              f"{single['requests_per_s']} | {single['p95_s']} | {ratio:.2f}x |")
    soak = results["soak_64_clients"]
    unexpected = {k: v for k, v in soak["statuses"].items() if k not in ("200", "503")}
    print(f"soak, 64 clients, queue 32, {args.soak_seconds:.0f} s: statuses {soak['statuses']} "
          f"(unexpected: {unexpected or 'none'}), RSS {soak['rss_mb_before']} -> {soak['rss_mb_after']} MB")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
