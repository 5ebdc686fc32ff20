"""A TCP proxy that breaks the network between a client and a server on command.

The proxy forwards raw bytes, so TLS passes through untouched: a client that points at the
proxy's port still verifies the server, as long as the server's certificate names the address
the client dials (the local control plane's names ``127.0.0.1``). It runs its own asyncio
loop in a daemon thread; faults are switched from any thread, at any time:

==================  =================================  =====================================
fault               connections already open           connections opened afterwards
==================  =================================  =====================================
``reset()``         aborted with RST on both sides     not affected
``blackhole()``     silent both ways, never closed     accepted, then silent
``refuse()``        not affected                       reset as soon as they are accepted
``latency(s)``      every chunk waits ``s`` seconds    the same
``trickle()``       server->client one byte per write  the same
``cut_after(n)``    reset after ``n`` more bytes down  reset after ``n`` bytes down
==================  =================================  =====================================

A blackholed connection swallows whatever either side sends, so its byte stream is broken
for good (a TLS record went missing): ``blackhole(False)`` only affects new connections, and
the old ones stay silent until the client closes them or :meth:`FaultProxy.reset` aborts
them. When the server ends a blackholed connection, the client is not told, exactly as with a
dead network path: only its own timeout can save it. When the client closes one, the proxy
resets its connection to the server, so that no request lingers there.

Over TLS, Python's ``ssl`` module reports a reset in the middle of a response as an EOF
without ``close_notify``: httpx then raises ``RemoteProtocolError`` (an unfinished body), or
``ConnectError`` while the handshake is still under way, rather than ``ReadError``.

Why not close the listening socket for ``refuse()``, which would give the client a genuine
``ECONNREFUSED``? Another process could take the port before it is bound again. A reset right
after the accept is what a client sees from a server that crashed while accepting, and every
client treats both as a failed connection attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import TypeVar

from rx_informer.testing.loop_thread import LoopThread

__all__ = ["FaultProxy"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")

# The most one read takes: asyncio's default stream buffer limit (64 KiB), so a read can
# empty a full buffer at once.
_CHUNK = 64 * 1024

# The pause after each byte while trickling: 1 ms makes a 500-byte watch event take about half
# a second, long enough for the client to read it in many pieces, short enough for a test.
_TRICKLE_DELAY = 0.001

# wait_for()'s default deadline: loopback events take milliseconds, and a test waiting on a
# condition that never comes should fail within seconds, not minutes.
_WAIT_TIMEOUT = 10.0

# SO_LINGER on with a zero timeout: close() then sends RST and drops unsent data.
_LINGER_ZERO = struct.pack("ii", 1, 0)


class _Direction(enum.Enum):
    UP = "client->server"
    DOWN = "server->client"


class _CutReachedError(Exception):
    """The connection forwarded the bytes ``cut_after`` allowed it."""


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close a connection with RST rather than FIN, as a crashed peer or a firewall would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        # Fails only when the socket is already closed, and then there is nothing to reset.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
    writer.transport.abort()


@dataclass(eq=False)
class _Connection:
    """One accepted client connection and the connection to the target made for it."""

    number: int
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    # Invariant: never goes back to False; swallowed bytes have broken the stream for good.
    blackholed: bool = False
    # Bytes forwarded server->client so far.
    forwarded_down: int = 0
    # The connection is reset once forwarded_down reaches this; None when no cut is armed.
    cut_at: int | None = None

    def reset(self) -> None:
        for writer in (self.client, self.upstream):
            if writer is not None:
                _reset(writer)


class FaultProxy:
    """Forwards TCP from ``127.0.0.1:<port>`` to ``target_host:target_port``, faults on demand.

    ``start()`` (or ``with``) binds a free loopback port; :attr:`port` and :attr:`address`
    tell which. Every fault method may be called before ``start()`` too, and returns once the
    fault is in force. Counters (:attr:`connections_total`, :attr:`connections_open`,
    :attr:`bytes_down`, :attr:`bytes_up`) count forwarded bytes only, not swallowed ones;
    :meth:`wait_for` waits for a condition on them.
    """

    def __init__(self, target_host: str, target_port: int, *,
                 listen_host: str = "127.0.0.1") -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.listen_host = listen_host

        self._loop_thread: LoopThread | None = None
        self._server: asyncio.Server | None = None
        self._numbers = itertools.count(1)
        # Touched only on the loop's thread.
        self._connections: set[_Connection] = set()
        self._handlers: set[asyncio.Task[None]] = set()

        # Fault switches: written only on the loop's thread once started.
        self._blackholed = False
        self._refusing = False
        self._latency = 0.0
        self._trickle_delay: float | None = None
        self._cut_after: int | None = None

        # Counters, guarded by the condition that wait_for() sleeps on.
        self._changed = threading.Condition()
        self._connections_total = 0
        self._connections_open = 0
        self._bytes_down = 0
        self._bytes_up = 0

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def start(self) -> FaultProxy:
        """Bind a free port on ``listen_host`` and start forwarding. Safe to call twice."""
        if self._server is not None:
            return self

        loop_thread = LoopThread(f"fault-proxy-{self.target_host}:{self.target_port}")
        loop_thread.start()
        self._server = loop_thread.run(
            asyncio.start_server(self._serve, self.listen_host, 0, limit=_CHUNK))
        self._loop_thread = loop_thread

        logger.debug("fault proxy %s:%d -> %s:%d started", self.listen_host, self.port,
                     self.target_host, self.target_port)
        return self

    def stop(self) -> None:
        """Reset every connection, close the port and end the loop thread. Safe to call twice."""
        loop_thread, self._loop_thread = self._loop_thread, None
        if loop_thread is None:
            return

        loop_thread.run(self._shutdown())
        loop_thread.stop()
        self._server = None
        logger.debug("fault proxy to %s:%d stopped", self.target_host, self.target_port)

    @property
    def port(self) -> int:
        """The loopback port clients connect to."""
        if self._server is None:
            raise RuntimeError("the fault proxy is not started; call start()")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def address(self) -> tuple[str, int]:
        """``(listen_host, port)``."""
        return (self.listen_host, self.port)

    # -- faults -------------------------------------------------------------------------------

    def reset(self) -> int:
        """Abort every open connection with RST on both sides; return how many there were."""

        def reset_all() -> int:
            for connection in self._connections:
                connection.reset()
            return len(self._connections)

        count = self._apply(reset_all)
        logger.info("fault proxy: reset %d connections", count)
        return count

    def blackhole(self, on: bool = True) -> None:
        """Stop forwarding in both directions on every connection, open or new.

        Connections stay open. ``blackhole(False)`` forwards again on new connections only;
        those blackholed before stay silent until closed (see the module's documentation).
        """

        def switch() -> None:
            self._blackholed = on
            if on:
                for connection in self._connections:
                    connection.blackholed = True

        self._apply(switch)
        logger.info("fault proxy: blackhole %s", "on" if on else "off")

    def refuse(self, on: bool = True) -> None:
        """Reset new connections as soon as they are accepted; open ones go on."""

        def switch() -> None:
            self._refusing = on

        self._apply(switch)
        logger.info("fault proxy: refusing new connections %s", "on" if on else "off")

    def latency(self, seconds: float) -> None:
        """Delay every forwarded chunk, both ways, by ``seconds`` (0 turns it off).

        Chunks are delayed one after another, so a large transfer is slowed by one delay per
        chunk of up to 64 KiB, not only once.
        """
        if seconds < 0:
            raise ValueError(f"latency must be >= 0 seconds, not {seconds}")

        def switch() -> None:
            self._latency = seconds

        self._apply(switch)
        logger.info("fault proxy: latency %.3f s", seconds)

    def trickle(self, on: bool = True, delay: float = _TRICKLE_DELAY) -> None:
        """Forward server->client one byte per write, pausing ``delay`` seconds after each.

        A watch event then reaches the client in many TCP segments (asyncio turns Nagle's
        algorithm off), which exercises a client's handling of split lines and TLS records.
        """
        if delay < 0:
            raise ValueError(f"trickle delay must be >= 0 seconds, not {delay}")

        def switch() -> None:
            self._trickle_delay = delay if on else None

        self._apply(switch)
        logger.info("fault proxy: trickle %s", f"on, {delay:.4f} s per byte" if on else "off")

    def cut_after(self, nbytes: int | None) -> None:
        """Reset each connection once it has forwarded ``nbytes`` bytes server->client.

        An open connection counts from now, a new one from its first byte (with TLS, the
        server's handshake messages come first: a few KiB). ``None`` disarms. The cut stays
        armed for every later connection until disarmed.
        """
        if nbytes is not None and nbytes < 0:
            raise ValueError(f"cut_after needs a byte count >= 0 or None, not {nbytes}")

        def arm() -> None:
            self._cut_after = nbytes
            for connection in self._connections:
                connection.cut_at = (None if nbytes is None
                                     else connection.forwarded_down + nbytes)

        self._apply(arm)
        logger.info("fault proxy: cut after %s bytes", nbytes)

    def heal(self) -> None:
        """Switch every fault off. Blackholed connections stay silent."""
        self.blackhole(False)
        self.refuse(False)
        self.latency(0.0)
        self.trickle(False)
        self.cut_after(None)

    # -- counters -----------------------------------------------------------------------------

    @property
    def connections_total(self) -> int:
        """Connections accepted since start, refused ones included."""
        with self._changed:
            return self._connections_total

    @property
    def connections_open(self) -> int:
        """Accepted connections not yet closed on the proxy's side."""
        with self._changed:
            return self._connections_open

    @property
    def bytes_down(self) -> int:
        """Bytes forwarded server->client, over every connection."""
        with self._changed:
            return self._bytes_down

    @property
    def bytes_up(self) -> int:
        """Bytes forwarded client->server, over every connection."""
        with self._changed:
            return self._bytes_up

    def wait_for(self, predicate: Callable[[], bool], timeout: float = _WAIT_TIMEOUT) -> None:
        """Wait until ``predicate()`` is true; raise ``TimeoutError`` after ``timeout`` s.

        The predicate is checked at once and again whenever a counter changes, so it should
        depend on the counters.
        """
        with self._changed:
            if not self._changed.wait_for(predicate, timeout):
                raise TimeoutError(
                    f"condition still false after {timeout} s (connections open "
                    f"{self._connections_open} of {self._connections_total}, bytes down "
                    f"{self._bytes_down}, up {self._bytes_up})")

    # -- internals ----------------------------------------------------------------------------

    def _apply(self, change: Callable[[], _T]) -> _T:
        if self._loop_thread is None:
            return change()
        return self._loop_thread.call(change)

    def _count(self, *, opened: int = 0, closed: int = 0, down: int = 0, up: int = 0) -> None:
        with self._changed:
            self._connections_total += opened
            self._connections_open += opened - closed
            self._bytes_down += down
            self._bytes_up += up
            self._changed.notify_all()

    async def _serve(self, client_reader: asyncio.StreamReader,
                     client_writer: asyncio.StreamWriter) -> None:
        """Handle one accepted connection from accept to close."""
        connection = _Connection(next(self._numbers), client_writer,
                                 blackholed=self._blackholed, cut_at=self._cut_after)
        handler = asyncio.current_task()
        assert handler is not None  # a connection callback always runs in a task
        self._connections.add(connection)
        self._handlers.add(handler)
        self._count(opened=1)

        try:
            await self._handle(connection, client_reader)
        except (OSError, asyncio.CancelledError):
            # A socket failed or the proxy is stopping: either way the connection is over.
            connection.reset()
        finally:
            self._connections.discard(connection)
            self._handlers.discard(handler)
            self._count(closed=1)
            logger.debug("connection %d closed", connection.number)

    async def _handle(self, connection: _Connection, client_reader: asyncio.StreamReader) -> None:
        if self._refusing:
            logger.debug("connection %d refused", connection.number)
            connection.reset()
            return

        if connection.blackholed:
            # Born in a blackhole: nothing is ever sent to the target, nothing comes back.
            while await client_reader.read(_CHUNK):
                pass
            return

        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                self.target_host, self.target_port, limit=_CHUNK)
        except OSError as error:
            logger.debug("connection %d: target unreachable (%s); resetting the client",
                         connection.number, error)
            connection.reset()
            return
        connection.upstream = upstream_writer

        # reset() may have run while the target was being dialled.
        if connection.client.is_closing():
            connection.reset()
            return

        logger.debug("connection %d open", connection.number)
        await self._forward_both_ways(connection, client_reader, upstream_reader)

    async def _forward_both_ways(self, connection: _Connection,
                                 client_reader: asyncio.StreamReader,
                                 upstream_reader: asyncio.StreamReader) -> None:
        assert connection.upstream is not None
        up = asyncio.create_task(self._pump(connection, client_reader, connection.upstream,
                                            _Direction.UP))
        down = asyncio.create_task(self._pump(connection, upstream_reader, connection.client,
                                              _Direction.DOWN))
        pending: set[asyncio.Task[None]] = {up, down}

        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                # Fetch every exception, so that asyncio does not log one as never retrieved.
                failures = [task.exception() for task in done]
                if any(failure is not None for failure in failures):
                    # A reset, a broken socket or a cut: the other side learns by RST too.
                    connection.reset()
                    return
                if up in done and connection.blackholed:
                    # The client left a blackholed connection; nobody will read the target.
                    connection.reset()
                    return
        finally:
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        # Both sides ended their halves with FIN: close as politely.
        connection.client.close()
        connection.upstream.close()

    async def _pump(self, connection: _Connection, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, direction: _Direction) -> None:
        """Copy one direction until EOF; raises when a socket fails or a cut is reached."""
        while chunk := await reader.read(_CHUNK):
            if connection.blackholed:
                continue

            if self._latency > 0:
                await asyncio.sleep(self._latency)
            if direction is _Direction.UP:
                await self._send_up(connection, writer, chunk)
            else:
                await self._send_down(connection, writer, chunk)

        # A dead path carries no FIN either.
        if not connection.blackholed:
            writer.write_eof()

    async def _send_up(self, connection: _Connection, writer: asyncio.StreamWriter,
                       chunk: bytes) -> None:
        if connection.blackholed:
            return
        writer.write(chunk)
        await writer.drain()
        self._count(up=len(chunk))

    async def _send_down(self, connection: _Connection, writer: asyncio.StreamWriter,
                         chunk: bytes) -> None:
        offset = 0
        while offset < len(chunk) and not connection.blackholed:
            # Read the switches for each piece, so turning trickle off takes effect at once.
            trickle_delay = self._trickle_delay
            end = len(chunk) if trickle_delay is None else offset + 1
            if connection.cut_at is not None:
                end = min(end, offset + connection.cut_at - connection.forwarded_down)

            if end > offset:
                writer.write(chunk[offset:end])
                await writer.drain()
                connection.forwarded_down += end - offset
                self._count(down=end - offset)
                offset = end

            if connection.cut_at is not None and connection.forwarded_down >= connection.cut_at:
                logger.debug("connection %d cut after %d bytes down", connection.number,
                             connection.forwarded_down)
                raise _CutReachedError
            if trickle_delay is not None:
                await asyncio.sleep(trickle_delay)

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()

        for connection in self._connections:
            connection.reset()
        handlers = list(self._handlers)
        for handler in handlers:
            handler.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
