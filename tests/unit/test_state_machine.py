"""The list/watch cycle's rules, on the pure step function (no sockets, no clock)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from rx_informer.errors import ConnectError, InactivityError, StatusError
from rx_informer.protocol.backoff import Backoff
from rx_informer.protocol.machine import (
    EventReceived,
    Failure,
    Listing,
    Machine,
    PageReceived,
    Progressed,
    Relisted,
    RequestFailed,
    State,
    StreamEnded,
    Watching,
    status_error,
)
from rx_informer.protocol.wire import DecodeError, WireObject, decode_event
from tests.support.fake_api import pod as pod_dict


def pod(name: str, version: int) -> WireObject:
    return WireObject.from_dict(pod_dict(name, version))


def received(event_type: str, obj: dict) -> EventReceived:  # type: ignore[type-arg]
    """Through the real decoder, as a line from the server."""
    line = json.dumps({"type": event_type, "object": obj}).encode()
    return EventReceived(*decode_event(line))

MACHINE = Machine(backoff=Backoff(), jitter=lambda: 0.0)
WATCHING = State(phase=Watching("10"))
GONE = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}


def run(state: State, *inputs: object) -> tuple[State, list[object]]:
    outputs: list[object] = []
    for received in inputs:
        state, produced = MACHINE.step(state, received)  # type: ignore[arg-type]
        outputs.extend(produced)
    return state, outputs


def test_pages_accumulate_until_an_empty_continue_then_one_relist() -> None:
    """Case 15: only the empty continue token ends the list; one Relisted with all pages."""
    state, outputs = run(
        State(),
        PageReceived([pod("a", 1)], "50", "t1"),
        PageReceived([], "50", "t2"),
        PageReceived([pod("b", 2)], "50", ""),
    )
    assert outputs == [Relisted([pod("a", 1), pod("b", 2)], "50")]
    assert state.phase == Watching("50")


def test_expired_continue_token_restarts_the_list_from_scratch() -> None:
    state, _ = run(State(), PageReceived([pod("a", 1)], "50", "t1"))
    state, outputs = run(state, RequestFailed(status_error(GONE, "list", "pods"), now=0.0))
    assert state.phase == Listing()
    assert state.delay == 0.0
    assert isinstance(outputs[0], Failure)


def test_bookmark_advances_the_version_and_nothing_else() -> None:
    """Case 10: a skeleton bookmark moves the resourceVersion, emits no object change."""
    skeleton = {"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "12"},
                "spec": None, "status": None}
    state, outputs = run(WATCHING, received("BOOKMARK", skeleton))
    assert outputs == [Progressed("12")]
    assert state.phase == Watching("12")
    assert state.request == WATCHING.request


def test_watch_events_advance_the_version_and_become_store_outputs() -> None:
    state, outputs = run(
        WATCHING,
        received("ADDED", pod_dict("a", 11)),
        received("MODIFIED", pod_dict("a", 12)),
        received("DELETED", pod_dict("a", 13)),
    )
    versions = [(type(o).__name__, o.object.resource_version) for o in outputs]  # type: ignore[attr-defined]
    assert versions == [("Applied", "11"), ("Applied", "12"), ("Removed", "13")]
    assert state.phase == Watching("13")


def test_clean_end_watches_again_from_the_last_version_without_relist() -> None:
    """Case 16: the next watch starts from the last version seen; no list."""
    state, _ = run(WATCHING, received("ADDED", pod_dict("a", 11)))
    state, outputs = run(state, StreamEnded(duration=30.0, events=1, now=30.0))
    assert outputs == []
    assert state.phase == Watching("11")
    assert state.delay == 0.0
    assert state.request == WATCHING.request + 1


def test_a_watch_that_ends_at_once_without_events_backs_off() -> None:
    state, outputs = run(WATCHING, StreamEnded(duration=0.1, events=0, now=1.0))
    assert isinstance(outputs[0], Failure)
    assert state.delay == pytest.approx(0.4)
    assert state.phase == WATCHING.phase


@pytest.mark.parametrize("source", ["http", "event"])
def test_410_relists_whether_status_or_in_stream_event(source: str) -> None:
    """Case 13: a 410 inside a watch the server keeps open still ends that request."""
    if source == "http":
        state, outputs = run(WATCHING, RequestFailed(status_error(GONE, "watch", "p"), 0.0))
    else:
        state, outputs = run(WATCHING, received("ERROR", GONE))
    assert state.phase == Listing()
    assert state.request == WATCHING.request + 1
    assert state.delay == 0.0
    assert [type(o) for o in outputs] == [Failure]


def test_unknown_event_type_is_a_failure_followed_by_a_relist() -> None:
    state, outputs = run(WATCHING, received("SURPRISE", pod_dict("a", 11)))
    assert state.phase == Listing()
    assert isinstance(outputs[0], Failure)


@pytest.mark.parametrize("line", [
    b'{"type":"ADDED","object":{"kind":"Pod"}}',
    b'{"type":"ADDED","object":{"metadata":{"resourceVersion":"3"}}}',
    b'{"type":"ADDED"}',
    b'[1, 2]',
    b'{"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"3"}',
])
def test_lines_that_are_not_watch_events_do_not_decode(line: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_event(line)


def test_object_bytes_are_the_slice_of_the_line_or_reserialised() -> None:
    obj = pod_dict("a", 7)
    canonical = json.dumps({"type": "ADDED", "object": obj}, separators=(",", ":")).encode()
    reordered = json.dumps({"object": obj, "type": "ADDED"}).encode()
    for line in (canonical, reordered, canonical + b"  \r"):
        _, wire, _, _ = decode_event(line)
        assert wire is not None and json.loads(wire.raw) == obj
        assert (wire.key, wire.resource_version) == ("default/a", "7")


def test_backoff_doubles_to_the_cap_and_resets_after_a_healthy_period() -> None:
    error = StatusError("boom", code=500)
    state, delays = WATCHING, []
    for second in range(8):
        state, _ = run(state, RequestFailed(error, now=float(second)))
        delays.append(state.delay)
    assert delays == [0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 15.0, 15.0]

    state, _ = run(state, RequestFailed(error, now=8.0 + 121.0))
    assert state.failures == 1
    assert state.delay == 0.4


def test_jitter_spreads_within_the_upper_half_of_the_bound() -> None:
    machine = Machine(backoff=Backoff(), jitter=lambda: 0.999)
    state, _ = machine.step(WATCHING, RequestFailed(StatusError("x", code=503), now=0.0))
    assert 0.79 < state.delay < 0.8


def test_retry_after_is_honoured() -> None:
    """Case 17: the server's Retry-After wins over the computed backoff."""
    throttled = StatusError("slow down", code=429, retry_after=2.0)
    state, _ = run(State(), RequestFailed(throttled, now=0.0))
    assert state.delay == 2.0
    assert state.phase == Listing()


