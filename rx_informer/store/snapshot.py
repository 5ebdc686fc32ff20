"""An immutable view of the cache, cheap to derive from the previous one.

Objects are kept in a persistent hash map (``immutables.Map``, a HAMT): each change makes a new
snapshot that shares all but a few nodes with the old one, so every subscriber can keep the
snapshot it was handed, and readers on any thread never need a lock. A copy-on-write dict
would cost O(n) per event; a mutable dict behind a lock would make snapshots unsafe to keep.

Indexes map a value (a namespace, a node name, ...) to the keys of the objects that have it,
in the same kind of map, and are updated only where an object's values changed.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import immutables

Object = dict[str, Any]
IndexFunction = Callable[[Object], "str | Iterable[str] | None"]
_Keys = immutables.Map[str, None]
_Index = immutables.Map[str, _Keys]

NAMESPACE_INDEX = "namespace"


def object_key(obj: Mapping[str, Any]) -> str:
    """``namespace/name`` for namespaced objects, ``name`` for cluster-scoped ones."""
    metadata = obj["metadata"]
    namespace = metadata.get("namespace")
    return f"{namespace}/{metadata['name']}" if namespace else str(metadata["name"])


def resource_version(obj: Mapping[str, Any]) -> str | None:
    version = obj.get("metadata", {}).get("resourceVersion")
    return str(version) if version is not None else None


def _namespace_of(obj: Object) -> str | None:
    namespace = obj["metadata"].get("namespace")
    return str(namespace) if namespace else None


class Snapshot:
    """The cache at one moment. Immutable and safe to read from any thread."""

    __slots__ = ("_indexers", "_indexes", "_objects", "has_synced", "resource_version")

    def __init__(
        self,
        objects: immutables.Map[str, Object],
        indexes: immutables.Map[str, _Index],
        indexers: Mapping[str, IndexFunction],
        resource_version: str | None,
        has_synced: bool,
    ) -> None:
        self._objects = objects
        self._indexes = indexes
        self._indexers = indexers
        #: The newest resourceVersion the cache reflects (bookmarks included).
        self.resource_version = resource_version
        #: Whether a complete list has been applied, i.e. the cache matched the server once.
        self.has_synced = has_synced

    @classmethod
    def empty(cls, indexers: Mapping[str, IndexFunction] | None = None) -> Snapshot:
        every: dict[str, IndexFunction] = {NAMESPACE_INDEX: _namespace_of, **(indexers or {})}
        indexes: immutables.Map[str, _Index] = immutables.Map(
            {name: immutables.Map() for name in every}
        )
        return cls(immutables.Map(), indexes, every, None, False)

    # --- Reading -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._objects)

    def __iter__(self) -> Iterator[Object]:
        return iter(self._objects.values())

    def __contains__(self, key: object) -> bool:
        return key in self._objects

    def __repr__(self) -> str:
        return f"<Snapshot of {len(self)} objects at resourceVersion {self.resource_version}>"

    def list(self, namespace: str | None = None) -> builtins.list[Object]:
        """Every object, or those of one namespace."""
        if namespace is None:
            return list(self._objects.values())
        return self.by_index(NAMESPACE_INDEX, namespace)

    def get(self, name: str, namespace: str | None = None) -> Object | None:
        """One object by name (and namespace, for namespaced resources), or ``None``."""
        return self._objects.get(f"{namespace}/{name}" if namespace else name)

    def get_by_key(self, key: str) -> Object | None:
        """One object by ``namespace/name`` (or ``name``) key, or ``None``."""
        return self._objects.get(key)

    def keys(self) -> builtins.list[str]:
        return list(self._objects.keys())

    def by_index(self, index: str, value: str) -> builtins.list[Object]:
        """The objects for which indexer ``index`` returned ``value``."""
        try:
            keys = self._indexes[index].get(value, ())
        except KeyError:
            raise KeyError(
                f"no index {index!r}; known: {sorted(self._indexes.keys())}"
            ) from None
        return [self._objects[key] for key in keys]

    def index_values(self, index: str) -> builtins.list[str]:
        """The values that index ``index`` currently holds."""
        return list(self._indexes[index].keys())

    # --- Deriving the next snapshot -------------------------------------------------------

    def with_object(
        self, key: str, obj: Object, old: Object | None, version: str | None
    ) -> Snapshot:
        """A snapshot where ``key`` holds ``obj`` (``old`` is what it held, if anything)."""
        indexes = self._reindexed(key, old, obj)
        return Snapshot(
            self._objects.set(key, obj), indexes, self._indexers, version, self.has_synced
        )

    def without_object(self, key: str, old: Object, version: str | None) -> Snapshot:
        indexes = self._reindexed(key, old, None)
        return Snapshot(
            self._objects.delete(key), indexes, self._indexers, version, self.has_synced
        )

    def at_version(self, version: str | None) -> Snapshot:
        return Snapshot(self._objects, self._indexes, self._indexers, version, self.has_synced)

    def replaced(self, objects: Mapping[str, Object], version: str) -> Snapshot:
        """A synced snapshot holding exactly ``objects``, built in one pass."""
        indexes = {name: _build_index(objects, fn) for name, fn in self._indexers.items()}
        return Snapshot(
            immutables.Map(objects), immutables.Map(indexes), self._indexers, version, True
        )

    def _reindexed(
        self, key: str, old: Object | None, new: Object | None
    ) -> immutables.Map[str, _Index]:
        indexes = self._indexes
        for name, fn in self._indexers.items():
            before = _values(fn, old)
            after = _values(fn, new)
            if before == after:
                continue
            index = indexes[name]
            with index.mutate() as changing:
                for value in before - after:
                    keys = changing[value].delete(key)
                    if keys:
                        changing[value] = keys
                    else:
                        del changing[value]
                for value in after - before:
                    changing[value] = changing.get(value, _EMPTY_KEYS).set(key, None)
                index = changing.finish()
            indexes = indexes.set(name, index)
        return indexes


_EMPTY_KEYS: _Keys = immutables.Map()
_NO_VALUES: frozenset[str] = frozenset()


def _values(fn: IndexFunction, obj: Object | None) -> frozenset[str]:
    if obj is None:
        return _NO_VALUES
    value = fn(obj)
    if value is None:
        return _NO_VALUES
    if isinstance(value, str):
        return frozenset((value,))
    return frozenset(value)


def _build_index(objects: Mapping[str, Object], fn: IndexFunction) -> _Index:
    grouped: dict[str, dict[str, None]] = {}
    for key, obj in objects.items():
        for value in _values(fn, obj):
            grouped.setdefault(value, {})[key] = None
    return immutables.Map({value: immutables.Map(keys) for value, keys in grouped.items()})
