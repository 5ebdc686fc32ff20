"""The driver: runs the state machine against the API server as a cold Observable.

Subscribing starts one asyncio task that performs whatever request the machine's state asks
for and feeds the outcome back into ``Machine.step``; every output goes to the observer, on
the loop's thread. Disposing cancels the task, which closes the HTTP connection at once,
whatever the task is waiting on (a list page, a watch, a backoff sleep).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import httpx
import reactivex
from kubernetes.client import ApiClient
from reactivex import Observable, abc
from reactivex.disposable import Disposable

from rx_informer.connection import Cluster, ResourceRef
from rx_informer.errors import ConfigError, InformerError, RequestError, StatusError
from rx_informer.protocol.machine import (
    Failure,
    Input,
    Listing,
    Machine,
    Output,
    PageReceived,
    Relisted,
    RequestFailed,
    Resynced,
    State,
    Watching,
    status_error,
)
from rx_informer.protocol.transport import Timeouts, Transport
from rx_informer.protocol.wire import DecodeError, WireObject
from rx_informer.streams.loop import current_or_background_loop

log = logging.getLogger(__name__)

#: A replacement for the paged list: called in a worker thread, returns a list object
#: (a dict or a ``kubernetes`` model) with ``items`` and ``metadata.resourceVersion``.
ListFunction = Callable[[], Any]

_BAD_REQUEST, _UNAUTHORIZED, _FORBIDDEN, _NOT_FOUND = 400, 401, 403, 404


@dataclass(frozen=True, slots=True)
class WatchOptions:
    """How one informer talks to the server."""

    page_size: int = 500
    timeouts: Timeouts = field(default_factory=Timeouts)
    machine: Machine = field(default_factory=Machine)
    resync_period: float | None = None
    list_fn: ListFunction | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.page_size, int) or self.page_size < 1:
            raise ValueError(f"page_size must be a positive integer, not {self.page_size!r}")
        if self.resync_period is not None and self.resync_period <= 0:
            raise ValueError(f"resync_period must be positive, not {self.resync_period!r}")


@dataclass(frozen=True, slots=True)
class Statistics:
    """What an informer has done since it was made (all generations)."""

    #: List requests (one per page), watch requests, and failed requests.
    lists: int = 0
    watches: int = 0
    failures: int = 0
    #: Completed lists: the first one of each generation and every relist after it.
    syncs: int = 0


class Counters:
    """Mutable counts behind ``Statistics``; only the loop thread writes them."""

    __slots__ = ("failures", "lists", "syncs", "watches")

    def __init__(self) -> None:
        self.lists = self.watches = self.failures = self.syncs = 0

    def snapshot(self) -> Statistics:
        return Statistics(self.lists, self.watches, self.failures, self.syncs)


def watch_resource(
    cluster: Cluster,
    ref: ResourceRef,
    options: WatchOptions,
    counters: Counters | None = None,
    loop_for: Callable[[], asyncio.AbstractEventLoop] = current_or_background_loop,
) -> Observable[Output]:
    """A cold Observable: each subscription runs its own list+watch cycle until disposed."""
    counts = counters if counters is not None else Counters()

    def subscribe(
        observer: abc.ObserverBase[Output], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        driver = _Driver(cluster, ref, options, observer.on_next, counts)
        future = asyncio.run_coroutine_threadsafe(driver.run(), loop_for())
        disposed = threading.Event()
        future.add_done_callback(lambda done: _report_end(done, disposed, observer, ref))
        return Disposable(lambda: _cancel(future, disposed))

    return reactivex.create(subscribe)


def _cancel(future: Future[None], disposed: threading.Event) -> None:
    disposed.set()
    future.cancel()


def _report_end(
    done: Future[None],
    disposed: threading.Event,
    observer: abc.ObserverBase[Output],
    ref: ResourceRef,
) -> None:
    """The run never ends on its own: tell the subscribers if it did, so none waits forever."""
    if disposed.is_set():
        return
    if done.cancelled():
        error: Exception = InformerError(
            f"the event loop running the informer for {ref.describe()} was shut down "
            "(e.g. asyncio.run() returned); subscribe again to start it on another loop"
        )
        log.warning("%s", error)
    else:
        raised = done.exception()
        error = raised if isinstance(raised, Exception) else RuntimeError(raised)
        log.error("informer for %s stopped by a bug", ref.describe(), exc_info=raised)
    observer.on_error(error)


class _Driver:
    """One run of the cycle. Lives from subscribe to dispose."""

    def __init__(
        self,
        cluster: Cluster,
        ref: ResourceRef,
        options: WatchOptions,
        emit: Callable[[Output], None],
        counters: Counters,
    ) -> None:
        self._counters = counters
        self._cluster = cluster
        self._ref = ref
        self._options = options
        self._emit = emit
        self._transport = Transport(cluster, ref, options.timeouts)
        self._resource = ref.describe()

    async def run(self) -> None:
        state = State()
        timeouts = self._options.timeouts
        timeout = httpx.Timeout(timeouts.list_read, connect=timeouts.connect)
        resync = self._start_resync()

        try:
            async with self._cluster.client(timeout) as client:
                while True:
                    state = await self._one_request(client, state)
        finally:
            if resync is not None:
                resync.cancel()

    async def _one_request(self, client: httpx.AsyncClient, state: State) -> State:
        if state.delay > 0:
            await asyncio.sleep(state.delay)

        if state.refresh_credentials:
            failed = await self._refresh_credentials()
            if failed is not None:
                return self._advance(state, failed)

        if isinstance(state.phase, Listing):
            self._counters.lists += 1
            page = await self._list(client, state.phase)
            return self._advance(state, page)
        return await self._watch(client, state, state.phase)

    async def _list(self, client: httpx.AsyncClient, phase: Listing) -> Input:
        list_fn = self._options.list_fn
        if list_fn is not None:
            return await _call_list_fn(list_fn, self._resource)

        log.debug("listing %s (continue=%s)", self._resource, bool(phase.continue_token))
        return await self._transport.list_page(
            client, self._options.page_size, phase.continue_token
        )

    async def _watch(self, client: httpx.AsyncClient, state: State, phase: Watching) -> State:
        timeouts = self._options.timeouts
        seconds = int(random.uniform(timeouts.watch_min, timeouts.watch_max))
        log.debug("watching %s from resourceVersion %s", self._resource, phase.resource_version)

        self._counters.watches += 1
        request = state.request
        stream = self._transport.watch(client, phase.resource_version, seconds)
        async with contextlib.aclosing(stream):
            async for received in stream:
                state = self._advance(state, received)
                if state.request != request:
                    break
        return state

    def _advance(self, state: State, received: Input) -> State:
        state, outputs = self._options.machine.step(state, received)
        for output in outputs:
            if isinstance(output, Failure):
                self._counters.failures += 1
                self._log_failure(output.error, state)
            elif isinstance(output, Relisted):
                self._counters.syncs += 1
            self._emit(output)
        return state

    async def _refresh_credentials(self) -> RequestFailed | None:
        try:
            await asyncio.to_thread(self._cluster.refresh_credentials)
        except ConfigError as exc:
            error = RequestError(f"credentials for {self._resource} cannot be refreshed: {exc}")
            return RequestFailed(error, time.monotonic())
        return None

    def _start_resync(self) -> asyncio.Task[None] | None:
        period = self._options.resync_period
        if period is None:
            return None

        async def tick() -> None:
            while True:
                await asyncio.sleep(period)
                self._emit(Resynced())

        return asyncio.get_running_loop().create_task(tick())

    def _log_failure(self, error: RequestError, state: State) -> None:
        """One place decides how loud a failure is: humans hear what only they can fix."""
        code = error.code if isinstance(error, StatusError) else None
        if code in (_FORBIDDEN, _NOT_FOUND):
            log.warning(
                "%s; check RBAC, and that the resource exists under that plural name, group "
                "and version (attempt %d, retrying in %.1f s)",
                error, state.failures, state.delay,
            )
        elif code == _BAD_REQUEST:
            log.warning(
                "%s; check the label and field selectors (attempt %d, retrying in %.1f s)",
                error, state.failures, state.delay,
            )
        elif code == _UNAUTHORIZED:
            log.warning("%s; refreshing credentials (attempt %d)", error, state.failures)
        elif state.delay > 0:
            log.warning(
                "%s (attempt %d, retrying in %.1f s)", error, state.failures, state.delay
            )
        else:
            log.debug("%s; recovering at once", error)


async def _call_list_fn(list_fn: ListFunction, resource: str) -> Input:
    """Run a user's list function and turn its answer into a last page."""
    now = time.monotonic
    try:
        body = await asyncio.to_thread(list_fn)
    except Exception as exc:
        status = getattr(exc, "status", None)
        if isinstance(status, int):
            reason = str(getattr(exc, "reason", "") or "")
            error: RequestError = status_error(
                {"code": status, "reason": reason, "message": reason}, "list", resource
            )
        else:
            error = RequestError(f"list {resource}: list_fn raised {type(exc).__name__}: {exc}")
        return RequestFailed(error, now())

    body = _as_dict(body)
    try:
        items = [WireObject.from_dict(item) for item in body.get("items") or []]
        version = str(body["metadata"]["resourceVersion"])
    except (AttributeError, KeyError, TypeError, *DecodeError) as exc:
        error = RequestError(f"list {resource}: list_fn returned no list ({exc!r})")
        return RequestFailed(error, now())
    return PageReceived(items, version, "")


def _as_dict(body: Any) -> Any:
    """A ``kubernetes`` model becomes the JSON-shaped dict the server sent."""
    if isinstance(body, dict):
        return body
    return ApiClient().sanitize_for_serialization(body)  # type: ignore[no-untyped-call]
