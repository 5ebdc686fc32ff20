"""A long run: constant churn, periodic faults, memory and invariants over time.

    python -m rx_informer.testing.soak --minutes 30 --report soak.json

Starts the local control plane with a TCP fault proxy in front of it, keeps ``--objects``
ConfigMaps alive while updating, deleting and recreating them at ``--rate`` writes per
second, and every ``--fault-every`` seconds injects one fault at random (a connection reset,
a half-open connection, a kube-apiserver restart, an etcd compaction). Every ``--sample``
seconds it pauses the churn, waits for the informer to converge, checks the invariant, and
prints one line: elapsed time, RSS, open file descriptors, threads, cached objects, syncs,
watches, failures. At the end it reports whether RSS grew with time (the object count is
constant, so it must not) and exits non-zero if any check failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx

from rx_informer.connection import Cluster
from rx_informer.informer.factory import InformerFactory
from rx_informer.protocol.backoff import Backoff
from rx_informer.protocol.transport import Timeouts
from rx_informer.testing.control_plane import ControlPlane
from rx_informer.testing.fault_proxy import FaultProxy
from rx_informer.testing.invariant import InvariantChecker, InvariantViolation

log = logging.getLogger(__name__)

NAMESPACE = "soak"
# A half-open connection must be noticed well within one sample. The churn writes several
# times a second, so a healthy watch is never quiet this long.
INACTIVITY = 10.0


@dataclass(frozen=True)
class Sample:
    seconds: float
    rss_mib: float
    open_fds: int
    threads: int
    objects: int
    syncs: int
    watches: int
    failures: int
    converged: bool


def write_kubeconfig_through(plane: ControlPlane, proxy: FaultProxy, path: Path) -> Path:
    """A copy of the plane's kubeconfig whose server is the proxy (TLS passes through)."""
    config = json.loads(Path(plane.kubeconfig_path).read_text())
    for cluster in config["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{proxy.port}"
    path.write_text(json.dumps(config))
    return path


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.sample is None:
        args.sample = min(60.0, args.minutes * 60 / 8)
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    rng = random.Random(args.seed)
    print(f"soak: seed {args.seed}, {args.minutes} min, {args.objects} objects, "
          f"{args.rate}/s writes, a fault every {args.fault_every} s", flush=True)

    with ControlPlane(progress=lambda m: print(f"soak: {m}", flush=True)) as plane:
        host, _, port = plane.server.removeprefix("https://").partition(":")
        with FaultProxy(host, int(port)) as proxy:
            samples, failures = _run(args, rng, plane, proxy)

    verdict = _verdict(samples, failures)
    print(verdict["summary"], flush=True)
    if args.report:
        report = {"args": vars(args), "samples": [asdict(s) for s in samples], **verdict}
        Path(args.report).write_text(json.dumps(report, indent=2))
    return 0 if verdict["ok"] else 1


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rx_informer.testing.soak",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--objects", type=int, default=300)
    parser.add_argument("--rate", type=float, default=20.0, help="writes per second")
    parser.add_argument("--fault-every", type=float, default=30.0)
    parser.add_argument("--sample", type=float, default=None,
                        help="seconds between samples (default: 60, or an eighth of the run)")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--report", help="write the samples and verdict as JSON here")
    return parser.parse_args(argv)


def _run(
    args: argparse.Namespace, rng: random.Random, plane: ControlPlane, proxy: FaultProxy
) -> tuple[list[Sample], list[str]]:
    directory = plane.directory
    cluster = Cluster.from_kubeconfig(str(write_kubeconfig_through(
        plane, proxy, directory / "through-proxy.kubeconfig")))
    api = httpx.Client(base_url=plane.server, verify=plane.ssl_context(), timeout=30)
    api.post("/api/v1/namespaces", json={"metadata": {"name": NAMESPACE}})
    churn = _Churn(api, args.objects, args.rate, rng)
    churn.fill()

    factory = InformerFactory(cluster, timeouts=Timeouts(inactivity=INACTIVITY),
                              backoff=Backoff(initial=0.5, cap=5.0))
    informer = factory.informer("v1", "configmaps", NAMESPACE)
    checker = InvariantChecker(informer, cluster).start()
    faults = _Faults(plane, proxy, rng)

    samples: list[Sample] = []
    failures: list[str] = []
    started = time.monotonic()
    next_fault = started + args.fault_every
    next_sample = started + min(args.sample, 10.0)
    churn.start()
    try:
        while (now := time.monotonic()) < started + args.minutes * 60:
            if now >= next_fault:
                faults.inject_one()
                next_fault = now + args.fault_every
            if now >= next_sample:
                samples.append(_sample(now - started, informer, checker, churn, failures))
                print(_line(samples[-1]), flush=True)
                next_sample = time.monotonic() + args.sample
            time.sleep(0.2)
    finally:
        churn.stop()
        checker.dispose()
        factory.close()
        cluster.close()
        api.close()
    print(f"soak: faults injected: {faults.counts}", flush=True)
    return samples, failures


