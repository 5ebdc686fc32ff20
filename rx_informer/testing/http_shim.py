"""A plain-HTTP reverse proxy in front of an apiserver that fails requests on command.

Clients speak HTTP/1.1 without TLS or credentials to ``http://127.0.0.1:<port>``; the shim
sends each request on to the apiserver over TLS as the admin (the upstream's
``ssl_context()`` presents the client certificate) and relays the answer. Responses are
streamed: each piece of a watch reaches the client as soon as the apiserver sends it, and when
the client goes away the request to the apiserver is closed, which ends the watch there too.

:meth:`HttpShim.fail_next` makes the shim answer the next ``count`` requests that match a
predicate itself (429, 500, 503 with a Kubernetes ``Status`` body, ...) without asking the
apiserver, and :attr:`HttpShim.requests` records every request with the status it got.

Out of scope: protocol upgrades (``exec``, ``attach``, ``port-forward``), HTTP/2, and request
pipelining beyond reading ahead what a client sends early.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

import httpx

# The loop thread is shared with the fault proxy, where it was written first.
from rx_informer.testing.loop_thread import LoopThread

__all__ = ["HttpShim", "RequestMatcher", "ShimRequest", "Upstream"]

logger = logging.getLogger(__name__)

RequestMatcher = Callable[[str, str, Mapping[str, str]], bool]
"""``match(method, path, query) -> bool``: whether an injected failure applies to a request."""

# The most one read takes from either side: asyncio's default stream buffer limit.
_CHUNK = 64 * 1024

# A request head larger than this is refused with 431. Kubernetes clients send a few hundred
# bytes, a bearer token adds about 1 KiB; Go's net/http allows 1 MiB, 64 KiB is ample here.
_MAX_HEAD = 64 * 1024

# Upstream timeouts. The apiserver is on loopback and accepts in milliseconds: 10 s only
# bounds a hung one. No read timeout: a watch may stay quiet for minutes, and the apiserver
# ends every request itself (--min-request-timeout).
_UPSTREAM_TIMEOUT = httpx.Timeout(connect=10.0, read=None, write=10.0, pool=None)

# wait_for()'s default deadline: loopback events take milliseconds, and a test waiting on a
# condition that never comes should fail within seconds, not minutes.
_WAIT_TIMEOUT = 10.0

# Headers that describe one hop, not the message (RFC 9110, section 7.6.1), plus the framing
# and Host headers that each hop sets for itself, and Expect, which the shim answers itself.
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade", "host", "content-length", "expect",
})

# The reasons the apiserver puts into a Status for these codes (metav1.StatusReason).
_STATUS_REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
    405: "MethodNotAllowed", 409: "Conflict", 410: "Expired", 422: "Invalid",
    429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
}


class Upstream(Protocol):
    """What the shim needs of an apiserver; :class:`ControlPlane` is one."""

    @property
    def server(self) -> str: ...

    def ssl_context(self) -> ssl.SSLContext: ...


@dataclass(frozen=True)
class ShimRequest:
    """One request the shim received, and what it answered."""

    method: str
    path: str
    # The query string decoded; a repeated parameter keeps its last value.
    query: Mapping[str, str]
    # time.monotonic() when the request head had arrived.
    time: float
    status: int
    # True when fail_next() answered it, False when the apiserver did.
    injected: bool


@dataclass
class _Failure:
    remaining: int
    status: int
    headers: Mapping[str, str]
    body: bytes
    match: RequestMatcher


class _BadRequestError(Exception):
    """The client sent something that is not an HTTP/1.1 request the shim can parse."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(detail)
        self.status = status