def test_401_asks_for_fresh_credentials_and_retries_at_once_then_backs_off() -> None:
    """Case 19: a rejected token is refreshed; a second 401 in a row is not a tight loop."""
    denied = StatusError("no", code=401)
    state, _ = run(WATCHING, RequestFailed(denied, now=0.0))
    assert state.refresh_credentials and state.delay == 0.0
    state, _ = run(state, RequestFailed(denied, now=0.1))
    assert state.refresh_credentials and state.delay == pytest.approx(0.8)


def test_dropped_connection_and_inactivity_resume_the_watch_not_the_list() -> None:
    for error in (InactivityError("quiet"), ConnectError("reset")):
        state, outputs = run(WATCHING, RequestFailed(error, now=0.0))
        assert state.phase == WATCHING.phase
        assert isinstance(outputs[0], Failure)


def test_list_failure_keeps_the_pages_and_retries_the_same_page() -> None:
    state, _ = run(State(), PageReceived([pod("a", 1)], "50", "t1"))
    state, _ = run(state, RequestFailed(StatusError("down", code=503), now=0.0))
    assert state.phase == Listing("t1", ([pod("a", 1)],))
    assert state.delay > 0


@pytest.mark.parametrize(("asked", "waited"), [(0.0, 0.4), (2.0, 2.0), (1e9, 30.0),
                                               (float("inf"), 30.0), (float("nan"), 30.0)])
def test_retry_after_is_kept_between_a_floor_and_the_cap(asked: float, waited: float) -> None:
    throttled = StatusError("slow down", code=429, retry_after=asked)
    state, _ = run(State(), RequestFailed(throttled, now=0.0))
    assert state.delay == waited


def test_in_stream_failures_are_forgotten_after_a_healthy_period() -> None:
    gone = EventReceived("ERROR", None, GONE)
    recent = State(phase=Watching("10"), failures=2, last_failure_at=1.0)
    state, _ = run(recent, replace(gone, now=2.0))
    assert state.failures == 3 and state.delay > 0
    state, _ = run(recent, replace(gone, now=200.0))
    assert (state.failures, state.delay) == (1, 0.0)


def test_watches_that_end_at_once_with_events_are_spaced_without_an_error() -> None:
    state, outputs = run(WATCHING, StreamEnded(duration=0.25, events=1, now=5.0))
    assert outputs == []
    assert state.delay == pytest.approx(0.75)
    assert state.failures == 0


@pytest.mark.parametrize("code", [400, 403, 404])
def test_errors_a_human_must_fix_are_retried_slowly(code: int) -> None:
    state, _ = run(State(), RequestFailed(StatusError("no", code=code), now=0.0))
    assert state.delay == pytest.approx(6.4)  # four steps up: 0.8 * 2**4 / 2 with no jitter
