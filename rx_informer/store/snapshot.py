"""An immutable view of the cache, cheap to derive from the previous one.

Objects are kept in a persistent hash map (``immutables.Map``, a HAMT) from ``namespace/name``
to the object's wire form (``WireObject``: its JSON bytes and identity). Each change makes a
new snapshot that shares all but a few nodes with the old one, so every subscriber can keep the
snapshot it was handed and readers on any thread never need a lock. A copy-on-write dict
would cost O(n) per event; a mutable dict behind a lock would make snapshots unsafe to keep.

Reads decode the JSON each time and hand out a dict the caller owns (see
``protocol.wire`` for why the cache keeps bytes).

Indexes map a value (a namespace, a node name, ...) to the keys of the objects that have it,
in the same kind of map, and are updated only where an object's values changed.
"""

from __future__ import annotations

import builtins
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import immutables

from rx_informer.protocol.wire import WireObject

Object = dict[str, Any]
#: An index function gets the decoded object and returns its values for the index.
IndexFunction = Callable[[Object], "str | Iterable[str] | None"]
_Keys = immutables.Map[str, None]
_Index = immutables.Map[str, _Keys]

NAMESPACE_INDEX = "namespace"

log = logging.getLogger(__name__)


class Snapshot:
    """The cache at one moment. Immutable and safe to read from any thread."""

    __slots__ = ("_has_synced", "_indexers", "_indexes", "_objects", "_resource_version")

    def __init__(
        self,
        objects: immutables.Map[str, WireObject],
        indexes: immutables.Map[str, _Index],
        indexers: Mapping[str, IndexFunction],
        resource_version: str | None,
        has_synced: bool,
    ) -> None:
        self._objects = objects
        self._indexes = indexes
        self._indexers = indexers
        self._resource_version = resource_version
        self._has_synced = has_synced

    @property
    def resource_version(self) -> str | None:
        """The newest resourceVersion the cache reflects (bookmarks included)."""
        return self._resource_version

    @property
    def has_synced(self) -> bool:
        """Whether a complete list has been applied, i.e. the cache matched the server once."""
        return self._has_synced

    @classmethod
    def empty(cls, indexers: Mapping[str, IndexFunction] | None = None) -> Snapshot:
        names = [NAMESPACE_INDEX, *(indexers or {})]
        indexes: immutables.Map[str, _Index] = immutables.Map(
            {name: immutables.Map() for name in names}
        )
        return cls(immutables.Map(), indexes, dict(indexers or {}), None, False)

    # --- Reading -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._objects)

    def __iter__(self) -> Iterator[Object]:
        """Every object, decoded one at a time."""
        return (wire.decode() for wire in self._objects.values())

    def __contains__(self, key: object) -> bool:
        return key in self._objects

    def __repr__(self) -> str:
        return f"<Snapshot of {len(self)} objects at resourceVersion {self.resource_version}>"

    def list(self, namespace: str | None = None) -> builtins.list[Object]:
        """Every object, or those of one namespace."""
        if namespace is None:
            return [wire.decode() for wire in self._objects.values()]
        return self.by_index(NAMESPACE_INDEX, namespace)

    def get(self, name: str, namespace: str | None = None) -> Object | None:
        """One object by name (and namespace, for namespaced resources), or ``None``."""
        return self.get_by_key(f"{namespace}/{name}" if namespace else name)

    def get_by_key(self, key: str) -> Object | None:
        """One object by ``namespace/name`` (or ``name``) key, or ``None``."""
        wire = self._objects.get(key)
        return wire.decode() if wire is not None else None

    def wire(self, key: str) -> WireObject | None:
        """One object as cached (JSON bytes and identity), without decoding it."""
        return self._objects.get(key)

    def wires(self) -> builtins.list[WireObject]:
        """Every object as cached, without decoding."""
        return builtins.list(self._objects.values())

    def keys(self) -> builtins.list[str]:
        return builtins.list(self._objects.keys())

    def by_index(self, index: str, value: str) -> builtins.list[Object]:
        """The objects for which indexer ``index`` returned ``value``."""
        try:
            keys = self._indexes[index].get(value, ())
        except KeyError:
            raise KeyError(
                f"no index {index!r}; known: {sorted(self._indexes.keys())}"
            ) from None
        return [self._objects[key].decode() for key in keys]

    def index_values(self, index: str) -> builtins.list[str]:
        """The values that index ``index`` currently holds."""
        return builtins.list(self._indexes[index].keys())

    # --- Deriving the next snapshot -------------------------------------------------------

    def with_object(
        self, wire: WireObject, old: WireObject | None, decoded: Object | None
    ) -> Snapshot:
        """A snapshot where ``wire.key`` holds ``wire`` (``old`` is what it held, if any).

        ``decoded`` is ``wire`` as a dict when the caller already has it (for the indexers).
        """
        indexes = self._reindexed(wire.key, old, wire, decoded)
        objects = self._objects.set(wire.key, wire)
        return Snapshot(objects, indexes, self._indexers, wire.resource_version, self.has_synced)

    def without_object(self, old: WireObject, version: str) -> Snapshot:
        indexes = self._reindexed(old.key, old, None, None)
        objects = self._objects.delete(old.key)
        return Snapshot(objects, indexes, self._indexers, version, self.has_synced)

    def at_version(self, version: str | None) -> Snapshot:
        return Snapshot(self._objects, self._indexes, self._indexers, version, self.has_synced)

    def replaced(self, objects: Mapping[str, WireObject], version: str) -> Snapshot:
        """A synced snapshot holding exactly ``objects``, built in one pass."""
        indexes = {NAMESPACE_INDEX: _build_index(objects, _namespace_values)}
        for name, fn in self._indexers.items():
            indexes[name] = _build_index(objects, _decoding(fn))
        return Snapshot(
            immutables.Map(objects), immutables.Map(indexes), self._indexers, version, True
        )

    def _reindexed(
        self, key: str, old: WireObject | None, new: WireObject | None, decoded: Object | None
    ) -> immutables.Map[str, _Index]:
        indexes = self._indexes
        if old is None or new is None:  # a namespace never changes, it only comes or goes
            present = _namespace_values(new if old is None else old)  # type: ignore[arg-type]
            before, after = (_NO_VALUES, present) if old is None else (present, _NO_VALUES)
            if present:
                indexes = _reindex(indexes, NAMESPACE_INDEX, key, before, after)

        for name, fn in self._indexers.items():
            before = _values(fn, old.decode()) if old is not None else _NO_VALUES
            if new is None:
                after = _NO_VALUES
            else:
                after = _values(fn, decoded if decoded is not None else new.decode())
            if before != after:
                indexes = _reindex(indexes, name, key, before, after)
        return indexes


