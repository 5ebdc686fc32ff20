"""Kubernetes informers as hot, ref-counted ReactiveX observables over httpx.

Layers, each importing only from the ones above it::

    errors                      one exception tree
    connection                  Cluster (kubeconfig, in-cluster, credentials), ResourceRef
    protocol                    list/watch state machine, HTTP transport, driver
    streams                     sharing operator, loop selection
    store                       snapshots, indexes, the fold that derives them, events
    informer                    Informer, InformerFactory
    facade                      make_informer, EVENT (the imperative API)
    testing                     control plane, invariant checker (import explicitly)
"""

from rx_informer.connection import Cluster, ResourceRef
from rx_informer.errors import (
    ConfigError,
    ConnectError,
    GoneError,
    InactivityError,
    InformerError,
    InvalidResourceError,
    MalformedError,
    RequestError,
    StatusError,
    TransformError,
)
from rx_informer.facade import EVENT, SeedInformer, StartFuture, make_informer
from rx_informer.informer import Informer, InformerFactory
from rx_informer.protocol.backoff import Backoff
from rx_informer.protocol.transport import Timeouts
from rx_informer.protocol.watcher import Statistics
from rx_informer.store import Event, EventType, Snapshot

__all__ = [
    "EVENT",
    "Backoff",
    "Cluster",
    "ConfigError",
    "ConnectError",
    "Event",
    "EventType",
    "GoneError",
    "InactivityError",
    "Informer",
    "InformerError",
    "InformerFactory",
    "InvalidResourceError",
    "MalformedError",
    "RequestError",
    "ResourceRef",
    "SeedInformer",
    "Snapshot",
    "StartFuture",
    "Statistics",
    "StatusError",
    "Timeouts",
    "TransformError",
    "make_informer",
]
