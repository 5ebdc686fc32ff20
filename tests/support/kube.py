"""Small helpers for tests that talk to the real kube-apiserver over plain httpx."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx

from rx_informer import Cluster, EventType, Informer
from rx_informer.testing.invariant import InvariantChecker
from tests.conftest import Recorder


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def watch_events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    """Decode a watch stream, splitting on b"\\n" only (a JSON string may hold U+2028)."""
    buffer = b""
    for chunk in response.iter_bytes():
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield json.loads(line)


def watch_checked(
    informer: Informer, cluster: Cluster, timeout: float
) -> tuple[InvariantChecker, Recorder]:
    """Start ``informer`` under the invariant checker and a recorder; wait for its sync."""
    checker = InvariantChecker(informer, cluster).start()
    recorder = Recorder()
    informer.events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED, timeout=timeout)
    return checker, recorder
