"""What the Python drivers share: arguments, clocks, memory readings and the result line."""

from __future__ import annotations

import dataclasses
import gc
import itertools
import json
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

#: Name of the transform option that drops metadata.managedFields before caching.
DROP_MANAGED_FIELDS = "drop-managed-fields"


@dataclasses.dataclass
class Args:
    """The driver protocol's arguments (see the package docstring)."""

    server: str
    events: int
    mode: str
    pods: int = 0
    subscribers: int = 1
    idle: float = 0.0
    transform: str = "none"
    tries: int = 100
    settle: float = 0.5
    cache: int = 0
    timeout: float = 600.0

    @property
    def is_url(self) -> bool:
        return self.server.startswith(("http://", "https://"))


def parse_args(argv: list[str] | None = None) -> Args:
    argv = sys.argv[1:] if argv is None else argv
    args = Args(server=argv[0], events=int(argv[1]), mode=argv[2])
    for option in argv[3:]:
        name, _, value = option.partition("=")
        kind = type(getattr(args, name))
        setattr(args, name, kind(value))
    return args


def emit(result: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def proc_status_kb(field: str) -> int:
    """A memory line of /proc/self/status (VmRSS, VmHWM), in kB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def write_kubeconfig(server: str) -> str:
    """A kubeconfig for the replay server: plain HTTP, a token nobody checks."""
    text = (
        "apiVersion: v1\nkind: Config\ncurrent-context: replay\n"
        f"clusters:\n- name: replay\n  cluster:\n    server: {server}\n"
        "users:\n- name: bench\n  user:\n    token: replay-token\n"
        "contexts:\n- name: replay\n  context:\n    cluster: replay\n    user: bench\n"
        "    namespace: default\n"
    )
    handle, path = tempfile.mkstemp(prefix="replay-", suffix=".kubeconfig")
    with os.fdopen(handle, "w") as file:
        file.write(text)
    return path


def drop_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """The transform: the object without metadata.managedFields, changed in place."""
    obj.get("metadata", {}).pop("managedFields", None)
    return obj


class Recorder:
    """Timestamps and readings of one driver run, fed from library callbacks.

    Callbacks may run on a library's thread; `threading.Event` hands the moments over to the
    main thread, and `itertools.count` counts without a lock (its `next` is atomic).
    """

    def __init__(self, args: Args, contender: str, version: str) -> None:
        self.args = args
        self.result: dict[str, Any] = {"contender": contender, "version": version}
        self.synced = threading.Event()
        self.done = threading.Event()
        self.target = args.events * max(1, args.subscribers if args.mode == "share" else 1)
        self._counter = itertools.count(1)
        self.t_start = 0.0
        self.t_synced = 0.0
        self.t_done = 0.0
        self.cpu_start = 0.0
        self.cpu_synced = 0.0
        self.error: str | None = None

    def start(self) -> None:
        gc.collect()
        self.result["rss_start_kb"] = proc_status_kb("VmRSS")
        self.cpu_start = cpu_seconds()
        self.t_start = time.perf_counter()

    def mark_synced(self) -> None:
        if not self.synced.is_set():
            self.t_synced = time.perf_counter()
            self.cpu_synced = cpu_seconds()
            self.synced.set()
            if self.target == 0:
                self.t_done = self.t_synced
                self.done.set()

    def count_event(self) -> None:
        if next(self._counter) == self.target:
            self.t_done = time.perf_counter()
            self.done.set()

    def fail(self, message: str) -> None:
        # Stopping a library often ends its stream with an error; only earlier ones count.
        if self.done.is_set():
            return
        self.error = self.error or message
        self.synced.set()
        self.done.set()

    def wait(self, objects: Callable[[], int]) -> bool:
        """Wait for sync and the events; False (with `error` set) when either did not come.

        `objects` is called once synced and returns how many objects the cache holds.
        """
        if not self.synced.wait(self.args.timeout) or self.error:
            self.error = self.error or "not synced before the timeout"
            return False
        self.after_synced(objects())

        if not self.done.wait(self.args.timeout) or self.error:
            self.error = self.error or "events did not all arrive before the timeout"
            return False
        self.after_done()
        return True

    def after_synced(self, objects: int) -> None:
        """Readings at sync; with no events to come, memory kept once garbage is collected."""
        if self.args.events == 0:
            time.sleep(self.args.settle)
            gc.collect()
        self.result["rss_synced_kb"] = proc_status_kb("VmRSS")
        self.result["objects"] = objects

    def after_done(self) -> None:
        cpu_done = cpu_seconds()
        self.result.update(
            synced_s=self.t_synced - self.t_start,
            events_s=self.t_done - self.t_synced,
            events_seen=self.target,
            cpu_sync_s=self.cpu_synced - self.cpu_start,
            cpu_events_s=cpu_done - self.cpu_synced,
        )
        self._idle()

    def _idle(self) -> None:
        if self.args.idle <= 0:
            return
        cpu_before = cpu_seconds()
        time.sleep(self.args.idle)
        self.result["cpu_idle_s"] = cpu_seconds() - cpu_before
        self.result["idle_s"] = self.args.idle

    def finish(self) -> None:
        self.result["rss_end_kb"] = proc_status_kb("VmRSS")
        self.result["hwm_kb"] = proc_status_kb("VmHWM")
        if self.error:
            self.result["error"] = self.error
        emit(self.result)
