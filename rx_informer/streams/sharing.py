"""Multicast one source to many observers, replaying its latest value to late ones.

RxPY's ``share()`` and ``replay(1)`` build their Subject once: after the source ends, every
later subscriber gets the old terminal notification, and after the ref-count drops to zero a
new subscriber is handed the stale last value. An informer needs the opposite: each
"generation" (first subscriber to last dispose, or to an error) is a fresh run that knows
nothing of the one before. So this operator keeps its own observer list and drops the
connection, the latest value and the observers together whenever a generation ends.

It also serialises delivery: values from the source and the replay to a late subscriber are
delivered under one lock, so observers are never called concurrently, a late subscriber sees
no gap and no duplicate between its replay and the live values, and an observer that has been
disposed is never called again once ``dispose()`` returns. An observer that raises is logged
and keeps its place; the others still get the value.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from reactivex import Observable, abc
from reactivex.disposable import Disposable

log = logging.getLogger(__name__)

T = TypeVar("T")


class ReplayLatestShare(Observable[T], Generic[T]):
    """Hot, ref-counted view of ``source``; late observers first get ``replay(latest)``."""

    def __init__(
        self,
        source: Observable[T],
        replay: Callable[[T], T],
        retain: Callable[[T], T] = lambda value: value,
    ) -> None:
        super().__init__()
        self._source = source
        self._replay = replay
        #: What of the latest value to keep for ``replay`` and ``latest``: an informer keeps
        #: the snapshot and lets the events it carried go.
        self._retain = retain
        self._lock = threading.RLock()
        #: Observers of the current generation (replaced, never mutated, so delivery can
        #: iterate without copying).
        self._observers: tuple[abc.ObserverBase[T], ...] = ()
        #: The subscription to the source; ``None`` between generations.
        self._connection: abc.DisposableBase | None = None
        #: Counts generations, so late values from a disposed source are recognised.
        self._generation = 0
        self._latest: tuple[T] | None = None

    @property
    def latest(self) -> T | None:
        """The last value of the current generation, ``None`` when none or not running."""
        latest = self._latest
        return latest[0] if latest is not None else None

    def _subscribe_core(
        self, observer: abc.ObserverBase[T], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        with self._lock:
            if self._latest is not None:
                _guard(observer.on_next, self._replay(self._latest[0]))
            self._observers = (*self._observers, observer)
            if self._connection is None:
                self._connect()
        return Disposable(lambda: self._remove(observer))

    def _connect(self) -> None:
        self._generation += 1
        generation = self._generation

        def on_next(value: T) -> None:
            with self._lock:
                if generation != self._generation:
                    return
                # Before delivery: an observer that subscribes from inside a callback is not in
                # the tuple being delivered to, so its replay must already include this value.
                self._latest = (self._retain(value),)
                # _guard inlined: this loop runs once per event per subscriber.
                for observer in self._observers:
                    try:
                        observer.on_next(value)
                    except SUBSCRIBER_ERRORS:
                        log.exception("a subscriber raised; it stays subscribed")

        def on_error(error: Exception) -> None:
            for observer in self._end(generation):
                _guard(observer.on_error, error)

        def on_completed() -> None:
            self._complete(generation)

        # A placeholder first: the source may call back before subscribe() returns.
        self._connection = Disposable()
        self._connection = self._source.subscribe(on_next, on_error, on_completed)

    def _remove(self, observer: abc.ObserverBase[T]) -> None:
        with self._lock:
            if observer not in self._observers:
                return
            self._observers = tuple(o for o in self._observers if o is not observer)
            if not self._observers:
                self._disconnect()

    def _end(self, generation: int) -> tuple[abc.ObserverBase[T], ...]:
        """Finish a generation; return the observers that must hear how it ended."""
        with self._lock:
            if generation != self._generation:
                return ()
            observers = self._observers
            self._observers = ()
            self._disconnect()
            return observers

    def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        self._latest = None
        self._generation += 1
        if connection is not None:
            connection.dispose()

    def close(self) -> None:
        """End the current generation: observers get ``on_completed``, the source stops."""
        with self._lock:
            generation = self._generation
        self._complete(generation)

    def _complete(self, generation: int) -> None:
        for observer in self._end(generation):
            _guard(observer.on_completed)


#: What a subscriber may raise without harming anyone. ``CancelledError`` is a
#: ``BaseException``, but raised by a callback it must not cancel the informer's own task.
SUBSCRIBER_ERRORS = (Exception, asyncio.CancelledError)


def _guard(call: Callable[..., None], *args: Any) -> None:
    """Call an observer; what it raises is logged, never passed on to the next one."""
    try:
        call(*args)
    except SUBSCRIBER_ERRORS:
        log.exception("a subscriber raised; it stays subscribed and the others go on")
