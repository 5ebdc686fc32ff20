"""What subscribers receive: the closed vocabulary of informer events."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rx_informer.errors import InformerError
    from rx_informer.protocol.wire import WireObject
    from rx_informer.store.snapshot import Snapshot


class EventType(enum.Enum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    #: A (re)list completed: ``snapshot`` now matches the server.
    SYNCED = "SYNCED"
    #: A request failed; the informer recovers on its own. ``error`` says what happened.
    ERROR = "ERROR"


class Event:
    """One change of the cache, a sync, or a failure. Immutable.

    - ADDED: ``object`` is new. MODIFIED: ``object`` replaced ``old`` (a resync re-delivers an
      unchanged object with ``old is object``). DELETED: ``object`` is the last known state,
      ``old`` what the cache held; ``final_state_unknown`` is true when the deletion was found
      by a relist, not seen in a watch, so ``object`` may be stale.
    - SYNCED: ``snapshot`` is the cache right after a complete list.
    - ERROR: ``error`` is an ``InformerError``.

    ``object`` and ``old`` are decoded from the wire bytes on first access and kept while the
    subscriber handles the event; after it returns, the informer drops the decoded dicts (see
    ``release``). ``name``, ``namespace``, ``key`` and ``resource_version`` cost nothing.
    """

    __slots__ = (
        "_decoded", "_error", "_final_state_unknown", "_old", "_old_decoded", "_snapshot",
        "_type", "_wire",
    )

    def __init__(
        self,
        type: EventType,
        wire: WireObject | None = None,
        old: WireObject | None = None,
        *,
        snapshot: Snapshot | None = None,
        error: InformerError | None = None,
        final_state_unknown: bool = False,
        decoded: dict[str, Any] | None = None,
    ) -> None:
        self._type = type
        self._snapshot = snapshot
        self._error = error
        self._final_state_unknown = final_state_unknown
        self._wire = wire
        self._old = old
        self._decoded = decoded
        self._old_decoded: dict[str, Any] | None = None

    # Read-only: one event object goes to every subscriber, so none may change it for the next.

    @property
    def type(self) -> EventType:
        return self._type

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    @property
    def error(self) -> InformerError | None:
        return self._error

    @property
    def final_state_unknown(self) -> bool:
        return self._final_state_unknown

    @property
    def object(self) -> dict[str, Any] | None:
        """The object as a dict (``None`` for SYNCED and ERROR)."""
        if self._decoded is None and self._wire is not None:
            self._decoded = self._wire.decode()
        return self._decoded

    @property
    def old(self) -> dict[str, Any] | None:
        """The previous state (MODIFIED, DELETED), else ``None``."""
        if self._old is None:
            return None
        if self._old is self._wire:
            return self.object
        if self._old_decoded is None:
            self._old_decoded = self._old.decode()
        return self._old_decoded

    def release(self) -> None:
        """Forget the decoded dicts; the next access decodes again.

        Called after each delivery, so that a relist of 50,000 objects does not keep 50,000
        decoded dicts alive until its last event has reached its last subscriber. A subscriber
        that keeps ``event.object`` keeps its own reference and loses nothing.
        """
        if self._wire is not None:
            self._decoded = None
            self._old_decoded = None

    @property
    def wire(self) -> WireObject | None:
        """The object as received: JSON bytes and identity, without decoding."""
        return self._wire

    @property
    def name(self) -> str | None:
        return self._wire.name if self._wire is not None else None

    @property
    def namespace(self) -> str | None:
        return (self._wire.namespace or None) if self._wire is not None else None

    @property
    def key(self) -> str | None:
        return self._wire.key if self._wire is not None else None

    @property
    def resource_version(self) -> str | None:
        return self._wire.resource_version if self._wire is not None else None

    def __repr__(self) -> str:
        if self.type is EventType.SYNCED and self.snapshot is not None:
            return f"Event(SYNCED, {len(self.snapshot)} objects)"
        if self.type is EventType.ERROR:
            return f"Event(ERROR, {self.error})"
        suffix = ", final state unknown" if self.final_state_unknown else ""
        return f"Event({self.type.value}, {self.key}@{self.resource_version}{suffix})"
