"""A scriptable Kubernetes API server on a real loopback socket.

By default it serves one collection the way the API server does: paged lists with continue
tokens, watches from a resourceVersion with the changes made after it, bookmarks on request.
Tests change objects with ``add``/``modify``/``delete`` and those reach every open watch.

For faults, a test queues its own handler for the next request of a kind
(``server.script("list", handler)``); a handler gets the parsed request and a writer that can
send a JSON answer, stream chunks, pause, hold the connection open or drop it.

Every request and every connection close is recorded with its time, so tests can assert what
the server saw: how many lists, from which resourceVersion each watch started, and when the
client's socket closed on the server side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

Handler = Callable[["Request", "Writer"], Awaitable[None]]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)

    @property
    def kind(self) -> str:
        return "watch" if self.query.get("watch") == "true" else "list"


class Writer:
    """What a handler can do with the connection it answers."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self.streaming = False
        self.ended = False

    async def json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        head += f"Content-Length: {len(data)}\r\n"
        for name, value in (headers or {}).items():
            head += f"{name}: {value}\r\n"
        self._writer.write(head.encode() + b"\r\n" + data)
        await self._writer.drain()

    async def start_stream(self, status: int = 200) -> None:
        head = f"HTTP/1.1 {status} OK\r\nContent-Type: application/json\r\n"
        head += "Transfer-Encoding: chunked\r\n\r\n"
        self._writer.write(head.encode())
        await self._writer.drain()
        self.streaming = True

    async def send(self, data: bytes) -> None:
        self._writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        await self._writer.drain()

    async def event(self, event_type: str, obj: Any) -> None:
        await self.send(json.dumps({"type": event_type, "object": obj}).encode() + b"\n")

    async def end_stream(self) -> None:
        self._writer.write(b"0\r\n\r\n")
        await self._writer.drain()
        self.ended = True

    async def hold(self) -> None:
        """Keep the connection open and silent until the client goes away."""
        await asyncio.Event().wait()

    def drop(self) -> None:
        """Destroy the socket without finishing the response."""
        transport = self._writer.transport
        transport.abort()


def pod(name: str, version: int, namespace: str | None = "default", **extra: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "resourceVersion": str(version), "uid": f"uid-{name}"}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, **extra}


