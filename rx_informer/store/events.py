"""What subscribers receive: the closed vocabulary of informer events."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rx_informer.errors import InformerError
    from rx_informer.store.snapshot import Snapshot


class EventType(enum.Enum):
    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"
    #: A (re)list completed: ``snapshot`` now matches the server.
    SYNCED = "SYNCED"
    #: A request failed; the informer recovers on its own. ``error`` says what happened.
    ERROR = "ERROR"


@dataclass(frozen=True, slots=True)
class Event:
    """One change of the cache, a sync, or a failure.

    - ADDED: ``object`` is new. MODIFIED: ``object`` replaced ``old`` (a resync re-delivers an
      unchanged object with ``old is object``). DELETED: ``object`` is the last known state,
      ``old`` what the cache held; ``final_state_unknown`` is true when the deletion was found
      by a relist, not seen in a watch, so ``object`` may be stale.
    - SYNCED: ``snapshot`` is the cache right after a complete list.
    - ERROR: ``error`` is an ``InformerError``.
    """

    type: EventType
    object: dict[str, Any] | None = None
    old: dict[str, Any] | None = None
    snapshot: Snapshot | None = None
    error: InformerError | None = None
    final_state_unknown: bool = False

    def __repr__(self) -> str:
        if self.type is EventType.SYNCED and self.snapshot is not None:
            return f"Event(SYNCED, {len(self.snapshot)} objects)"
        if self.type is EventType.ERROR:
            return f"Event(ERROR, {self.error})"
        metadata = (self.object or {}).get("metadata") or {}
        name = "/".join(filter(None, (metadata.get("namespace"), metadata.get("name"))))
        suffix = ", final state unknown" if self.final_state_unknown else ""
        return f"Event({self.type.value}, {name}@{metadata.get('resourceVersion')}{suffix})"
