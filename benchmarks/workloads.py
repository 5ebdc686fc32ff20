"""The workloads: which servers to start, which drivers to run, in what order.

Every workload runs its contenders round-robin inside each run (run 1: floor, A, B, ...;
run 2: floor, A, B, ...), so a ratio pairs a contender with the floor measured moments
apart on the same busy machine. The raw results keep that pairing: `cases[label][run]`.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import harness

logger = logging.getLogger(__name__)

LIBRARIES = ("rx_informer", "kubernetes", "cloudcoil", "client-go", "client-node")
DROP = "transform=drop-managed-fields"


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How big each workload is; `QUICK` finishes in about two minutes here."""

    runs: int
    sync_pods: tuple[int, ...]
    watch_pods: int
    watch_events: int
    share_pods: int
    share_events: int
    share_subscribers: tuple[int, ...]
    #: Connection counts do not vary from run to run; fewer runs do.
    share_runs: int
    dispose_pods: int
    dispose_tries: int
    idle_pods: int
    idle_seconds: float
    idle_runs: int
    real_pods: int
    timeout: float


FULL = Sizes(runs=5, sync_pods=(10_000, 50_000), watch_pods=1_000, watch_events=200_000,
             share_pods=1_000, share_events=5_000, share_subscribers=(1, 10, 100),
             share_runs=3, dispose_pods=10, dispose_tries=100, idle_pods=1_000,
             idle_seconds=60.0, idle_runs=2,
             real_pods=50_000, timeout=1_200.0)
QUICK = Sizes(runs=3, sync_pods=(2_000,), watch_pods=300, watch_events=3_000,
              share_pods=300, share_events=1_000, share_subscribers=(1, 10, 100),
              share_runs=1, dispose_pods=10, dispose_tries=100, idle_pods=300,
              idle_seconds=10.0, idle_runs=1,
              real_pods=1_000, timeout=300.0)


@dataclasses.dataclass(frozen=True)
class Case:
    """One contender in one configuration: a row of a table."""

    label: str
    contender: str
    mode: str = "run"
    options: tuple[str, ...] = ()


@dataclasses.dataclass
class Context:
    """What every workload needs: the contenders, sizes, seed, where logs go."""

    contenders: dict[str, harness.Contender]
    sizes: Sizes
    seed: int
    log_dir: Path
    only: frozenset[str] | None = None

    def wanted(self, case: Case) -> bool:
        return self.only is None or case.contender in self.only or case.contender == "floor"


