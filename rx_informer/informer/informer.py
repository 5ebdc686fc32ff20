"""The public informer: one resource as hot, ref-counted observables.

The contract, for every subscriber of one informer:

- The first subscription (to any of ``events``, ``snapshots``, ``synced``) starts a list and
  then a watch; the last ``dispose()`` aborts whatever request is in flight. A later
  subscription starts afresh and never sees state from before.
- ``events`` delivers, per object, changes in the order the server made them. A subscriber
  that arrives late first gets ADDED for every cached object and SYNCED (if the cache has
  synced), then the live events, with no gap and no duplicate.
- After every complete (re)list comes exactly one SYNCED: from then on the cache matches the
  server at ``snapshot.resource_version``. Objects that vanished while the informer could
  not watch arrive as DELETED with ``final_state_unknown=True`` just before it.
- Failures are ERROR events; the informer retries by itself and never stops on its own.
  The observables only end when the informer is closed (``on_completed``).
- Observers are never called concurrently, and one that raises is logged and keeps its
  subscription; the others are not affected.
- Snapshots are immutable: keep them, read them from any thread.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from reactivex import Observable, abc
from reactivex import operators as ops

from rx_informer.connection import Cluster, ResourceRef
from rx_informer.protocol.watcher import Counters, Statistics, WatchOptions, watch_resource
from rx_informer.store.events import Event
from rx_informer.store.reducer import Reducer, Step, Transform
from rx_informer.store.snapshot import IndexFunction, Snapshot
from rx_informer.streams.sharing import SUBSCRIBER_ERRORS, ReplayLatestShare

log = logging.getLogger(__name__)


class Informer:
    """A shared informer for one resource. Get one from ``InformerFactory.informer``."""

    def __init__(
        self,
        cluster: Cluster,
        ref: ResourceRef,
        options: WatchOptions | None = None,
        transform: Transform | None = None,
        indexers: Mapping[str, IndexFunction] | None = None,
    ) -> None:
        self.resource = ref
        reducer = Reducer(transform, indexers)
        self._empty = reducer.seed().snapshot

        self._counters = Counters()
        steps = watch_resource(cluster, ref, options or WatchOptions(), self._counters).pipe(
            ops.scan(reducer, reducer.seed())
        )
        self._shared = ReplayLatestShare(steps, Step.replay, retain=Step.without_events)

        #: Every change, sync and failure, as ``Event``.
        self.events: Observable[Event] = self._shared.pipe(_each_event)
        #: The cache after every change; a late subscriber first gets the current one.
        self.snapshots: Observable[Snapshot] = self._shared.pipe(
            ops.filter(_changed), ops.map(_snapshot_of)
        )
        #: The cache after each completed (re)list only.
        self.synced: Observable[Snapshot] = self._shared.pipe(
            ops.filter(_synced), ops.map(_snapshot_of)
        )

    @property
    def store(self) -> Snapshot:
        """The latest snapshot; empty before the first sync and while nobody subscribes."""
        latest = self._shared.latest
        return latest.snapshot if latest is not None else self._empty

    def statistics(self) -> Statistics:
        """Requests made and lists completed so far, over every generation."""
        return self._counters.snapshot()

    def close(self) -> None:
        """Stop now: abort the request in flight and complete every subscriber."""
        self._shared.close()

    def __repr__(self) -> str:
        return f"<Informer {self.resource.describe()}: {len(self.store)} cached>"


def _snapshot_of(step: Step) -> Snapshot:
    return step.snapshot


def _changed(step: Step) -> bool:
    return step.changed


def _synced(step: Step) -> bool:
    return step.synced


def _each_event(steps: Observable[Step]) -> Observable[Event]:
    """Flatten steps into their events, guarding each delivery.

    A guard per event (not per step) matters: a subscriber that raises on the third event of
    a relist must still get the fourth.
    """

    def subscribe(
        observer: abc.ObserverBase[Event], scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        def on_next(step: Step) -> None:
            deliver = observer.on_next
            for event in step.events:
                try:
                    deliver(event)
                except SUBSCRIBER_ERRORS:
                    log.exception("a subscriber raised on %r; it stays subscribed", event)
                event.release()

        return steps.subscribe(
            on_next, observer.on_error, observer.on_completed, scheduler=scheduler
        )

    return Observable(subscribe)