@dataclass(frozen=True)
class _RequestHead:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]

    @property
    def path(self) -> str:
        return urllib.parse.urlsplit(self.target).path

    @property
    def query(self) -> dict[str, str]:
        query = urllib.parse.urlsplit(self.target).query
        return dict(urllib.parse.parse_qsl(query, keep_blank_values=True))

    def header(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key.lower() == name]
        return ", ".join(values) if values else None

    @property
    def keep_alive(self) -> bool:
        tokens = {token.strip().lower() for token in (self.header("connection") or "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


class _Inbound:
    """The client's half of a connection, buffered so that a watch for EOF loses no bytes."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._buffer = bytearray()

    async def read_until(self, separator: bytes, limit: int) -> bytes | None:
        """Bytes up to and including ``separator``; None if the client closed before any."""
        while (index := self._buffer.find(separator)) < 0:
            if len(self._buffer) > limit:
                raise _BadRequestError(431, f"no {separator!r} within {limit} bytes")
            if not await self._fill():
                if self._buffer:
                    raise _BadRequestError(400, "the client closed in the middle of a request")
                return None
        return self._take(index + len(separator))

    async def read_exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            if not await self._fill():
                raise _BadRequestError(400, "the client closed in the middle of a request body")
        return self._take(size)

    async def wait_closed(self) -> None:
        """Return when the client closes; anything it sends meanwhile waits in the buffer."""
        while await self._fill():
            pass

    async def _fill(self) -> bool:
        try:
            data = await self._reader.read(_CHUNK)
        except OSError:
            return False
        self._buffer += data
        return bool(data)

    def _take(self, size: int) -> bytes:
        taken = bytes(self._buffer[:size])
        del self._buffer[:size]
        return taken


class HttpShim:
    """Plain HTTP on ``127.0.0.1:<port>`` to an apiserver over TLS, with injected failures.

    ``upstream`` needs a ``server`` (https URL) and an ``ssl_context()`` that verifies it and
    presents a client certificate; a :class:`ControlPlane` has both.
    """

    def __init__(self, upstream: Upstream, *, listen_host: str = "127.0.0.1") -> None:
        self.upstream = upstream
        self.listen_host = listen_host

        self._loop_thread: LoopThread | None = None
        self._server: asyncio.Server | None = None
        self._client: httpx.AsyncClient | None = None
        # Touched only on the loop's thread.
        self._handlers: set[asyncio.Task[None]] = set()

        # Guards the failure rules and the record; wait_for() sleeps on it.
        self._changed = threading.Condition()
        self._failures: list[_Failure] = []
        self._requests: list[ShimRequest] = []

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> HttpShim:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def start(self) -> HttpShim:
        """Bind a free port and start relaying. Safe to call twice."""
        if self._server is not None:
            return self

        loop_thread = LoopThread(f"http-shim-{self.upstream.server}")
        loop_thread.start()
        self._server = loop_thread.run(self._start())
        self._loop_thread = loop_thread

        logger.debug("http shim %s -> %s started", self.url, self.upstream.server)
        return self

    def stop(self) -> None:
        """Close every connection, upstream ones included, and end the loop thread."""
        loop_thread, self._loop_thread = self._loop_thread, None
        if loop_thread is None:
            return

        loop_thread.run(self._shutdown())
        loop_thread.stop()
        self._server = None
        logger.debug("http shim to %s stopped", self.upstream.server)

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the http shim is not started; call start()")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def address(self) -> tuple[str, int]:
        return (self.listen_host, self.port)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, the server URL for clients."""
        return f"http://{self.listen_host}:{self.port}"

    # -- failures and the record --------------------------------------------------------------

    def fail_next(self, count: int, status: int, headers: Mapping[str, str] | None = None,
                  body: bytes | str | None = None,
                  match: RequestMatcher = lambda method, path, query: True) -> None:
        """Answer the next ``count`` requests for which ``match`` is true with ``status``.

        The body defaults to a Kubernetes ``Status`` object with this code and its usual
        reason, as JSON; ``headers`` are added to the answer (e.g. ``{"Retry-After": "1"}``).
        Rules apply in the order they were added; a request uses up at most one.
        """
        if count < 1:
            raise ValueError(f"fail_next needs a count >= 1, not {count}")
        if isinstance(body, str):
            body = body.encode()

        failure = _Failure(remaining=count, status=status, headers=dict(headers or {}),
                           body=_status_body(status) if body is None else body, match=match)
        with self._changed:
            self._failures.append(failure)
        logger.info("http shim: the next %d matching requests fail with %d", count, status)

    def clear_failures(self) -> None:
        """Forget every failure not yet used."""
        with self._changed:
            self._failures.clear()

    @property
    def requests(self) -> list[ShimRequest]:
        """Every request so far, oldest first (a copy)."""
        with self._changed:
            return list(self._requests)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = _WAIT_TIMEOUT) -> None:
        """Wait until ``predicate()`` is true; raise ``TimeoutError`` after ``timeout`` s.

        The predicate is checked at once and again after every recorded request.
        """
        with self._changed:
            if not self._changed.wait_for(predicate, timeout):
                raise TimeoutError(f"condition still false after {timeout} s; "
                                   f"{len(self._requests)} requests recorded")

    def write_kubeconfig(self, path: str | Path) -> Path:
        """Write a kubeconfig for ``http://127.0.0.1:<port>`` with no credentials."""
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "http-shim", "cluster": {"server": self.url}}],
            "users": [{"name": "anonymous", "user": {}}],
            "contexts": [{"name": "http-shim", "context": {
                "cluster": "http-shim", "user": "anonymous"}}],
            "current-context": "http-shim",
        }
        # JSON is YAML too, so every kubeconfig reader accepts it.
        destination = Path(path)
        destination.write_text(json.dumps(config, indent=2))
        return destination

    # -- internals: lifecycle -----------------------------------------------------------------

    async def _start(self) -> asyncio.Server:
        # trust_env=False: an HTTPS_PROXY of the environment must not reroute loopback traffic.
        self._client = httpx.AsyncClient(
            verify=self.upstream.ssl_context(), timeout=_UPSTREAM_TIMEOUT, trust_env=False,
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=None))
        return await asyncio.start_server(self._serve, self.listen_host, 0, limit=_CHUNK)

    async def _shutdown(self) -> None:
        assert self._server is not None and self._client is not None
        self._server.close()

        handlers = list(self._handlers)
        for handler in handlers:
            handler.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await self._client.aclose()

    # -- internals: one connection ------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer requests on one client connection until either side closes it."""
        handler = asyncio.current_task()
        assert handler is not None  # a connection callback always runs in a task
        self._handlers.add(handler)
        inbound = _Inbound(reader)

        try:
            while await self._exchange(inbound, writer):
                pass
        except _BadRequestError as error:
            logger.debug("http shim: bad request (%s)", error)
            writer.write(_response_head(error.status, [("Content-Length", "0")], close=True))
        except (OSError, asyncio.CancelledError):
            # The client went away, or the shim is stopping.
            pass
        finally:
            writer.close()
            self._handlers.discard(handler)

    async def _exchange(self, inbound: _Inbound, writer: asyncio.StreamWriter) -> bool:
        """Read one request and answer it; return whether the connection may go on."""
        raw_head = await inbound.read_until(b"\r\n\r\n", _MAX_HEAD)
        if raw_head is None:
            return False
        head = _parse_head(raw_head)
        arrived = time.monotonic()
        body = await _read_body(inbound, head, writer)

        failure = self._take_failure(head)
        if failure is not None:
            self._record(head, arrived, failure.status, injected=True)
            await _answer(writer, failure.status, failure.headers, failure.body, head)
            return head.keep_alive

        return await self._relay(head, body, inbound, writer, arrived)

    async def _relay(self, head: _RequestHead, body: bytes, inbound: _Inbound,
                     writer: asyncio.StreamWriter, arrived: float) -> bool:
        assert self._client is not None
        url = httpx.URL(self.upstream.server).copy_with(raw_path=head.target.encode())
        request = httpx.Request(head.method, url, content=body,
                                headers=_end_to_end(head.headers))

        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as error:
            # Often on purpose (a test stopped the apiserver): not worth a warning.
            logger.info("http shim: %s %s failed upstream: %r", head.method, head.path, error)
            self._record(head, arrived, 502, injected=False)
            await _answer(writer, 502, {}, _status_body(502, f"upstream failed: {error!r}"), head)
            return head.keep_alive

        try:
            self._record(head, arrived, response.status_code, injected=False)
            return await self._relay_response(response, head, inbound, writer)
        finally:
            # Closing an unfinished response closes its connection: the apiserver sees the
            # client leave and ends the request, a watch included.
            await response.aclose()

    async def _relay_response(self, response: httpx.Response, head: _RequestHead,
                              inbound: _Inbound, writer: asyncio.StreamWriter) -> bool:
        # httpx hands over no 1xx answer, so only these come without a body.
        has_body = head.method != "HEAD" and response.status_code not in (204, 304)
        headers = _end_to_end(response.headers.multi_items())
        length = response.headers.get("content-length")
        if length is not None:
            # Raw bytes are relayed, so the upstream's length (compressed, if so) still holds.
            headers.append(("Content-Length", length))
        elif has_body:
            headers.append(("Transfer-Encoding", "chunked"))

        writer.write(_response_head(response.status_code, headers, close=not head.keep_alive))
        await writer.drain()
        if not has_body:
            return head.keep_alive

        finished = await _relay_body(response, inbound, writer, chunked=length is None)
        if not finished:
            logger.debug("http shim: %s %s ended before its response did", head.method,
                         head.path)
        return finished and head.keep_alive

    def _take_failure(self, head: _RequestHead) -> _Failure | None:
        with self._changed:
            for failure in self._failures:
                if failure.match(head.method, head.path, head.query):
                    failure.remaining -= 1
                    if failure.remaining == 0:
                        self._failures.remove(failure)
                    return failure
        return None

    def _record(self, head: _RequestHead, arrived: float, status: int, *, injected: bool) -> None:
        logger.debug("http shim: %s %s -> %d%s", head.method, head.target, status,
                     " (injected)" if injected else "")
        with self._changed:
            self._requests.append(ShimRequest(head.method, head.path, head.query, arrived,
                                              status, injected))
            self._changed.notify_all()