def progress(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _describe(result: dict[str, Any]) -> str:
    if "unavailable" in result:
        return f"unavailable ({result['unavailable'][:80]})"
    if "error" in result:
        return f"error ({str(result['error'])[:120]})"
    parts = []
    if "synced_s" in result:
        parts.append(f"synced {result['synced_s']:.3f} s")
    if result.get("events_seen"):
        parts.append(f"{result['events_seen']} events {result['events_s']:.3f} s")
    if "cpu_idle_s" in result:
        parts.append(f"idle CPU {result['cpu_idle_s']:.3f} s")
    if "dispose_latencies_s" in result:
        parts.append(f"{len(result['dispose_latencies_s'])} disposes timed")
    return ", ".join(parts) or "done"


def _run_case(ctx: Context, title: str, case: Case, server: harness.ReplayServer, *,
              events: int, run: int, runs: int) -> dict[str, Any]:
    args = [server.url, str(events), case.mode, f"pods={server.info['pods']}",
            f"timeout={ctx.sizes.timeout}", *case.options]
    log = ctx.log_dir / title.replace(" ", "_") / f"{case.label}-{run}.log"
    server.stats(reset=True)
    result = harness.run_driver(ctx.contenders[case.contender], args,
                                ctx.sizes.timeout + 60, log)
    stats = server.stats()
    counters = ("api_total", "watch_total", "list_requests", "streaming_lists_refused")
    result["server"] = {key: stats[key] for key in counters}
    progress(f"[{title}] run {run + 1}/{runs} {case.label}: {_describe(result)}")
    return result


def _round_robin(ctx: Context, title: str, cases: list[Case], server: harness.ReplayServer, *,
                 events: int, runs: int) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {case.label: [] for case in cases}
    for run in range(runs):
        for case in cases:
            results[case.label].append(
                _run_case(ctx, title, case, server, events=events, run=run, runs=runs)
            )
    return results


def _basic_cases() -> list[Case]:
    return [Case("floor", "floor")] + [Case(name, name) for name in LIBRARIES]


def _server(ctx: Context, pods: int, events: int) -> harness.ReplayServer:
    progress(f"starting the replay server: {pods} pods, {events} events")
    return harness.ReplayServer(pods, events, ctx.seed)


def sync(ctx: Context) -> dict[str, Any]:
    """Initial sync at each size; the largest also yields the memory figures."""
    sizes: dict[str, Any] = {}
    largest = max(ctx.sizes.sync_pods)
    for pods in ctx.sizes.sync_pods:
        cases = _basic_cases()
        if pods == largest:
            cases += [
                Case("floor (dict cache)", "floor", options=("cache=1",)),
                Case("floor (dict cache) (transform)", "floor", options=("cache=1", DROP)),
                Case("rx_informer (transform)", "rx_informer", options=(DROP,)),
                Case("client-go (transform)", "client-go", options=(DROP,)),
            ]
        cases = [case for case in cases if ctx.wanted(case)]
        with _server(ctx, pods, 0) as server:
            cases_run = _round_robin(ctx, f"sync {pods} pods", cases, server, events=0,
                                     runs=ctx.sizes.runs)
            sizes[str(pods)] = {"json_bytes_per_pod": server.info["json_bytes_per_pod"],
                                "cases": cases_run}
    return {"largest": largest, "sizes": sizes}


def watch(ctx: Context) -> dict[str, Any]:
    """Consume a burst of MODIFIED events after a small initial list."""
    cases = [case for case in _basic_cases() if ctx.wanted(case)]
    events = ctx.sizes.watch_events
    with _server(ctx, ctx.sizes.watch_pods, events) as server:
        title = f"watch {events} events"
        results = _round_robin(ctx, title, cases, server, events=events, runs=ctx.sizes.runs)
    return {"pods": ctx.sizes.watch_pods, "events": events, "cases": results}


def share(ctx: Context) -> dict[str, Any]:
    """1, 10, 100 subscribers of one resource: connections the server sees, and memory."""
    events = ctx.sizes.share_events
    runs = ctx.sizes.share_runs
    by_count: dict[str, Any] = {}
    with _server(ctx, ctx.sizes.share_pods, events) as server:
        for count in ctx.sizes.share_subscribers:
            cases = [Case(name, name, "share", (f"subscribers={count}",))
                     for name in ("rx_informer", "client-go")]
            cases = [case for case in cases if ctx.wanted(case)]
            title = f"share {count} subscribers"
            by_count[str(count)] = _round_robin(ctx, title, cases, server, events=events,
                                                runs=runs)
    return {"pods": ctx.sizes.share_pods, "events": events, "subscribers": by_count}


def dispose(ctx: Context) -> dict[str, Any]:
    """rx_informer: from the last dispose() to the server seeing the watch socket close."""
    case = Case("rx_informer", "rx_informer", "dispose", (f"tries={ctx.sizes.dispose_tries}",))
    if not ctx.wanted(case):
        return {}
    with _server(ctx, ctx.sizes.dispose_pods, 0) as server:
        result = _run_case(ctx, "dispose", case, server, events=0, run=0, runs=1)
    return {"tries": ctx.sizes.dispose_tries, "result": result}


def idle(ctx: Context) -> dict[str, Any]:
    """CPU while synced and idle. Contenders idle side by side: idle, they do not compete."""
    cases = [case for case in _basic_cases() if ctx.wanted(case)]
    runs = ctx.sizes.idle_runs
    seconds = ctx.sizes.idle_seconds
    results: dict[str, list[dict[str, Any]]] = {case.label: [] for case in cases}
    with _server(ctx, ctx.sizes.idle_pods, 0) as server:
        for run in range(runs):

            def one(case: Case, run: int = run) -> None:
                result = _run_idle(ctx, case, server, run=run, runs=runs, seconds=seconds)
                results[case.label].append(result)

            _in_parallel([functools.partial(one, case) for case in cases])
    return {"pods": ctx.sizes.idle_pods, "seconds": seconds, "cases": results}


def _run_idle(ctx: Context, case: Case, server: harness.ReplayServer, *, run: int, runs: int,
              seconds: float) -> dict[str, Any]:
    args = [server.url, "0", "run", f"pods={server.info['pods']}", f"idle={seconds}",
            "settle=0", f"timeout={ctx.sizes.timeout}"]
    log = ctx.log_dir / "idle" / f"{case.label}-{run}.log"
    result = harness.run_driver(ctx.contenders[case.contender], args,
                                ctx.sizes.timeout + seconds + 60, log)
    progress(f"[idle {seconds:g} s] run {run + 1}/{runs} {case.label}: {_describe(result)}")
    return result


def _in_parallel(calls: list[Callable[[], None]]) -> None:
    threads = [threading.Thread(target=call) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


WORKLOADS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "sync": sync, "watch": watch, "share": share, "dispose": dispose, "idle": idle,
}
