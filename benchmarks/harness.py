"""Processes: the replay server, the contenders' drivers, and building what they need.

Each driver runs in its own process and reports its own readings (see `benchmarks.drivers`);
the harness adds what only a parent can see, the child's rusage from `wait4` (CPU seconds and
peak RSS of the whole life, start-up included).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
CLIENTGO_DIR = BENCH_DIR / "clientgo"
CLIENTGO_BINARY = CLIENTGO_DIR / "clientgo-driver"
NODE_DIR = BENCH_DIR / "node"

#: Seconds the server may take to build its bytes; 50k pods and 200k events take ~30 s here.
SERVER_START_TIMEOUT = 300.0


@dataclasses.dataclass(frozen=True)
class Contender:
    """A library under test and how to start its driver."""

    name: str
    command: tuple[str, ...]
    #: Why it cannot run here, found before any run; None when it can.
    unavailable: str | None = None


def _python_driver(module: str) -> tuple[str, ...]:
    return (sys.executable, "-m", f"benchmarks.drivers.{module}")


def _newer_than(target: Path, sources: list[Path]) -> bool:
    return target.exists() and all(target.stat().st_mtime >= s.stat().st_mtime for s in sources)


def prepare_clientgo() -> str | None:
    """Build the Go driver if it is missing or stale; return why not, or None."""
    sources = [CLIENTGO_DIR / "main.go", CLIENTGO_DIR / "go.mod", CLIENTGO_DIR / "go.sum"]
    if _newer_than(CLIENTGO_BINARY, sources):
        return None
    if shutil.which("go") is None:
        return "no go command on PATH"

    logger.info("building the client-go driver (the first build takes minutes)")
    env = {**os.environ, "GOTOOLCHAIN": os.environ.get("GOTOOLCHAIN", "local")}
    built = subprocess.run(
        ["go", "build", "-o", str(CLIENTGO_BINARY), "."], cwd=CLIENTGO_DIR, env=env,
        capture_output=True, text=True, check=False,
    )
    if built.returncode != 0:
        return f"go build failed: {built.stderr.strip()[-500:]}"
    return None


def prepare_node() -> str | None:
    """Install the Node.js driver's locked dependencies if missing; return why not, or None."""
    if shutil.which("node") is None:
        return "no node command on PATH"
    if (NODE_DIR / "node_modules" / "@kubernetes" / "client-node").is_dir():
        return None
    if shutil.which("npm") is None:
        return "no npm command on PATH"

    logger.info("installing the Node.js driver's dependencies (npm ci)")
    installed = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, capture_output=True, text=True,
        check=False,
    )
    if installed.returncode != 0:
        return f"npm ci failed: {installed.stderr.strip()[-500:]}"
    return None


def contenders() -> dict[str, Contender]:
    """Every contender, in table order, the floor first."""
    go_problem = prepare_clientgo()
    node_problem = prepare_node()
    return {
        "floor": Contender("floor", _python_driver("floor")),
        "rx_informer": Contender("rx_informer", _python_driver("rx_informer_driver")),
        "kubernetes": Contender("kubernetes", _python_driver("kubernetes_client")),
        "cloudcoil": Contender("cloudcoil", _python_driver("cloudcoil_driver")),
        "client-go": Contender("client-go", (str(CLIENTGO_BINARY),), go_problem),
        "client-node": Contender(
            "client-node", ("node", "--expose-gc", str(NODE_DIR / "driver.mjs")), node_problem,
        ),
    }


def child_env() -> dict[str, str]:
    """The drivers import `benchmarks` and `rx_informer` from the repository root."""
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), path]))}


class ReplayServer:
    """The replay server in its own process, for the life of a `with` block."""

    def __init__(self, pods: int, events: int, seed: int, watch_end: str = "hold") -> None:
        self.args = ["--pods", str(pods), "--events", str(events), "--seed", str(seed),
                     "--watch-end", watch_end]
        self.process: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}

    def __enter__(self) -> ReplayServer:
        command = [sys.executable, "-m", "benchmarks.replay_server", *self.args]
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=child_env(), stdout=subprocess.PIPE,
            start_new_session=True,
        )
        line = _read_line(self.process, SERVER_START_TIMEOUT)
        if not line:
            self.__exit__()
            raise RuntimeError(f"the replay server did not start: {' '.join(command)}")
        self.info = json.loads(line)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.process is not None:
            _kill_group(self.process)
            self.process.wait()
            self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.info['port']}"

    def stats(self, reset: bool = False) -> dict[str, Any]:
        query = "?reset=1" if reset else ""
        with urllib.request.urlopen(f"{self.url}/stats{query}", timeout=10) as response:
            stats: dict[str, Any] = json.loads(response.read())
        return stats


def _read_line(process: subprocess.Popen[bytes], timeout: float) -> bytes:
    assert process.stdout is not None
    timer = threading.Timer(timeout, _kill_group, args=(process,))
    timer.start()
    try:
        return process.stdout.readline()
    finally:
        timer.cancel()


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def run_driver(contender: Contender, args: list[str], timeout: float,
               log_path: Path) -> dict[str, Any]:
    """Run one driver to completion; its JSON line plus the parent's rusage of it."""
    if contender.unavailable:
        return {"unavailable": contender.unavailable}
    log_path.parent.mkdir(parents=True, exist_ok=True)

    with open(log_path, "wb") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            [*contender.command, *args], cwd=REPO_ROOT, env=child_env(),
            stdout=subprocess.PIPE, stderr=log, start_new_session=True,
        )
        killer = threading.Timer(timeout, _kill_group, args=(process,))
        killer.start()
        assert process.stdout is not None
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        killer.cancel()
        # A driver may leave helpers behind in its group (node, go); they go with it.
        _kill_group(process)

    return _parse_result(output, process.returncode, usage,
                         wall=time.perf_counter() - started, timeout=timeout, log_path=log_path)


def _parse_result(output: bytes, returncode: int, usage: Any, *, wall: float, timeout: float,
                  log_path: Path) -> dict[str, Any]:
    lines = [line for line in output.decode(errors="replace").splitlines() if line.strip()]
    result: dict[str, Any] = {}
    if lines:
        try:
            result = json.loads(lines[-1])
        except json.JSONDecodeError:
            result = {"error": f"not a JSON line: {lines[-1][:200]}"}
    if not result:
        reason = "killed after the timeout" if wall >= timeout else f"exit code {returncode}"
        tail = log_path.read_text(errors="replace")[-400:] if log_path.exists() else ""
        result = {"error": f"no result ({reason}); stderr tail: {tail}"}

    result["child_cpu_s"] = usage.ru_utime + usage.ru_stime
    result["child_maxrss_kb"] = usage.ru_maxrss
    result["child_wall_s"] = wall
    return result