# -- HTTP/1.1 framing ---------------------------------------------------------------------------


def _parse_head(raw: bytes) -> _RequestHead:
    lines = raw.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequestError(400, f"not an HTTP/1.x request line: {lines[0]!r}")
    method, target, version = parts

    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise _BadRequestError(400, f"malformed header line {line!r}")
        headers.append((name, value.strip()))

    return _RequestHead(method, target, version, headers)


async def _read_body(inbound: _Inbound, head: _RequestHead,
                     writer: asyncio.StreamWriter) -> bytes:
    if (head.header("expect") or "").lower() == "100-continue":
        # curl asks before sending a large body; without this it waits a second first.
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    if "chunked" in (head.header("transfer-encoding") or "").lower():
        return await _read_chunked(inbound)

    length = head.header("content-length")
    if length is None:
        return b""
    if not length.isdigit():
        raise _BadRequestError(400, f"bad Content-Length {length!r}")
    return await inbound.read_exactly(int(length))


async def _read_chunked(inbound: _Inbound) -> bytes:
    body = bytearray()
    while True:
        size_line = await inbound.read_until(b"\r\n", _MAX_HEAD)
        if size_line is None:
            raise _BadRequestError(400, "the client closed in the middle of a chunked body")
        try:
            # A chunk extension (";name=value") may follow the size.
            size = int(size_line.split(b";")[0].strip(), 16)
        except ValueError:
            raise _BadRequestError(400, f"bad chunk size line {size_line!r}") from None

        if size == 0:
            # Trailers, if any, end with an empty line like the head does.
            while await inbound.read_until(b"\r\n", _MAX_HEAD) not in (b"\r\n", None):
                pass
            return bytes(body)
        body += await inbound.read_exactly(size)
        await inbound.read_exactly(2)


