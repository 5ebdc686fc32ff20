"""Objects as the server sent them: JSON bytes plus the few metadata fields the informer needs.

Why bytes: a decoded pod costs several times its JSON in Python objects, and holding tens of
thousands of them makes every run of the cyclic garbage collector walk millions of containers.
The informer itself only needs an object's name, namespace and resourceVersion, so those are
read eagerly with a schema-driven decoder (msgspec) that skips everything else without building
it, and the JSON bytes are kept as they came. The full dict is decoded when someone asks for it
(``WireObject.decode``), and that dict belongs to the caller: mutating it cannot corrupt a
snapshot.

Alternatives weighed: caching dicts (simple, but 5-8x the JSON in memory and slow under the
GC); a decoded dict made lazily on first access and kept (memory grows back as soon as a
subscriber touches each object once); compressing the bytes (smaller, but every read pays
for it). Keeping bytes costs one decode per read; heavy readers can keep what they decode.
"""

from __future__ import annotations

from typing import Any

import msgspec
import orjson

Object = dict[str, Any]


class _Metadata(msgspec.Struct):
    name: str = ""
    namespace: str = ""
    resourceVersion: str = ""  # noqa: N815 - the API's field name


class _Skimmed(msgspec.Struct):
    metadata: _Metadata | None = None


class _ListMetadata(msgspec.Struct):
    resourceVersion: str = ""  # noqa: N815
    # "continue" is a Python keyword: renamed in the schema, kept on the wire.
    continue_token: str = msgspec.field(default="", name="continue")


class _Page(msgspec.Struct):
    metadata: _ListMetadata
    items: list[msgspec.Raw] | None = None


_skim = msgspec.json.Decoder(_Skimmed)
_page = msgspec.json.Decoder(_Page)

DecodeError = (
    msgspec.DecodeError, msgspec.ValidationError, orjson.JSONDecodeError, ValueError
)


class WireObject:
    """One object: its JSON bytes and its identity. Immutable.

    Invariant: ``raw`` is a JSON object whose metadata holds ``name``, ``namespace`` (empty
    for cluster-scoped objects) and ``resource_version``.
    """

    __slots__ = ("key", "name", "namespace", "raw", "resource_version")

    def __init__(self, raw: bytes, name: str, namespace: str, resource_version: str) -> None:
        self.raw = raw
        self.name = name
        self.namespace = namespace
        self.resource_version = resource_version
        #: ``namespace/name``, or ``name`` for cluster-scoped objects.
        self.key = f"{namespace}/{name}" if namespace else name

    @classmethod
    def from_bytes(cls, raw: bytes) -> WireObject:
        """Read the identity of a serialised object; raises ``DecodeError`` if it has none."""
        metadata = _skim.decode(raw).metadata
        if metadata is None or not metadata.name or not metadata.resourceVersion:
            raise msgspec.ValidationError("object without metadata.name or resourceVersion")
        return cls(raw, metadata.name, metadata.namespace, metadata.resourceVersion)

    @classmethod
    def from_dict(cls, obj: Object) -> WireObject:
        """Serialise a dict (from a transform, or a user's list function)."""
        return cls.from_bytes(orjson.dumps(obj))

    def decode(self) -> Object:
        """A fresh dict of the whole object; the caller owns it."""
        result: Object = orjson.loads(self.raw)
        return result

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WireObject) and other.raw == self.raw

    def __hash__(self) -> int:
        return hash(self.raw)

    def __repr__(self) -> str:
        return f"<{self.key}@{self.resource_version}>"


#: How the API server starts each watch line, per event type: the object follows directly.
_PREFIXES = {
    kind: b'{"type":"' + kind.encode() + b'","object":'
    for kind in ("ADDED", "MODIFIED", "DELETED", "BOOKMARK")
}


class MalformedLineError(ValueError):
    """A watch line that is valid JSON but not a watch event."""


def decode_event(line: bytes) -> tuple[str, WireObject | None, Object | None, Object | None]:
    """Decode one watch line: its type, the object's wire form and, decoded, the object.

    Unlike list pages, a watch event is decoded in full at once: it is delivered right away
    and nearly every subscriber reads its object, so one full parse now is cheaper than a
    skim now and a parse on first access. The dict is released after delivery.
    For ERROR events the third item is the ``Status`` and there is no object.
    BOOKMARK objects carry only a resourceVersion; their name is empty.
    Raises one of ``DecodeError`` for anything that is not a watch event.
    """
    event = orjson.loads(line)
    try:
        event_type, obj = event["type"], event["object"]
        if event_type == "ERROR":
            return event_type, None, obj, None
        metadata = obj["metadata"]
        version = metadata["resourceVersion"]
        name = metadata.get("name") or ""
        namespace = metadata.get("namespace") or ""
    except (KeyError, TypeError, AttributeError) as exc:
        raise MalformedLineError(f"not a watch event: no {exc}") from None

    if type(event_type) is not str or type(obj) is not dict:
        raise MalformedLineError("a watch event needs a string type and an object")
    if type(version) is not str or not version:
        raise MalformedLineError(f"{event_type} event without metadata.resourceVersion")
    if type(name) is not str or (not name and event_type != "BOOKMARK"):
        raise MalformedLineError(f"{event_type} event without metadata.name")

    # The API server writes exactly {"type":"...","object":{...}}: then the object's bytes
    # are a slice of the line. Anything else (reordered or extra keys, a trailing blank)
    # is re-serialised rather than trusted.
    prefix = _PREFIXES.get(event_type)
    if prefix is not None and len(event) == 2 and line.startswith(prefix) and line[-1] == 125:
        raw = line[len(prefix) : -1]
    else:
        raw = orjson.dumps(obj)
    return event_type, WireObject(raw, name, str(namespace), version), None, obj


def decode_page(body: bytes) -> tuple[list[WireObject], str, str]:
    """Decode one list page: its objects, resourceVersion and continue token."""
    page = _page.decode(body)
    items = [WireObject.from_bytes(bytes(item)) for item in page.items or ()]
    if not page.metadata.resourceVersion:
        raise msgspec.ValidationError("list without metadata.resourceVersion")
    return items, page.metadata.resourceVersion, page.metadata.continue_token