def _sample(
    elapsed: float, informer: Any, checker: InvariantChecker, churn: _Churn, failures: list[str]
) -> Sample:
    churn.pause()
    converged = True
    try:
        # One inactivity timeout plus the longest backoff: the bound the invariant promises.
        checker.wait_converged(INACTIVITY + 5.0 + 10.0)
    except InvariantViolation as violation:
        converged = False
        failures.append(f"at {elapsed:.0f} s: {violation}")
    finally:
        churn.resume()

    stats = informer.statistics()
    return Sample(round(elapsed, 1), _rss_mib(), _open_fds(), threading.active_count(),
                  len(informer.store), stats.syncs, stats.watches, stats.failures, converged)


def _line(sample: Sample) -> str:
    state = "ok" if sample.converged else "VIOLATION"
    return (f"soak: {sample.seconds:7.0f} s  rss {sample.rss_mib:6.1f} MiB  "
            f"fds {sample.open_fds:3d}  threads {sample.threads:2d}  "
            f"objects {sample.objects:4d}  syncs {sample.syncs:3d}  "
            f"watches {sample.watches:4d}  failures {sample.failures:4d}  {state}")


def _verdict(samples: list[Sample], failures: list[str]) -> dict[str, Any]:
    """Judge memory by the second half: the first includes warm-up (imports, first list)."""
    later = samples[len(samples) // 2:]
    growth = later[-1].rss_mib - later[0].rss_mib if len(later) >= 2 else 0.0
    # Allocator noise on a steady heap is a few MiB; a leak grows with every relist.
    grows = growth > 8.0
    judged = len(samples) >= 4
    ok = not failures and not grows and bool(samples)
    memory = (f"RSS change over the second half {growth:+.1f} MiB" if judged
              else "too few samples to judge memory")
    summary = (f"soak: {len(samples)} samples, {len(failures)} invariant violations, "
               f"{memory} -> {'PASS' if ok else 'FAIL'}")
    return {"ok": ok, "failures": failures, "rss_growth_second_half_mib": growth,
            "summary": summary}


class _Churn:
    """Keeps a constant number of ConfigMaps while updating, deleting and recreating them."""

    def __init__(self, api: httpx.Client, objects: int, rate: float, rng: random.Random) -> None:
        self._api = api
        self._names = [f"cm-{index:05d}" for index in range(objects)]
        self._interval = 1.0 / rate
        self._rng = rng
        self._running = threading.Event()
        self._stopped = threading.Event()
        self._idle = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="soak-churn", daemon=True)

    def fill(self) -> None:
        for name in self._names:
            self._write("POST", "", {"metadata": {"name": name}, "data": {"v": "0"}})

    def start(self) -> None:
        self._running.set()
        self._thread.start()

    def pause(self) -> None:
        self._running.clear()
        self._idle.wait(30)

    def resume(self) -> None:
        self._running.set()

    def stop(self) -> None:
        self._stopped.set()
        self._running.set()
        self._thread.join(30)

    def _loop(self) -> None:
        while not self._stopped.is_set():
            if not self._running.is_set():
                self._idle.set()
                self._running.wait()
                continue
            self._idle.clear()
            self._one_change()
            time.sleep(self._interval)
        self._idle.set()

    def _one_change(self) -> None:
        name = self._rng.choice(self._names)
        if self._rng.random() < 0.8:
            patch = {"data": {"v": str(self._rng.random())}}
            self._write("PATCH", f"/{name}", patch)
        else:
            self._write("DELETE", f"/{name}", None)
            self._write("POST", "", {"metadata": {"name": name}, "data": {"v": "new"}})

    def _write(self, method: str, suffix: str, body: dict[str, Any] | None) -> None:
        headers = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else {}
        url = f"/api/v1/namespaces/{NAMESPACE}/configmaps{suffix}"
        try:
            self._api.request(method, url, json=body, headers=headers)
        except httpx.HTTPError as exc:  # the apiserver may be restarting: skip this change
            log.debug("churn write failed: %s", exc)


class _Faults:
    """Injects one fault at a time and heals it before returning."""

    def __init__(self, plane: ControlPlane, proxy: FaultProxy, rng: random.Random) -> None:
        self._rng = rng
        self.counts: dict[str, int] = {}
        self._kinds: dict[str, Callable[[], object]] = {
            "reset": proxy.reset,
            "half-open": lambda: self._half_open(proxy),
            "apiserver-restart": plane.restart_apiserver,
            "compaction": plane.compact,
        }

    def inject_one(self) -> None:
        kind = self._rng.choice(sorted(self._kinds))
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self._kinds[kind]()

    @staticmethod
    def _half_open(proxy: FaultProxy) -> None:
        proxy.blackhole(True)
        time.sleep(INACTIVITY + 2.0)  # long enough for the informer to notice
        proxy.blackhole(False)
        proxy.reset()


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


if __name__ == "__main__":
    sys.exit(main())
