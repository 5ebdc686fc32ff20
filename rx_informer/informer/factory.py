"""One shared informer per resource, selectors and options.

Two parts of a program that ask for the same pods with the same selectors get the same
informer, hence one connection and one cache. The key is everything that changes what the
cache holds or how it is fetched; a different label selector is a different informer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Hashable, Mapping
from typing import Any

from reactivex import abc
from reactivex import operators as ops

from rx_informer.connection import Cluster, ResourceRef
from rx_informer.informer.informer import Informer
from rx_informer.protocol.backoff import Backoff
from rx_informer.protocol.machine import Machine
from rx_informer.protocol.transport import Timeouts
from rx_informer.protocol.watcher import WatchOptions
from rx_informer.store.reducer import Transform
from rx_informer.store.snapshot import IndexFunction, Snapshot


class InformerFactory:
    """Hands out shared informers for one cluster."""

    def __init__(
        self, cluster: Cluster, *, timeouts: Timeouts | None = None, backoff: Backoff | None = None
    ) -> None:
        self._cluster = cluster
        self._timeouts = timeouts or Timeouts()
        self._backoff = backoff or Backoff()
        # Reentrant: a keep-alive subscription that ends at once calls back under it.
        self._lock = threading.RLock()
        self._informers: dict[Hashable, Informer] = {}
        #: Subscriptions taken by ``wait_for_sync`` to keep informers running until ``close``.
        self._keepalive: dict[Hashable, abc.DisposableBase] = {}

    def informer(
        self,
        api_version: str,
        plural: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        *,
        page_size: int = 500,
        transform: Transform | None = None,
        resync_period: float | None = None,
        indexers: Mapping[str, IndexFunction] | None = None,
        timeouts: Timeouts | None = None,
        backoff: Backoff | None = None,
    ) -> Informer:
        """The shared informer for these arguments (the same object for equal arguments).

        ``transform`` and the indexers are compared by identity: pass the same functions to
        share an informer.
        """
        ref = ResourceRef(api_version, plural, namespace, label_selector, field_selector)
        options = WatchOptions(
            page_size=page_size,
            timeouts=timeouts or self._timeouts,
            machine=Machine(backoff=backoff or self._backoff),
            resync_period=resync_period,
        )
        key = (ref, page_size, options.timeouts, options.machine.backoff, resync_period,
               transform, tuple(sorted((indexers or {}).items())))

        with self._lock:
            informer = self._informers.get(key)
            if informer is None:
                informer = Informer(self._cluster, ref, options, transform, indexers)
                self._informers[key] = informer
            return informer

    def wait_for_sync(self, timeout: float | None = None) -> bool:
        """Start every informer made so far and wait until each has synced once.

        The informers keep running until ``close()``. Returns False on timeout. From inside
        the event loop the informers run on, use ``await wait_for_sync_async()`` instead.
        """
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "wait_for_sync() would block the running event loop; "
                "use 'await factory.wait_for_sync_async()'"
            )

        done = threading.Event()
        self._keep_running(done.set)
        return done.wait(timeout)

    async def wait_for_sync_async(self, timeout: float | None = None) -> bool:
        """Like ``wait_for_sync``, for asyncio code."""
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        self._keep_running(lambda: _call_soon(loop, done.set))
        try:
            await asyncio.wait_for(done.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def _keep_running(self, all_synced: Callable[[], None]) -> None:
        with self._lock:
            informers = dict(self._informers)
        pending = set(informers)
        lock = threading.Lock()

        def synced(key: Hashable) -> Callable[[Snapshot], None]:
            def on_synced(_: Snapshot) -> None:
                with lock:
                    pending.discard(key)
                    finished = not pending
                if finished:
                    all_synced()

            return on_synced

        if not informers:
            all_synced()
        for key, informer in informers.items():
            self._keep_alive(key, informer)
            informer.synced.pipe(ops.take(1)).subscribe(synced(key))

    def _keep_alive(self, key: Hashable, informer: Informer) -> None:
        """Hold one subscription per informer; it forgets itself when its run ends (the
        informer was closed, or its event loop shut down), so the next wait starts it anew."""
        with self._lock:
            if key in self._keepalive:
                return
            ended = threading.Event()

            def forget(*_: object) -> None:
                ended.set()
                with self._lock:
                    if self._keepalive.get(key) is subscription:
                        del self._keepalive[key]

            subscription = informer.synced.subscribe(lambda _: None, forget, forget)
            if not ended.is_set():
                self._keepalive[key] = subscription

    def close(self) -> None:
        """Stop every informer of this factory and forget them."""
        with self._lock:
            informers = list(self._informers.values())
            keepalive = list(self._keepalive.values())
            self._informers.clear()
            self._keepalive.clear()
        for subscription in keepalive:
            subscription.dispose()
        for informer in informers:
            informer.close()

    def __enter__(self) -> InformerFactory:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    loop.call_soon_threadsafe(callback)