class FakeApiServer:
    """Serves one collection on ``url``; runs its own loop in a thread."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self._tls = tls
        self.objects: dict[str, dict[str, Any]] = {}
        self.version = 100
        self.requests: list[Request] = []
        self.closed: list[float] = []
        self.open_connections = 0
        #: When set, requests whose bearer token is not in it get 401.
        self.accepted_tokens: set[str] | None = None
        self._scripts: dict[str, list[Handler]] = {"list": [], "watch": []}
        self._watchers: list[asyncio.Queue[tuple[str, dict[str, Any]] | None]] = []
        self._history: list[tuple[int, str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self.url = ""

    # --- Lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeApiServer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        future.result(5)
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self._tls)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"{'https' if self._tls else 'http'}://127.0.0.1:{port}"

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def kubeconfig(self, path: str) -> str:
        with open(path, "w") as out:
            out.write(
                "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
                f"clusters:\n- name: fake\n  cluster:\n    server: {self.url}\n"
                "users:\n- name: u\n  user:\n    token: secret-token-123\n"
                "contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: u\n"
            )
        return path

    # --- Scripting and state ----------------------------------------------------------

    def script(self, kind: str, handler: Handler) -> None:
        """Answer the next ``kind`` ("list" or "watch") request with ``handler``."""
        self._scripts[kind].append(handler)

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self._change("ADDED", obj)

    def modify(self, obj: dict[str, Any]) -> dict[str, Any]:
        return self._change("MODIFIED", obj)

    def delete(self, name: str, namespace: str | None = "default") -> dict[str, Any]:
        key = f"{namespace}/{name}" if namespace else name
        return self._change("DELETED", self.objects[key])

    def _change(self, kind: str, obj: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self.version += 1
            obj = json.loads(json.dumps(obj))
            obj["metadata"]["resourceVersion"] = str(self.version)
            key = _key(obj)
            if kind == "DELETED":
                self.objects.pop(key, None)
            else:
                self.objects[key] = obj
            self._history.append((self.version, kind, obj))
            for queue in self._watchers:
                self._loop.call_soon_threadsafe(queue.put_nowait, (kind, obj))
        return obj

    def requests_of(self, kind: str) -> list[Request]:
        return [r for r in list(self.requests) if r.kind == kind]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Block until ``predicate()`` holds, or fail the test at the deadline."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout} s")
            time.sleep(0.005)

    # --- Serving --------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open_connections += 1
        carry = b""
        try:
            while True:
                request = await _read_request(reader, carry)
                carry = b""
                if request is None:
                    return
                self.requests.append(request)
                if not self._authorized(request):
                    await Writer(writer).json(401, {"kind": "Status", "code": 401,
                                                    "reason": "Unauthorized"})
                    continue
                scripted = self._scripts[request.kind]
                handler = scripted.pop(0) if scripted else self._default(request.kind)
                out = Writer(writer)
                present, carry = await _until_client_leaves(handler(request, out), reader)
                if not present:
                    return
                # Like the API server, keep the connection for the next request after a
                # stream that ended cleanly; a stream that did not end leaves it unusable.
                if out.streaming and not out.ended:
                    return
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError,
                ssl.SSLError):
            return
        finally:
            self.open_connections -= 1
            self.closed.append(time.monotonic())
            with contextlib.suppress(Exception):
                writer.close()

    def _authorized(self, request: Request) -> bool:
        if self.accepted_tokens is None:
            return True
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return token in self.accepted_tokens

    def _default(self, kind: str) -> Handler:
        return self._list if kind == "list" else self._watch

    async def _list(self, request: Request, out: Writer) -> None:
        with self._lock:
            items = sorted(self.objects.values(), key=_key)
            version = str(self.version)
        limit = int(request.query.get("limit", "0") or 0)
        start = int(request.query.get("continue", "0") or 0)
        page = items[start : start + limit] if limit else items[start:]
        following = start + len(page)
        token = str(following) if limit and following < len(items) else ""
        await out.json(200, {
            "kind": "PodList", "apiVersion": "v1",
            "metadata": {"resourceVersion": version, "continue": token},
            "items": page,
        })

    async def _watch(self, request: Request, out: Writer) -> None:
        since = int(request.query.get("resourceVersion", "0") or 0)
        queue: asyncio.Queue[tuple[str, dict[str, Any]] | None] = asyncio.Queue()
        with self._lock:
            backlog = [(k, o) for v, k, o in self._history if v > since]
            self._watchers.append(queue)
        await out.start_stream()
        try:
            for kind, obj in backlog:
                await out.event(kind, obj)
            while True:
                item = await queue.get()
                if item is None:
                    await out.end_stream()
                    return
                await out.event(*item)
        finally:
            with self._lock:
                self._watchers.remove(queue)

    def end_watches(self) -> None:
        """Close every open watch cleanly, as a server-side timeout does."""
        with self._lock:
            for queue in self._watchers:
                self._loop.call_soon_threadsafe(queue.put_nowait, None)


async def _until_client_leaves(
    answer: Awaitable[None], reader: asyncio.StreamReader
) -> tuple[bool, bytes]:
    """Run a handler while watching for the client's FIN.

    Returns whether the client is still there, and the byte the watch read if the client
    already sent its next request (it belongs to that request's first line).
    """
    handler = asyncio.ensure_future(answer)
    gone = asyncio.ensure_future(reader.read(1))
    try:
        done, _ = await asyncio.wait({handler, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        pending = [task for task in (handler, gone) if not task.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    early = gone.result() if gone.done() and not gone.cancelled() else b""
    if handler in done:
        handler.result()
        return True, early
    return bool(early), early


def _key(obj: dict[str, Any]) -> str:
    metadata = obj["metadata"]
    namespace = metadata.get("namespace")
    return f"{namespace}/{metadata['name']}" if namespace else metadata["name"]


async def _read_request(reader: asyncio.StreamReader, carry: bytes) -> Request | None:
    line = carry + await reader.readline()
    if not line:
        return None
    method, target, _ = line.decode().split(" ", 2)
    headers: dict[str, str] = {}
    while (header := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = header.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    parts = urlsplit(target)
    query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    return Request(method, parts.path, query, headers)