def _end_to_end(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(name, value) for name, value in headers if name.lower() not in _HOP_BY_HOP]


def _response_head(status: int, headers: Iterable[tuple[str, str]], *, close: bool) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _answer(writer: asyncio.StreamWriter, status: int, headers: Mapping[str, str],
                  body: bytes, head: _RequestHead) -> None:
    """Send a complete answer the shim made up itself."""
    # httpx.Headers merges names case-insensitively, so a caller's content-type wins.
    merged = httpx.Headers({"Content-Type": "application/json"})
    merged.update(headers)
    fields = [*_end_to_end(merged.multi_items()), ("Content-Length", str(len(body)))]
    writer.write(_response_head(status, fields, close=not head.keep_alive))
    if head.method != "HEAD":
        writer.write(body)
    await writer.drain()


async def _relay_body(response: httpx.Response, inbound: _Inbound,
                      writer: asyncio.StreamWriter, *, chunked: bool) -> bool:
    """Relay the body until it ends (True) or until the client leaves or the apiserver breaks
    it off (False); either way the caller closes the upstream response."""
    copy = asyncio.create_task(_copy_body(response, writer, chunked))
    client_gone = asyncio.create_task(inbound.wait_closed())
    done, _ = await asyncio.wait({copy, client_gone}, return_when=asyncio.FIRST_COMPLETED)
    for task in (copy, client_gone):
        task.cancel()
    await asyncio.gather(copy, client_gone, return_exceptions=True)

    if copy not in done or copy.cancelled():
        return False
    if copy.exception() is not None:
        # Only an unfinished body can tell the client that the apiserver broke off.
        writer.transport.abort()
        return False
    return True


async def _copy_body(response: httpx.Response, writer: asyncio.StreamWriter,
                     chunked: bool) -> None:
    """Relay the body piece by piece as it arrives: watch events must not wait in a buffer."""
    async for piece in response.aiter_raw():
        if not piece:
            continue
        writer.write(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
        await writer.drain()

    if chunked:
        writer.write(b"0\r\n\r\n")
        await writer.drain()


def _status_body(code: int, message: str | None = None) -> bytes:
    """A Kubernetes Status object as the apiserver writes one for a failed request."""
    try:
        phrase = http.HTTPStatus(code).phrase
    except ValueError:
        phrase = "Unknown"
    status = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message or f"injected failure: {code} {phrase}",
        "reason": _STATUS_REASONS.get(code, ""),
        "code": code,
    }
    return json.dumps(status).encode()
