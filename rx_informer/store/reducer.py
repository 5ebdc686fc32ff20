"""The store as a fold: each protocol output turns the previous step into the next one.

Used with ``ops.scan``: the accumulated value is a ``Step`` holding the snapshot after the
output and the events that the output caused. Events are computed against the cache, not
taken from the wire, so a replayed or duplicated watch event (same resourceVersion) and a
relist that finds nothing new cause no event at all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from rx_informer.protocol.machine import (
    Applied,
    Failure,
    Output,
    Progressed,
    Relisted,
    Removed,
    Resynced,
)
from rx_informer.store.events import Event, EventType
from rx_informer.store.snapshot import (
    IndexFunction,
    Object,
    Snapshot,
    object_key,
    resource_version,
)

Transform = Callable[[Object], Object]


@dataclass(frozen=True, slots=True)
class Step:
    """The cache after one output, and what subscribers must hear about it.

    ``replayed`` marks the step synthesised for a late subscriber: its events re-announce the
    whole cache (ADDED for each object, then SYNCED if it has synced).
    """

    snapshot: Snapshot
    events: tuple[Event, ...] = ()
    #: Whether the cache's content changed (a bookmark or an error changes nothing).
    changed: bool = False
    replayed: bool = False

    @property
    def synced(self) -> bool:
        """Whether this step completed a (re)list."""
        return bool(self.events) and self.events[-1].type is EventType.SYNCED

    def replay(self) -> Step:
        snapshot = self.snapshot
        added = [Event(EventType.ADDED, obj) for obj in snapshot]
        if snapshot.has_synced:
            added.append(Event(EventType.SYNCED, snapshot=snapshot))
        return Step(snapshot, tuple(added), changed=True, replayed=True)


class Reducer:
    """Folds protocol outputs into steps. Holds only configuration, no state."""

    def __init__(
        self,
        transform: Transform | None = None,
        indexers: Mapping[str, IndexFunction] | None = None,
    ) -> None:
        self._transform = transform or _identity
        self._indexers = dict(indexers or {})

    def seed(self) -> Step:
        return Step(Snapshot.empty(self._indexers))

    def __call__(self, step: Step, output: Output) -> Step:
        snapshot = step.snapshot
        if isinstance(output, Applied):
            return _applied(snapshot, self._transform(output.object))
        if isinstance(output, Removed):
            return _removed(snapshot, self._transform(output.object))
        if isinstance(output, Relisted):
            objects = map(self._transform, output.objects)
            return _relisted(snapshot, objects, output.resource_version)
        if isinstance(output, Progressed):
            return Step(snapshot.at_version(output.resource_version))
        if isinstance(output, Failure):
            return Step(snapshot, (Event(EventType.ERROR, error=output.error),))
        if isinstance(output, Resynced):
            return _resynced(snapshot)
        raise AssertionError(f"unknown output {output!r}")


def _identity(obj: Object) -> Object:
    return obj


def _applied(snapshot: Snapshot, obj: Object) -> Step:
    key = object_key(obj)
    version = resource_version(obj)
    old = snapshot.get_by_key(key)

    if old is not None and resource_version(old) == version:
        return Step(snapshot.at_version(version))

    kind = EventType.ADDED if old is None else EventType.MODIFIED
    event = Event(kind, obj, old)
    return Step(snapshot.with_object(key, obj, old, version), (event,), changed=True)


def _removed(snapshot: Snapshot, obj: Object) -> Step:
    key = object_key(obj)
    version = resource_version(obj)
    old = snapshot.get_by_key(key)

    # Never announced, so nothing to retract: a subscriber replaying events stays consistent.
    if old is None:
        return Step(snapshot.at_version(version))
    deleted = Event(EventType.DELETED, obj, old)
    return Step(snapshot.without_object(key, old, version), (deleted,), changed=True)


def _relisted(snapshot: Snapshot, listed: Iterable[Object], version: str) -> Step:
    """Diff a complete list against the cache, then swap the cache in one step."""
    fresh: dict[str, Object] = {}
    events: list[Event] = []

    for obj in listed:
        key = object_key(obj)
        old = snapshot.get_by_key(key)
        if old is None:
            events.append(Event(EventType.ADDED, obj))
        elif resource_version(old) != resource_version(obj):
            events.append(Event(EventType.MODIFIED, obj, old))
        else:
            fresh[key] = old  # unchanged: keep the cached instance
            continue
        fresh[key] = obj

    for key in snapshot.keys():  # noqa: SIM118 - a snapshot iterates objects, not keys
        if key not in fresh:
            old_obj = snapshot.get_by_key(key)
            events.append(Event(EventType.DELETED, old_obj, old_obj, final_state_unknown=True))

    swapped = snapshot.replaced(fresh, version)
    events.append(Event(EventType.SYNCED, snapshot=swapped))
    return Step(swapped, tuple(events), changed=True)


def _resynced(snapshot: Snapshot) -> Step:
    if not snapshot.has_synced:
        return Step(snapshot)
    events = tuple(Event(EventType.MODIFIED, obj, obj) for obj in snapshot)
    return Step(snapshot, events)
