"""Register the pipeline deployment (infra/prefect.yaml) and run a local Prefect stack.

  python flows/deploy.py register      # against PREFECT_API_URL: work pool + deployment
  python flows/deploy.py local         # a real local stack: server, pool, deployment, worker
                                       # (Ctrl-C stops everything it started)

infra/prefect.yaml is the single declaration of the deployment (schedule, pool, parameters);
this module only drives the `prefect` CLI, the same commands docs/operations.md shows.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

if __package__ in (None, ""):  # run as `python flows/deploy.py`: make `flows` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flows.steps import executable, tool_env  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PREFECT_FILE = Path("infra/prefect.yaml")
POOL_TYPE = "process"


class StackError(RuntimeError):
    """A server or CLI step that did not come up or failed; the message holds its output."""


def deployments(repo: Path = REPO, prefect_file: Path = PREFECT_FILE) -> list[dict[str, Any]]:
    return yaml.safe_load((Path(repo) / prefect_file).read_text())["deployments"]


def work_pool_name(repo: Path = REPO, prefect_file: Path = PREFECT_FILE) -> str:
    return deployments(repo, prefect_file)[0]["work_pool"]["name"]


# ----------------------------------------------------------------------------- processes
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, timeout: float = 90.0, process: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers 200; fail early if `process` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise StackError(f"process for {url} exited with {process.returncode} before answering")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise StackError(f"{url} did not answer within {timeout:.0f} s")


def spawn(args: list[str], env: dict[str, str], log: Path | None = None, cwd: Path | None = None) -> subprocess.Popen:
    """Start a process in its own session, so `stop` can end it with everything it started."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
    return subprocess.Popen(args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen | None, timeout: float = 15.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after `timeout`."""
    if process is None or process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def prefect_env(api_url: str, home: Path | None = None) -> dict[str, str]:
    env = tool_env()
    env["PREFECT_API_URL"] = api_url
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.setdefault("DO_NOT_TRACK", "1")
    if home is not None:
        env["PREFECT_HOME"] = str(home)
    return env


def start_server(
    home: Path, port: int, host: str = "127.0.0.1", timeout: float = 90.0, ui: bool = False
) -> tuple[subprocess.Popen, str]:
    """`prefect server start` on host:port with its database under `home`; returns (process, API URL)."""
    home.mkdir(parents=True, exist_ok=True)
    api_url = f"http://{host}:{port}/api"
    env = prefect_env(api_url, home)
    env.pop("PREFECT_API_URL")  # the server itself must not point at an API
    process = spawn([executable("prefect"), "server", "start", "--host", host, "--port", str(port),
                     "--ui" if ui else "--no-ui"], env, home / "server.log")
    try:
        wait_healthy(f"{api_url}/health", timeout, process)
    except StackError as error:
        stop(process)
        raise StackError(f"{error}\n{_tail(home / 'server.log')}") from None
    return process, api_url


def start_mlflow_server(
    root: Path, port: int, host: str = "127.0.0.1", timeout: float = 90.0
) -> tuple[subprocess.Popen, str]:
    """`mlflow server` with a sqlite backend and served artifacts under `root`; returns (process, URI)."""
    root.mkdir(parents=True, exist_ok=True)
    args = [executable("mlflow"), "server", "--host", host, "--port", str(port),
            "--backend-store-uri", f"sqlite:///{(root / 'mlflow.db').resolve()}",
            "--artifacts-destination", str((root / "artifacts").resolve()), "--workers", "1"]
    # No job runner: it serves GenAI features we do not use and starts half a dozen worker processes.
    env = tool_env() | {"MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = spawn(args, env, root / "mlflow.log")
    uri = f"http://{host}:{port}"
    try:
        wait_healthy(f"{uri}/health", timeout, process)
    except StackError as error:
        stop(process)
        raise StackError(f"{error}\n{_tail(root / 'mlflow.log')}") from None
    return process, uri


def start_worker(pool: str, env: dict[str, str], log: Path | None = None, cwd: Path | None = None) -> subprocess.Popen:
    return spawn([executable("prefect"), "worker", "start", "--pool", pool, "--type", POOL_TYPE,
                  "--install-policy", "never"], env, log, cwd)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 180.0) -> str:
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise StackError(f"{' '.join(args[1:])} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


# ----------------------------------------------------------------------------- registration
def register(repo: Path = REPO, env: dict[str, str] | None = None, prefect_file: Path = PREFECT_FILE) -> str:
    """Create the process work pool (if missing) and register every deployment of `prefect_file`.

    The flow runs will execute in `repo` (UNIVG_REPO). Returns the CLI output.
    """
    repo = Path(repo).resolve()
    env = dict(env or os.environ)
    env["UNIVG_REPO"] = str(repo)
    env.setdefault("PREFECT_API_URL", os.environ.get("PREFECT_API_URL", ""))
    if not env["PREFECT_API_URL"]:
        raise StackError("PREFECT_API_URL is not set: point it at a Prefect server (or use `local`)")
    pool = work_pool_name(repo, prefect_file)
    pools = _run([executable("prefect"), "--no-prompt", "work-pool", "ls"], env, repo)
    if pool not in pools:
        _run([executable("prefect"), "--no-prompt", "work-pool", "create", pool, "--type", POOL_TYPE], env, repo)
    return _run([executable("prefect"), "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file)], env, repo)


def local_stack(repo: Path = REPO, port: int = 4200, home: Path | None = None) -> None:
    """Server + pool + deployment + worker on this machine, until Ctrl-C."""
    home = Path(home or Path(repo) / ".prefect")

    def _interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt  # a service manager's SIGTERM stops the stack like Ctrl-C

    signal.signal(signal.SIGTERM, _interrupt)
    server, api_url = start_server(home, port, ui=True)
    worker = None
    try:
        env = prefect_env(api_url, home)
        print(register(repo, env))
        worker = start_worker(work_pool_name(repo), env, home / "worker.log", cwd=Path(repo))
        print(f"Prefect UI/API: {api_url.removesuffix('/api')}  (worker log: {home / 'worker.log'})")
        print("Trigger a run:  PREFECT_API_URL=" + api_url + " prefect deployment run univg-pipeline/nightly")
        while server.poll() is None and worker.poll() is None:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        stop(worker)
        stop(server)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("register", help="work pool + deployments, against PREFECT_API_URL")
    local = commands.add_parser("local", help="server + pool + deployments + worker, until Ctrl-C")
    local.add_argument("--port", type=int, default=4200)
    local.add_argument("--home", type=Path, default=None, help="PREFECT_HOME (default: <repo>/.prefect)")
    args = parser.parse_args(argv)
    try:
        if args.command == "register":
            print(register(REPO))
        else:
            local_stack(REPO, args.port, args.home)
    except StackError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