_EMPTY_KEYS: _Keys = immutables.Map()
_NO_VALUES: frozenset[str] = frozenset()


def _reindex(
    indexes: immutables.Map[str, _Index],
    name: str,
    key: str,
    before: frozenset[str],
    after: frozenset[str],
) -> immutables.Map[str, _Index]:
    with indexes[name].mutate() as changing:
        for value in before - after:
            keys = changing[value].delete(key)
            if keys:
                changing[value] = keys
            else:
                del changing[value]
        for value in after - before:
            changing[value] = changing.get(value, _EMPTY_KEYS).set(key, None)
        index = changing.finish()
    return indexes.set(name, index)


def _values(fn: IndexFunction, obj: Object) -> frozenset[str]:
    """The index values of ``obj``; an index function that fails leaves it unindexed.

    The object is still cached: a bug in one indexer must not cost the cache its truth.
    """
    try:
        value = fn(obj)
        if value is None:
            return _NO_VALUES
        values = frozenset((value,)) if isinstance(value, str) else frozenset(value)
        if not all(isinstance(v, str) for v in values):
            raise TypeError(f"index values must be strings, not {sorted(map(repr, values))}")
    except Exception:
        name = getattr(fn, "__name__", repr(fn))
        log.exception("index function %s failed on %s; the object stays unindexed there",
                      name, _describe(obj))
        return _NO_VALUES
    return values


def _describe(obj: Object) -> str:
    metadata = obj.get("metadata") or {}
    return "/".join(filter(None, (metadata.get("namespace"), metadata.get("name")))) or "?"


def _namespace_values(wire: WireObject) -> frozenset[str]:
    return frozenset((wire.namespace,)) if wire.namespace else _NO_VALUES


def _decoding(fn: IndexFunction) -> Callable[[WireObject], frozenset[str]]:
    return lambda wire: _values(fn, wire.decode())


def _build_index(
    objects: Mapping[str, WireObject], values: Callable[[WireObject], frozenset[str]]
) -> _Index:
    grouped: dict[str, dict[str, None]] = {}
    for key, wire in objects.items():
        for value in values(wire):
            grouped.setdefault(value, {})[key] = None
    return immutables.Map({value: immutables.Map(keys) for value, keys in grouped.items()})
