"""The list/watch cycle as an explicit state machine.

``step(state, input)`` is pure: it maps the current state and one thing that happened on the
wire to the next state and to what the store must learn. The driver (``protocol.watcher``)
only performs the request the state asks for and feeds back what came of it, so every
recovery rule lives here and is tested without sockets.

States and transitions::

                   Page (continue)
                  ┌───────┐
                  ▼       │   Page (last)            event / bookmark
    start ──► Listing ────┴──────────────► Watching ◄───────┐
                  ▲  ▲                      │  │  │          │
                  │  └─ 410 on continue ────┘  │  └──────────┘
                  │     (restart the list)     │  clean end, inactivity, 5xx, 429:
                  └──── 410, malformed line ───┘  watch again from the last version

Every failure is reported (``Failure``) and delays the next request by the backoff; the
failures that have an immediate cure (410, a dropped connection, a clean end, a 401 with new
credentials) are retried at once the first time, and only back off if they repeat.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from rx_informer.errors import (
    ConnectError,
    GoneError,
    InactivityError,
    MalformedError,
    RequestError,
    StatusError,
)
from rx_informer.protocol.backoff import Backoff
from rx_informer.protocol.wire import WireObject

# A watch that ends this soon with no event is treated as a failure, so a server that closes
# every watch at once is met with backoff instead of a tight loop (client-go's rule, 1 s).
_SHORT_WATCH = 1.0

_UNAUTHORIZED = 401
# Bad request (a selector the server rejects), forbidden (RBAC), not found (no such resource
# or CRD): retrying soon cannot help, a human must act. Their retries start this many steps
# up the backoff ladder (6.4 to 12.8 s with the defaults) and climb from there.
_NEEDS_A_HUMAN = frozenset((400, 403, 404))
_HUMAN_STEPS = 4


# --- States -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Listing:
    """Fetching the list, page by page.

    Invariant: ``pages`` are the pages received so far of one consistent list, and
    ``continue_token`` asks for the next one (``None`` before the first page).
    """

    continue_token: str | None = None
    pages: tuple[list[WireObject], ...] = ()


@dataclass(frozen=True, slots=True)
class Watching:
    """Watching from ``resource_version``, the newest version the store has seen."""

    resource_version: str


@dataclass(frozen=True, slots=True)
class State:
    """Where the cycle is, and what the driver must do before the next request.

    Invariant: ``request`` changes whenever the current request must end; the driver
    drops the stream it is reading as soon as it sees a new value.
    """

    phase: Listing | Watching = field(default_factory=Listing)
    request: int = 0
    delay: float = 0.0
    refresh_credentials: bool = False
    failures: int = 0
    last_failure_at: float | None = None


# --- Inputs: what happened on the wire ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class PageReceived:
    items: list[WireObject]
    resource_version: str
    continue_token: str


@dataclass(frozen=True, slots=True)
class EventReceived:
    """A decoded watch event: an object, or for ERROR the ``Status`` it carried."""

    type: str
    object: WireObject | None
    status: dict[str, Any] | None = None
    #: The object already decoded, when the transport had to parse it anyway.
    decoded: dict[str, Any] | None = None
    #: When it arrived (monotonic seconds), for the backoff's memory of failures.
    now: float = 0.0


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The server closed the watch cleanly after ``duration`` seconds and ``events``."""

    duration: float
    events: int
    now: float


@dataclass(frozen=True, slots=True)
class RequestFailed:
    error: RequestError
    now: float


Input = PageReceived | EventReceived | StreamEnded | RequestFailed


# --- Outputs: what the store learns ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Relisted:
    """A complete, consistent list: the store replaces its content with exactly this."""

    objects: list[WireObject]
    resource_version: str


@dataclass(frozen=True, slots=True)
class Applied:
    """An object was created or changed."""

    object: WireObject
    decoded: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Removed:
    """An object was deleted; this is its last state."""

    object: WireObject
    decoded: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Progressed:
    """A bookmark: the store is current up to ``resource_version``; nothing else changed."""

    resource_version: str


@dataclass(frozen=True, slots=True)
class Failure:
    """A request failed; the cycle recovers on its own."""

    error: RequestError


@dataclass(frozen=True, slots=True)
class Resynced:
    """The resync timer fired: re-deliver the cache (no request is made)."""


Output = Relisted | Applied | Removed | Progressed | Failure | Resynced


