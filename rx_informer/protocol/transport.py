"""List and watch requests over httpx, turned into the state machine's inputs.

This is the one place where httpx exceptions become ``rx_informer.errors``; everything above
sees only ``RequestError`` subclasses.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from rx_informer.connection import Cluster, ResourceRef
from rx_informer.errors import (
    ConnectError,
    InactivityError,
    MalformedError,
    RequestError,
)
from rx_informer.protocol.lines import LineSplitter
from rx_informer.protocol.machine import (
    EventReceived,
    Input,
    PageReceived,
    RequestFailed,
    StreamEnded,
    status_error,
)
from rx_informer.protocol.wire import DecodeError, decode_event, decode_page

_JSON = {"Accept": "application/json"}


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. The defaults and where they come from.

    ``inactivity``: the API server sends a bookmark about once a minute on an idle watch, so
    90 s without a byte means a dead connection (kopf uses 70 s; we leave more slack).
    ``watch_min``/``watch_max``: the range ``timeoutSeconds`` is drawn from, client-go's.
    ``connect`` and ``list_read``: generous for a busy API server building a large page.
    """

    connect: float = 10.0
    list_read: float = 60.0
    inactivity: float = 90.0
    watch_min: float = 300.0
    watch_max: float = 600.0

    def __post_init__(self) -> None:
        if min(self.connect, self.list_read, self.inactivity) <= 0:
            raise ValueError(f"timeouts {self} must be positive")
        if not 0 < self.watch_min <= self.watch_max:
            raise ValueError(f"timeouts {self}: need 0 < watch_min <= watch_max")


class Transport:
    """Performs one list page or one watch for a resource and reports what came of it."""

    def __init__(self, cluster: Cluster, ref: ResourceRef, timeouts: Timeouts) -> None:
        self._cluster = cluster
        self._ref = ref
        self._timeouts = timeouts
        self._resource = ref.describe()
        extensions: dict[str, Any] = {}
        if cluster.tls_server_name:
            extensions["sni_hostname"] = cluster.tls_server_name
        self._extensions = extensions

    async def list_page(
        self, client: httpx.AsyncClient, limit: int, continue_token: str | None
    ) -> Input:
        """Fetch one page of the list."""
        url = f"{self._ref.path}?{self._ref.query(limit=limit, **{'continue': continue_token})}"
        timeout = httpx.Timeout(self._timeouts.list_read, connect=self._timeouts.connect)

        try:
            with self._translate("list"):
                response = await client.get(
                    url, headers=await self._headers(), timeout=timeout, extensions=self._extensions
                )
        except RequestError as exc:
            return _failed_now(exc)
        if response.status_code != 200:
            return self._failed(response, "list", response.content)

        try:
            items, version, continue_token = decode_page(response.content)
        except DecodeError as exc:
            return _failed_now(MalformedError(f"list {self._resource}: not a list: {exc}"))
        return PageReceived(items, version, continue_token)

    async def watch(
        self, client: httpx.AsyncClient, resource_version: str, timeout_seconds: int
    ) -> AsyncGenerator[Input, None]:
        """Watch from ``resource_version``; yields events, then how the stream ended."""
        query = self._ref.query(
            watch="true",
            resourceVersion=resource_version,
            allowWatchBookmarks="true",
            timeoutSeconds=timeout_seconds,
        )
        timeout = httpx.Timeout(self._timeouts.inactivity, connect=self._timeouts.connect)
        started, events = time.monotonic(), 0

        request = client.build_request(
            "GET",
            f"{self._ref.path}?{query}",
            headers=await self._headers(),
            timeout=timeout,
            extensions=self._extensions,
        )
        try:
            with self._translate("watch"):
                response = await client.send(request, stream=True)
        except RequestError as exc:
            yield _failed_now(exc)
            return

        try:
            if response.status_code != 200:
                with self._translate("watch"):
                    body = await response.aread()
                yield self._failed(response, "watch", body)
                return

            splitter = LineSplitter()
            with self._translate("watch"):
                async for chunk in response.aiter_raw():
                    for line in splitter.feed(chunk):
                        events += 1
                        yield self._event(line)
        except RequestError as exc:
            yield _failed_now(exc)
            return
        finally:
            await response.aclose()

        if splitter.pending:
            cut = ConnectError(f"watch {self._resource}: stream ended inside a line")
            yield _failed_now(cut)
            return
        yield StreamEnded(time.monotonic() - started, events, time.monotonic())

    def _event(self, line: bytes) -> Input:
        try:
            event_type, obj, status, decoded = decode_event(line)
        except DecodeError as exc:
            preview = line[:80].decode("utf-8", "replace")
            error = MalformedError(f"watch {self._resource}: bad line {preview!r}: {exc}")
            return _failed_now(error)
        return EventReceived(event_type, obj, status, decoded, time.monotonic())

    def _failed(self, response: httpx.Response, verb: str, body: bytes) -> Input:
        """An error response: its Status if it sent one, else the bare HTTP status."""
        try:
            status: Any = orjson.loads(body)
        except orjson.JSONDecodeError:
            status = None

        # A 200 that carries a single ERROR event (a non-chunked watch answer) is a Status too.
        if isinstance(status, dict) and status.get("type") == "ERROR":
            status = status.get("object")
        if not isinstance(status, dict) or status.get("kind") != "Status":
            status = {"code": response.status_code, "message": response.reason_phrase}
        status.setdefault("code", response.status_code)

        retry_after = _retry_after(response)
        error = status_error(status, verb, self._resource, retry_after)
        return _failed_now(error)

    async def _headers(self) -> dict[str, str]:
        # Renewing an expired exec credential runs the plugin: in a worker thread, so that a
        # slow or hung plugin cannot stall the event loop every informer of the process
        # shares. Static credentials need no thread.
        if self._cluster.credentials_may_block:
            return {**_JSON, **await asyncio.to_thread(self._cluster.auth_headers)}
        return {**_JSON, **self._cluster.auth_headers()}

    @contextlib.contextmanager
    def _translate(self, verb: str) -> Iterator[None]:
        """Turn httpx's exceptions into ours, naming the verb and resource."""
        try:
            yield
        except httpx.ReadTimeout as exc:
            quiet = self._timeouts.inactivity if verb == "watch" else self._timeouts.list_read
            raise InactivityError(
                f"{verb} {self._resource}: no data for {quiet:g} s",
                verb=verb,
                resource=self._resource,
            ) from exc
        except httpx.TransportError as exc:
            detail = str(exc) or "connection failed"
            if "CERTIFICATE_VERIFY_FAILED" in detail:
                detail += (
                    "; check certificate-authority and tls-server-name in the kubeconfig"
                )
            raise ConnectError(
                f"{verb} {self._resource}: {type(exc).__name__}: {detail}",
                verb=verb,
                resource=self._resource,
            ) from exc


def _failed_now(error: RequestError) -> RequestFailed:
    return RequestFailed(error, time.monotonic())


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None

