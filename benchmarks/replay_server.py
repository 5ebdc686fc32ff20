"""A replay apiserver: pre-generated pod lists and watch streams over plain HTTP/1.1.

Run it as its own process:

    python -m benchmarks.replay_server --pods 10000 --events 200000

It builds every byte it will serve before it listens, then prints one JSON line on stdout
(`{"port": ..., "list_resource_version": ..., ...}`) and serves until killed:

- `GET /api/v1/pods?limit=N&continue=T`: a page of a PodList; without `limit`, the whole
  list in one response. Pods carry resource versions 1..P; the list is at version P.
- `GET /api/v1/pods?watch=true&resourceVersion=X`: a chunked stream of `MODIFIED` events with
  versions after X, written as fast as the socket takes them, then held open until the client
  goes (`--watch-end hold`) or ended with the last chunk (`--watch-end close`).
  `sendInitialEvents=true` is answered 422, as an apiserver without streaming lists does,
  so clients that try it first fall back to a list.
- `GET /version`, `/api`, `/api/v1`, `/apis` (plain and aggregated discovery): just enough
  for clients that look the pod resource up before listing.
- `GET /stats`: connection counts (`api_total` leaves out connections that only asked for
  /stats) and, for every watch that ended, when the server saw it end (`time.monotonic()`,
  which is one clock for all processes on Linux). `/stats?reset=1` clears the totals and
  that history.

One thread per connection with blocking sockets: `sendall` copies straight from the
pre-built bytes to the kernel, so the server costs little CPU beside the client it feeds.
Other query parameters (timeoutSeconds, labelSelector, allowWatchBookmarks, ...) are accepted
and ignored.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import dataclasses
import logging
import socket
import sys
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from benchmarks import pods

logger = logging.getLogger(__name__)

#: Watch events are grouped into chunks of about this size; big writes keep the server cheap.
CHUNK_TARGET_BYTES = 64 * 1024

_REASONS = {200: "OK", 404: "Not Found", 410: "Gone", 422: "Unprocessable Entity"}


@dataclasses.dataclass
class Replay:
    """Everything the server will send, built before it listens."""

    pod_templates: list[bytes]
    list_rv: int
    #: Framed chunks of the watch stream, in order.
    chunks: list[bytes]
    #: Index of the first event of each chunk. Invariant: sorted, chunk_first_event[0] == 0.
    chunk_first_event: list[int]
    #: Byte offsets of each event inside its chunk's payload (after the size line).
    chunk_event_offsets: list[list[int]]
    event_count: int
    pages: dict[tuple[int, int], bytes] = dataclasses.field(default_factory=dict)
    pages_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


@dataclasses.dataclass
class Stats:
    """Connection counts, read through GET /stats."""

    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    open: int = 0
    total: int = 0
    #: Connections whose first request was for the API, not /stats: what a client opened.
    api_total: int = 0
    watch_open: int = 0
    watch_total: int = 0
    list_requests: int = 0
    #: Watches that asked for a streaming list (sendInitialEvents) and were refused.
    streaming_lists_refused: int = 0
    watch_closed_at: list[float] = dataclasses.field(default_factory=list)

    def as_json(self) -> bytes:
        with self.lock:
            return orjson.dumps({
                "open": self.open, "total": self.total, "api_total": self.api_total,
                "watch_open": self.watch_open,
                "watch_total": self.watch_total, "list_requests": self.list_requests,
                "streaming_lists_refused": self.streaming_lists_refused,
                "watch_closed_at": self.watch_closed_at, "now": time.monotonic(),
            })

    def reset(self) -> None:
        with self.lock:
            self.total = self.open
            self.api_total = 0
            self.watch_total = self.watch_open
            self.list_requests = 0
            self.streaming_lists_refused = 0
            self.watch_closed_at = []


def _frame(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


def build_replay(pod_count: int, event_count: int, seed: int) -> Replay:
    """Serialise the pods and every watch event up front."""
    templates = [pods.pod_bytes(seed, index) for index in range(pod_count)]

    chunks: list[bytes] = []
    first_events: list[int] = []
    offsets: list[list[int]] = []
    pending: list[bytes] = []
    pending_offsets: list[int] = []
    size = 0
    for event in range(event_count):
        if size >= CHUNK_TARGET_BYTES:
            chunks.append(_frame(b"".join(pending)))
            offsets.append(pending_offsets)
            pending, pending_offsets, size = [], [], 0
        if not pending:
            first_events.append(event)
        obj = pods.with_rv(templates[event % pod_count], pod_count + event + 1)
        line = b'{"type":"MODIFIED","object":' + obj + b"}\n"
        pending.append(line)
        pending_offsets.append(size)
        size += len(line)
    if pending:
        chunks.append(_frame(b"".join(pending)))
        offsets.append(pending_offsets)

    return Replay(templates, pod_count, chunks, first_events, offsets, event_count)


def _status(code: int, reason: str, message: str) -> bytes:
    return orjson.dumps({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code,
    })


_POD_KIND = {"group": "", "version": "v1", "kind": "Pod"}
_VERBS = ["get", "list", "watch"]


def _discovery(path: str, accept: str) -> bytes | None:
    """Version and discovery documents, for clients that look the pod resource up first."""
    aggregated = "as=APIGroupDiscoveryList" in accept
    if path == "/version":
        return orjson.dumps({"major": "1", "minor": "37", "gitVersion": "v1.37.0-replay"})
    if path == "/api" and aggregated:
        resource: dict[str, Any] = {
            "resource": "pods", "responseKind": _POD_KIND, "scope": "Namespaced",
            "singularResource": "pod", "verbs": _VERBS,
        }
        group = {"metadata": {"name": ""}, "versions": [
            {"version": "v1", "resources": [resource], "freshness": "Current"}]}
        return orjson.dumps({"kind": "APIGroupDiscoveryList",
                             "apiVersion": "apidiscovery.k8s.io/v2", "items": [group]})
    if path == "/apis" and aggregated:
        return orjson.dumps({"kind": "APIGroupDiscoveryList",
                             "apiVersion": "apidiscovery.k8s.io/v2", "items": []})
    if path == "/api":
        return orjson.dumps({"kind": "APIVersions", "versions": ["v1"]})
    if path == "/api/v1":
        listed: dict[str, Any] = {"name": "pods", "singularName": "pod", "namespaced": True,
                                  "kind": "Pod", "verbs": _VERBS}
        return orjson.dumps({"kind": "APIResourceList", "groupVersion": "v1",
                             "resources": [listed]})
    if path == "/apis":
        return orjson.dumps({"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
    return None


def _encode_continue(start: int, list_rv: int) -> str:
    raw = orjson.dumps({"start": start, "rv": list_rv})
    return base64.urlsafe_b64encode(raw).decode()


def _decode_continue(token: str) -> int | None:
    try:
        return int(orjson.loads(base64.urlsafe_b64decode(token.encode()))["start"])
    except (ValueError, KeyError, TypeError):
        return None


def _list_page(replay: Replay, start: int, limit: int) -> bytes:
    key = (start, limit)
    with replay.pages_lock:
        cached = replay.pages.get(key)
    if cached is not None:
        return cached

    end = len(replay.pod_templates) if limit <= 0 else min(start + limit, len(replay.pod_templates))
    items = b",".join(
        pods.with_rv(replay.pod_templates[index], index + 1) for index in range(start, end)
    )
    meta: dict[str, Any] = {"resourceVersion": str(replay.list_rv)}
    if end < len(replay.pod_templates):
        meta["continue"] = _encode_continue(end, replay.list_rv)
        meta["remainingItemCount"] = len(replay.pod_templates) - end
    head = orjson.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": meta})
    page = head[:-1] + b',"items":[' + items + b"]}"

    with replay.pages_lock:
        replay.pages[key] = page
    return page


def prebuild_pages(replay: Replay, page_size: int) -> None:
    """Build the pages of the common page size and the unpaged list before listening."""
    for start in range(0, len(replay.pod_templates), page_size):
        _list_page(replay, start, page_size)
    _list_page(replay, 0, 0)


class Connection:
    """One client connection: read requests, answer them, count what happened."""

    def __init__(self, sock: socket.socket, replay: Replay, stats: Stats, hold: bool) -> None:
        self.sock = sock
        self.replay = replay
        self.stats = stats
        self.hold = hold
        self.buffer = b""
        #: Whether this connection was counted as an API connection or not yet.
        self.classified = False

    def serve(self) -> None:
        with self.stats.lock:
            self.stats.open += 1
            self.stats.total += 1
        try:
            while self._serve_one():
                pass
        except OSError:
            pass
        finally:
            with self.stats.lock:
                self.stats.open -= 1
            self.sock.close()

    def _read_request(self) -> tuple[str, dict[str, str]] | None:
        while b"\r\n\r\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buffer += data
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()

        # Bodies are not expected on this API; read and drop one so the next request parses.
        length = int(headers.get("content-length", "0") or 0)
        while len(self.buffer) < length:
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buffer += data
        self.buffer = self.buffer[length:]
        return lines[0], headers

    def _serve_one(self) -> bool:
        request = self._read_request()
        if request is None:
            return False
        request_line, headers = request
        parts = request_line.split(" ")
        target = parts[1] if len(parts) > 1 else "/"
        url = urlsplit(target)
        query = {name: values[-1] for name, values in parse_qs(url.query).items()}
        keep_alive = headers.get("connection", "").lower() != "close"
        if not self.classified:
            self.classified = True
            if url.path != "/stats":
                with self.stats.lock:
                    self.stats.api_total += 1

        if url.path == "/api/v1/pods" and query.get("watch") in ("true", "1"):
            self._watch(query)
            return False
        if url.path == "/api/v1/pods":
            return self._list(query) and keep_alive
        if url.path == "/stats":
            if query.get("reset"):
                self.stats.reset()
            return self._respond(200, self.stats.as_json()) and keep_alive
        discovery = _discovery(url.path, headers.get("accept", ""))
        if discovery is not None:
            return self._respond(200, discovery) and keep_alive
        self._respond(404, _status(404, "NotFound", f"no route for {url.path}"))
        return keep_alive

    def _respond(self, code: int, body: bytes) -> bool:
        head = (
            f"HTTP/1.1 {code} {_REASONS.get(code, 'Error')}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.sock.sendall(head)
        self.sock.sendall(body)
        return True

    def _list(self, query: dict[str, str]) -> bool:
        with self.stats.lock:
            self.stats.list_requests += 1
        limit = int(query.get("limit", "0") or 0)
        start = 0
        token = query.get("continue", "")
        if token:
            decoded = _decode_continue(token)
            if decoded is None:
                body = _status(410, "Expired", "the continue token is not one of this server")
                return self._respond(410, body)
            start = decoded
        return self._respond(200, _list_page(self.replay, start, limit))

    def _watch(self, query: dict[str, str]) -> None:
        if query.get("sendInitialEvents") == "true":
            with self.stats.lock:
                self.stats.streaming_lists_refused += 1
            message = "sendInitialEvents is not supported by this server"
            self._respond(422, _status(422, "Invalid", message))
            return

        with self.stats.lock:
            self.stats.watch_open += 1
            self.stats.watch_total += 1
        try:
            self._stream_events(query.get("resourceVersion", "") or "0")
            if self.hold:
                self._wait_for_client_close()
            else:
                self.sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass
        finally:
            with self.stats.lock:
                self.stats.watch_open -= 1
                self.stats.watch_closed_at.append(time.monotonic())

    def _stream_events(self, resource_version: str) -> None:
        self.sock.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Cache-Control: no-cache, private\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        replay = self.replay
        first = max(0, int(resource_version) - replay.list_rv) if resource_version.isdigit() else 0
        if first >= replay.event_count:
            return

        # Start mid-chunk when a client resumes from a version inside one.
        chunk = bisect.bisect_right(replay.chunk_first_event, first) - 1
        skip = first - replay.chunk_first_event[chunk]
        if skip:
            payload = replay.chunks[chunk].split(b"\r\n", 1)[1][:-2]
            self.sock.sendall(_frame(payload[replay.chunk_event_offsets[chunk][skip]:]))
            chunk += 1
        for framed in replay.chunks[chunk:]:
            self.sock.sendall(framed)

    def _wait_for_client_close(self) -> None:
        while self.sock.recv(65536):
            pass


def serve(replay: Replay, host: str, port: int, hold: bool) -> None:
    """Accept connections forever, after announcing the port on stdout."""
    stats = Stats()
    listener = socket.create_server((host, port), backlog=512)
    average = sum(map(len, replay.pod_templates)) / max(1, len(replay.pod_templates))
    announcement = {
        "port": listener.getsockname()[1], "list_resource_version": replay.list_rv,
        "pods": len(replay.pod_templates), "events": replay.event_count,
        "json_bytes_per_pod": average,
    }
    sys.stdout.write(orjson.dumps(announcement).decode() + "\n")
    sys.stdout.flush()

    while True:
        sock, _ = listener.accept()
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = Connection(sock, replay, stats, hold)
        threading.Thread(target=connection.serve, daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pods", type=int, default=10_000)
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--watch-end", choices=("hold", "close"), default="hold")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING)
    replay = build_replay(args.pods, args.events, args.seed)
    prebuild_pages(replay, args.page_size)
    serve(replay, args.host, args.port, args.watch_end == "hold")


if __name__ == "__main__":
    main()
