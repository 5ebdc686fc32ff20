"""The store as a fold: each protocol output turns the previous step into the next one.

Used with ``ops.scan``: the accumulated value is a ``Step`` holding the snapshot after the
output and the events that the output caused. Events are computed against the cache, not
taken from the wire, so a replayed or duplicated watch event (same resourceVersion) and a
relist that finds nothing new cause no event at all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from rx_informer.errors import TransformError
from rx_informer.protocol.machine import (
    Applied,
    Failure,
    Output,
    Progressed,
    Relisted,
    Removed,
    Resynced,
)
from rx_informer.protocol.wire import WireObject
from rx_informer.store.events import Event, EventType
from rx_informer.store.snapshot import IndexFunction, Object, Snapshot

Transform = Callable[[Object], Object]


@dataclass(frozen=True, slots=True)
class Step:
    """The cache after one output, and what subscribers must hear about it."""

    snapshot: Snapshot
    events: tuple[Event, ...] = ()
    #: Whether the cache's content changed (a bookmark or an error changes nothing).
    changed: bool = False

    @property
    def synced(self) -> bool:
        """Whether this step completed a (re)list."""
        return bool(self.events) and self.events[-1].type is EventType.SYNCED

    def without_events(self) -> Step:
        """The step as the informer keeps it between changes: the snapshot alone.

        A step of one event is kept as it is (its event holds nothing the snapshot does not,
        once delivered), which spares an allocation per watch event.
        """
        return self if len(self.events) < 2 else Step(self.snapshot)

    def replay(self) -> Step:
        """The step a late subscriber gets first: ADDED for each cached object, then SYNCED
        if the cache has synced."""
        snapshot = self.snapshot
        added = [Event(EventType.ADDED, wire) for wire in snapshot.wires()]
        if snapshot.has_synced:
            added.append(Event(EventType.SYNCED, snapshot=snapshot))
        return Step(snapshot, tuple(added), changed=True)


class Reducer:
    """Folds protocol outputs into steps. Holds only configuration, no state."""

    def __init__(
        self,
        transform: Transform | None = None,
        indexers: Mapping[str, IndexFunction] | None = None,
    ) -> None:
        self._transform = transform
        self._indexers = dict(indexers or {})

    def seed(self) -> Step:
        return Step(Snapshot.empty(self._indexers))

    def __call__(self, step: Step, output: Output) -> Step:
        snapshot = step.snapshot
        failures: list[Event] = []
        if isinstance(output, Applied):
            wire, decoded = self._prepared(output.object, output.decoded, failures)
            return _with_failures(failures, _applied(snapshot, wire, decoded))
        if isinstance(output, Removed):
            wire, decoded = self._prepared(output.object, output.decoded, failures)
            return _with_failures(failures, _removed(snapshot, wire, decoded))
        if isinstance(output, Relisted):
            listed = [self._prepared(wire, None, failures)[0] for wire in output.objects]
            return _with_failures(failures, _relisted(snapshot, listed, output.resource_version))
        if isinstance(output, Progressed):
            return Step(snapshot.at_version(output.resource_version))
        if isinstance(output, Failure):
            return Step(snapshot, (Event(EventType.ERROR, error=output.error),))
        if isinstance(output, Resynced):
            return _resynced(snapshot)
        raise AssertionError(f"unknown output {output!r}")

    def _prepared(
        self, wire: WireObject, decoded: Object | None, failures: list[Event]
    ) -> tuple[WireObject, Object | None]:
        """Apply the transform, if any; return the object to cache and its dict if known.

        A transform that raises, or returns something that is not an object with a name and
        resourceVersion, is reported as an ERROR event and the object is cached as received:
        a bug in the transform must not cost the cache its truth.
        """
        if self._transform is None:
            return wire, decoded
        try:
            transformed = self._transform(decoded if decoded is not None else wire.decode())
            return WireObject.from_dict(transformed), transformed
        except Exception as exc:
            error = TransformError(
                f"transform failed on {wire.key}@{wire.resource_version}: "
                f"{type(exc).__name__}: {exc}; cached it untransformed"
            )
            error.__cause__ = exc
            failures.append(Event(EventType.ERROR, error=error))
            return wire, None


def _with_failures(failures: list[Event], step: Step) -> Step:
    if not failures:
        return step
    return Step(step.snapshot, (*failures, *step.events), step.changed)


def _applied(snapshot: Snapshot, wire: WireObject, decoded: Object | None) -> Step:
    old = snapshot.wire(wire.key)
    if old is not None and old.resource_version == wire.resource_version:
        return Step(snapshot.at_version(wire.resource_version))

    kind = EventType.ADDED if old is None else EventType.MODIFIED
    event = Event(kind, wire, old, decoded=decoded)
    return Step(snapshot.with_object(wire, old, decoded), (event,), changed=True)


def _removed(snapshot: Snapshot, wire: WireObject, decoded: Object | None) -> Step:
    old = snapshot.wire(wire.key)

    # Never announced, so nothing to retract: a subscriber replaying events stays consistent.
    if old is None:
        return Step(snapshot.at_version(wire.resource_version))
    deleted = Event(EventType.DELETED, wire, old, decoded=decoded)
    return Step(snapshot.without_object(old, wire.resource_version), (deleted,), changed=True)


def _relisted(snapshot: Snapshot, listed: list[WireObject], version: str) -> Step:
    """Diff a complete list against the cache, then swap the cache in one step."""
    # A key listed twice (on two pages, say) counts once, in its last place: the list is
    # a set of objects, and the diff below must see each of them once.
    unique = {wire.key: wire for wire in listed}
    fresh: dict[str, WireObject] = {}
    events: list[Event] = []

    for wire in unique.values():
        old = snapshot.wire(wire.key)
        if old is None:
            events.append(Event(EventType.ADDED, wire))
        elif old.resource_version != wire.resource_version:
            events.append(Event(EventType.MODIFIED, wire, old))
        else:
            fresh[wire.key] = old  # unchanged: keep the cached instance
            continue
        fresh[wire.key] = wire

    for old in snapshot.wires():
        if old.key not in fresh:
            events.append(Event(EventType.DELETED, old, old, final_state_unknown=True))

    swapped = snapshot.replaced(fresh, version)
    events.append(Event(EventType.SYNCED, snapshot=swapped))
    return Step(swapped, tuple(events), changed=True)


def _resynced(snapshot: Snapshot) -> Step:
    if not snapshot.has_synced:
        return Step(snapshot)
    events = tuple(Event(EventType.MODIFIED, wire, wire) for wire in snapshot.wires())
    return Step(snapshot, events)