# --- The step function -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Machine:
    """The rules of the cycle, with the tunables that they need."""

    backoff: Backoff = field(default_factory=Backoff)
    jitter: Callable[[], float] = random.random

    def step(self, state: State, event: Input) -> tuple[State, list[Output]]:
        """Advance the cycle by one input."""
        # Watch events first: they are nearly every input.
        if type(event) is EventReceived and type(state.phase) is Watching:
            return self._watch_event(state, state.phase, event)
        if isinstance(event, RequestFailed):
            return self._failed(state, event.error, event.now)
        if isinstance(event, StreamEnded):
            return self._stream_ended(state, event)
        if isinstance(state.phase, Listing) and isinstance(event, PageReceived):
            return self._page(state, state.phase, event)
        raise AssertionError(f"{type(event).__name__} cannot arrive while {state.phase}")

    def _page(self, state: State, phase: Listing, page: PageReceived) -> tuple[State, list[Output]]:
        pages = (*phase.pages, page.items)
        if page.continue_token:
            return _next_request(state, Listing(page.continue_token, pages)), []

        objects = [item for chunk in pages for item in chunk]
        watching = Watching(page.resource_version)
        return _next_request(state, watching), [Relisted(objects, page.resource_version)]

    def _watch_event(
        self, state: State, phase: Watching, event: EventReceived
    ) -> tuple[State, list[Output]]:
        if event.type == "ERROR" or event.object is None:
            return self._failed(state, status_error(event.status, "watch", ""), event.now)

        obj = event.object
        # Built field by field: this runs once per watch event and dataclasses.replace is
        # several times slower than a plain constructor call.
        moved = State(
            Watching(obj.resource_version), state.request, state.delay,
            state.refresh_credentials, state.failures, state.last_failure_at,
        )
        if event.type == "BOOKMARK":
            return moved, [Progressed(obj.resource_version)]
        if event.type in ("ADDED", "MODIFIED"):
            return moved, [Applied(obj, event.decoded)]
        if event.type == "DELETED":
            return moved, [Removed(obj, event.decoded)]
        error = MalformedError(f"unknown watch event type {event.type!r}: relisting")
        return self._failed(state, error, event.now)

    def _stream_ended(self, state: State, ended: StreamEnded) -> tuple[State, list[Output]]:
        if ended.duration >= _SHORT_WATCH:
            return _next_request(state, state.phase), []
        if ended.events == 0:
            error = ConnectError(
                f"watch closed by the server after {ended.duration:.2f} s without any event"
            )
            return self._failed(state, error, ended.now)

        # Events came, so nothing failed; still, watches are never started closer together
        # than the short-watch time, or a server that ends each one at once makes us spin.
        spaced = replace(_next_request(state, state.phase), delay=_SHORT_WATCH - ended.duration)
        return spaced, []

    def _failed(
        self, state: State, error: RequestError, now: float
    ) -> tuple[State, list[Output]]:
        failures = state.failures
        last = state.last_failure_at
        if last is not None and now - last > self.backoff.reset_after:
            failures = 0
        failures += 1

        phase = _recovery_phase(state.phase, error)
        curable_at_once = isinstance(error, GoneError | InactivityError | MalformedError) or (
            isinstance(error, StatusError) and error.code == _UNAUTHORIZED
        )
        if isinstance(error, StatusError) and error.retry_after is not None:
            delay = self._retry_after(error.retry_after)
        elif curable_at_once and failures == 1:
            delay = 0.0
        elif isinstance(error, StatusError) and error.code in _NEEDS_A_HUMAN:
            delay = self.backoff.delay(failures + _HUMAN_STEPS, self.jitter())
        else:
            delay = self.backoff.delay(failures, self.jitter())

        refresh = isinstance(error, StatusError) and error.code == _UNAUTHORIZED
        next_state = State(
            phase=phase,
            request=state.request + 1,
            delay=delay,
            refresh_credentials=refresh,
            failures=failures,
            last_failure_at=now,
        )
        return next_state, [Failure(error)]


    def _retry_after(self, seconds: float) -> float:
        """The server's wait, kept between half the initial backoff (never a tight loop, even
        for ``Retry-After: 0``) and the backoff's cap (a bogus huge value never stalls us)."""
        if not math.isfinite(seconds):
            return self.backoff.cap
        return min(max(seconds, self.backoff.initial / 2), self.backoff.cap)


def _recovery_phase(phase: Listing | Watching, error: RequestError) -> Listing | Watching:
    """Where to resume after ``error``: only a fresh list cures lost history or bad data."""
    if isinstance(error, GoneError | MalformedError):
        return Listing()
    return phase


def _next_request(state: State, phase: Listing | Watching) -> State:
    return replace(
        state, phase=phase, request=state.request + 1, delay=0.0, refresh_credentials=False
    )


def status_error(
    status: Any, verb: str, resource: str, retry_after: float | None = None
) -> StatusError:
    """Turn a ``Status`` object (from an error response or an ERROR event) into an error."""
    if not isinstance(status, dict):
        status = {}
    code = status.get("code")
    code = code if isinstance(code, int) else 0
    reason = str(status.get("reason") or "")
    message = str(status.get("message") or "no message")
    what = f"{verb} {resource}".strip()
    text = f"{what}: {code} {reason}: {message}" if what else f"{code} {reason}: {message}"

    cls = GoneError if code == 410 or reason in ("Expired", "Gone") else StatusError
    return cls(
        text, code=code, reason=reason, retry_after=retry_after, verb=verb, resource=resource
    )
