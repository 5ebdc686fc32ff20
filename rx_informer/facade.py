"""The imperative informer API this project grew from, as a thin layer over the observables.

::

    informer = make_informer(cluster, "/api/v1/pods")
    informer.on(EVENT.ADD, print)
    informer.on_sync(lambda objects: ...)
    informer.start().result(timeout=30)   # or: await informer.start()
    informer.stop()

Handlers get the object (``EVENT.ERROR`` handlers get the error); ``on_sync`` handlers get
every cached object after each (re)list. Everything else, including recovery, is the
observable informer's; ``informer.events`` exposes it for code that wants more.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import logging
import threading
from collections.abc import Callable, Generator
from typing import Any

from reactivex import Observable, abc

from rx_informer.connection import Cluster, ResourceRef
from rx_informer.informer.informer import Informer
from rx_informer.protocol.watcher import ListFunction, WatchOptions
from rx_informer.store.events import Event, EventType
from rx_informer.store.snapshot import Object
from rx_informer.streams.sharing import SUBSCRIBER_ERRORS

log = logging.getLogger(__name__)


class EVENT(enum.Enum):
    ADD = "add"
    UPDATE = "update"
    DELETE = "delete"
    ERROR = "error"


_HANDLED = {
    EventType.ADDED: EVENT.ADD,
    EventType.MODIFIED: EVENT.UPDATE,
    EventType.DELETED: EVENT.DELETE,
    EventType.ERROR: EVENT.ERROR,
}


class StartFuture(concurrent.futures.Future[None]):
    """Completes after the first sync. Wait with ``.result(timeout)`` or ``await`` it."""

    def __await__(self) -> Generator[Any, None, None]:
        return asyncio.wrap_future(self).__await__()


class Cache:
    """Read access to the informer's latest snapshot."""

    def __init__(self, informer: Informer) -> None:
        self._informer = informer

    def list(self, namespace: str | None = None) -> list[Object]:
        return self._informer.store.list(namespace)

    def get(self, name: str, namespace: str | None = None) -> Object | None:
        return self._informer.store.get(name, namespace)


class SeedInformer:
    """An informer driven by ``start()``/``stop()`` and callbacks."""

    def __init__(self, informer: Informer) -> None:
        self._informer = informer
        self._lock = threading.Lock()
        self._handlers: dict[EVENT, list[Callable[[Any], None]]] = {kind: [] for kind in EVENT}
        self._sync_handlers: list[Callable[[list[Object]], None]] = []
        self._subscription: abc.DisposableBase | None = None
        self._started = StartFuture()
        #: Counts stop() calls: a callback of a stopped run that calls start() must not
        #: bring the informer back (stop() may race a handler that restarts on errors).
        self._run = 0
        self._dispatching = threading.local()
        self.cache = Cache(informer)

    @property
    def events(self) -> Observable[Event]:
        return self._informer.events

    def on(self, kind: EVENT, callback: Callable[[Any], None]) -> None:
        """Call ``callback(object)`` on each event of ``kind`` (``callback(error)`` for ERROR)."""
        if not isinstance(kind, EVENT):
            raise ValueError(f"unknown event {kind!r}; use one of {[e.name for e in EVENT]}")
        self._handlers[kind].append(callback)

    def off(self, kind: EVENT, callback: Callable[[Any], None]) -> None:
        self._handlers[kind].remove(callback)

    def on_sync(self, callback: Callable[[list[Object]], None]) -> None:
        """Call ``callback(objects)`` with every cached object after each (re)list."""
        self._sync_handlers.append(callback)

    def start(self) -> StartFuture:
        """Start listing and watching; a second call while running returns the same future."""
        with self._lock:
            called_from = getattr(self._dispatching, "run", None)
            if called_from is not None and called_from != self._run:
                return self._started
            if self._subscription is None:
                if self._started.done():
                    self._started = StartFuture()
                run = self._run
                self._subscription = self._informer.events.subscribe(
                    lambda event: self._dispatch(event, run)
                )
            return self._started

    def stop(self) -> None:
        """Abort any request in flight; no callback runs after this returns."""
        with self._lock:
            subscription, self._subscription = self._subscription, None
            started = self._started
            self._run += 1
        if subscription is not None:
            subscription.dispose()
        started.cancel()

    def _dispatch(self, event: Event, run: int) -> None:
        self._dispatching.run = run
        try:
            self._handle(event)
        finally:
            self._dispatching.run = None

    def _handle(self, event: Event) -> None:
        if event.type is EventType.SYNCED:
            objects = list(event.snapshot) if event.snapshot is not None else []
            for sync_handler in list(self._sync_handlers):
                _call(sync_handler, objects)
            if not self._started.done():
                self._started.set_result(None)
            return

        kind = _HANDLED[event.type]
        argument = event.error if kind is EVENT.ERROR else event.object
        for handler in list(self._handlers[kind]):
            _call(handler, argument)


def _call(handler: Callable[[Any], None], argument: Any) -> None:
    try:
        handler(argument)
    except SUBSCRIBER_ERRORS:
        log.exception("informer handler %r raised; the informer goes on", handler)


def make_informer(
    cluster: Cluster,
    path: str,
    list_fn: ListFunction | None = None,
    label_selector: str | None = None,
    field_selector: str | None = None,
) -> SeedInformer:
    """An imperative informer for the collection at ``path`` (e.g. ``/api/v1/pods``).

    ``list_fn``, if given, is called (in a worker thread) for every (re)list instead of the
    built-in paged list; it returns a list object, as a dict or a ``kubernetes`` model.
    """
    ref = ResourceRef.from_path(path, label_selector, field_selector)
    return SeedInformer(Informer(cluster, ref, WatchOptions(list_fn=list_fn)))
