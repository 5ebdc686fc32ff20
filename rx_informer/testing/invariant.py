"""Check that an informer told the truth: nothing lost, nothing invented.

Subscribe an ``InvariantChecker`` to an informer before any fault, let the faults happen, then
call ``wait_converged()``. It holds when, within the deadline:

1. the informer's snapshot equals a fresh consistent list from the server (same keys, uids
   and resourceVersions);
2. replaying every event the checker received, from empty, reproduces that snapshot;
3. no ADDED or MODIFIED came for an object whose resourceVersion had not changed (resyncs
   aside), no DELETED for an object not present, no ADDED for one already present;
4. the checker was never called concurrently, nor after it was disposed.

Rules 3 and 4 are checked as events arrive; the first violation is kept and reported.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field

import httpx
import orjson
from reactivex import abc

from rx_informer.connection import Cluster, ResourceRef
from rx_informer.informer.informer import Informer
from rx_informer.protocol.machine import PageReceived
from rx_informer.protocol.transport import Timeouts, Transport
from rx_informer.store.events import Event, EventType


class InvariantViolation(AssertionError):  # noqa: N818 - it is an assertion failure
    """The informer's events or cache disagree with the server."""


@dataclass(frozen=True)
class Identity:
    """What "the same object" means for the comparison."""

    uid: str
    resource_version: str


@dataclass
class _Replay:
    objects: dict[str, Identity] = field(default_factory=dict)
    violations: list[str] = field(default_factory=list)


class InvariantChecker:
    """Records an informer's events and checks them and its cache against the server."""

    def __init__(self, informer: Informer, cluster: Cluster) -> None:
        self._informer = informer
        self._cluster = cluster
        self._replay = _Replay()
        self._lock = threading.Lock()
        self._inside = 0
        self._disposed = False
        self._events = 0
        self._subscription: abc.DisposableBase | None = None

    def start(self) -> InvariantChecker:
        self._subscription = self._informer.events.subscribe(self._on_event)
        return self

    def dispose(self) -> None:
        if self._subscription is not None:
            self._subscription.dispose()
        self._disposed = True

    @property
    def events_seen(self) -> int:
        return self._events

    # --- As events arrive --------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        with self._lock:
            self._inside += 1
            concurrent = self._inside > 1
        try:
            if concurrent:
                self._violate("the checker was called concurrently")
            if self._disposed:
                self._violate(f"called after dispose with {event!r}")
            self._apply(event)
        finally:
            with self._lock:
                self._inside -= 1

    def _apply(self, event: Event) -> None:
        self._events += 1
        key = event.key
        if key is None or event.type in (EventType.SYNCED, EventType.ERROR):
            return

        identity = Identity(_uid(event), event.resource_version or "")
        held = self._replay.objects.get(key)
        if event.type is EventType.ADDED:
            if held is not None:
                self._violate(f"ADDED {key} while it was present at {held.resource_version}")
            self._replay.objects[key] = identity
        elif event.type is EventType.MODIFIED:
            resync = event.old is event.object
            if held is None:
                self._violate(f"MODIFIED {key} while it was absent")
            elif held == identity and not resync:
                self._violate(f"MODIFIED {key} without a change of resourceVersion")
            self._replay.objects[key] = identity
        elif event.type is EventType.DELETED:
            if held is None:
                self._violate(f"DELETED {key} while it was absent")
            self._replay.objects.pop(key, None)

    def _violate(self, message: str) -> None:
        self._replay.violations.append(message)

    # --- Against the server ------------------------------------------------------------

    def check(self) -> None:
        """Raise ``InvariantViolation`` unless all four rules hold right now."""
        problems = list(self._replay.violations)
        truth = consistent_list(self._cluster, self._informer.resource)
        cached = {w.key: Identity(_wire_uid(w.raw), w.resource_version)
                  for w in self._informer.store.wires()}

        problems += _differences("snapshot", cached, truth)
        problems += _differences("replayed events", self._replay.objects, truth)
        if problems:
            raise InvariantViolation("; ".join(problems[:10]))

    def wait_converged(self, timeout: float) -> None:
        """Check until it holds or ``timeout`` seconds pass; raise the last failure then."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.check()
                return
            except InvariantViolation:
                if self._replay.violations or time.monotonic() > deadline:
                    raise
            time.sleep(0.2)  # a poll interval between two full lists, not a wait for luck


def consistent_list(cluster: Cluster, ref: ResourceRef) -> dict[str, Identity]:
    """The server's current objects, read with a fresh consistent list (all pages)."""

    async def read() -> dict[str, Identity]:
        transport = Transport(cluster, ref, Timeouts())
        found: dict[str, Identity] = {}
        token: str | None = None
        async with cluster.client(httpx.Timeout(Timeouts().list_read)) as client:
            while True:
                page = await transport.list_page(client, 500, token)
                if not isinstance(page, PageReceived):
                    raise InvariantViolation(f"the reference list failed: {page}")
                for wire in page.items:
                    found[wire.key] = Identity(_wire_uid(wire.raw), wire.resource_version)
                if not page.continue_token:
                    return found
                token = page.continue_token

    return asyncio.run(read())


def _differences(
    what: str, seen: dict[str, Identity], truth: dict[str, Identity]
) -> list[str]:
    missing = sorted(truth.keys() - seen.keys())
    extra = sorted(seen.keys() - truth.keys())
    stale = sorted(k for k in truth.keys() & seen.keys() if truth[k] != seen[k])
    problems = []
    if missing:
        problems.append(f"{what} lacks {len(missing)} objects, e.g. {missing[:3]}")
    if extra:
        problems.append(f"{what} has {len(extra)} objects the server does not, e.g. {extra[:3]}")
    if stale:
        problems.append(f"{what} is stale for {len(stale)} objects, e.g. {stale[:3]}")
    return problems


def _uid(event: Event) -> str:
    wire = event.wire
    return _wire_uid(wire.raw) if wire is not None else ""


def _wire_uid(raw: bytes) -> str:
    uid = orjson.loads(raw).get("metadata", {}).get("uid")
    return str(uid or "")
