"""The cache: immutable snapshots, their indexes, and the fold that derives them."""

from rx_informer.store.events import Event, EventType
from rx_informer.store.snapshot import Snapshot

__all__ = ["Event", "EventType", "Snapshot"]
