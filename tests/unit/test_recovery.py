"""Recovery from every way a list or watch can fail, over a real socket.

Each test names the field case (``../shared/cases.md``) it pins.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Callable

import pytest

from rx_informer import Backoff, EventType, GoneError, InformerFactory, Timeouts
from rx_informer.errors import InactivityError, MalformedError, StatusError
from tests.conftest import FAST_BACKOFF, Recorder
from tests.support.fake_api import FakeApiServer, Request, Writer, pod

GONE = {"kind": "Status", "apiVersion": "v1", "code": 410, "reason": "Expired",
        "message": "too old resource version"}


def status(code: int, headers: dict[str, str] | None = None) -> Callable[..., object]:
    async def answer(request: Request, out: Writer) -> None:
        await out.json(code, {"kind": "Status", "code": code, "message": f"status {code}"},
                       headers)
    return answer


def errors_of(recorder: Recorder) -> list[Exception]:
    return [e.error for e in recorder.items if e.type is EventType.ERROR]


def test_half_open_watch_is_abandoned_after_the_inactivity_timeout(
    server: FakeApiServer, cluster: object, recorder: Recorder
) -> None:
    """Case 1: the watch stays open and silent while objects change behind it."""
    factory = InformerFactory(cluster,  # type: ignore[arg-type]
                              timeouts=Timeouts(inactivity=0.3), backoff=FAST_BACKOFF)

    async def silent(request: Request, out: Writer) -> None:
        await out.start_stream()
        await out.hold()

    server.script("watch", silent)
    factory.informer("v1", "pods").events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED)
    server.add(pod("missed", 0))

    recorder.wait(lambda items: ("ADDED", "missed") in recorder.summary(), timeout=5)
    assert isinstance(errors_of(recorder)[0], InactivityError)
    watches = server.requests_of("watch")
    assert [w.query["resourceVersion"] for w in watches] == ["100", "100"]
    assert len(server.requests_of("list")) == 1
    factory.close()


def test_a_slow_steady_stream_is_never_cut(
    server: FakeApiServer, cluster: object, recorder: Recorder
) -> None:
    """Case 2: events keep coming for longer than every timeout; the watch stays up."""
    factory = InformerFactory(cluster,  # type: ignore[arg-type]
                              timeouts=Timeouts(inactivity=0.4), backoff=FAST_BACKOFF)
    factory.informer("v1", "pods").events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED)
    for number in range(8):  # 8 x 0.15 s = 3 inactivity timeouts
        server.add(pod(f"p{number}", 0))
        time.sleep(0.15)
    recorder.wait_count(EventType.ADDED, 8)
    assert errors_of(recorder) == []
    assert len(server.requests_of("watch")) == 1
    factory.close()


def test_headers_then_destroyed_socket_gives_one_error_and_one_reconnect(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder
) -> None:
    """Case 3."""
    async def destroy(request: Request, out: Writer) -> None:
        await out.start_stream()
        out.drop()

    server.script("watch", destroy)
    factory.informer("v1", "pods").events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED)
    server.wait_for(lambda: len(server.requests_of("watch")) == 2)
    server.add(pod("after", 0))
    recorder.wait_count(EventType.ADDED)
    assert len(errors_of(recorder)) == 1
    assert len(server.requests_of("list")) == 1
    assert server.requests_of("watch")[1].query["resourceVersion"] == "100"


def test_outage_is_met_with_backoff_and_recovers(
    server: FakeApiServer, cluster: object, recorder: Recorder
) -> None:
    """Case 5 (scaled down): attempts during an outage are spaced by the backoff."""
    factory = InformerFactory(cluster,  # type: ignore[arg-type]
                              backoff=Backoff(initial=0.1, cap=0.4, reset_after=60))
    for _ in range(5):
        server.script("list", status(503))
    factory.informer("v1", "pods").events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED, timeout=10)

    lists = server.requests_of("list")
    gaps = [b.at - a.at for a, b in itertools.pairwise(lists)]
    assert len(lists) == 6
    # Bounds 0.1, 0.2, 0.4, 0.4, 0.4, each drawn from its upper half.
    for gap, bound in zip(gaps, [0.1, 0.2, 0.4, 0.4, 0.4], strict=True):
        assert gap >= bound / 2
    assert len(errors_of(recorder)) == 5
    factory.close()


def test_cut_line_then_close_emits_nothing_from_the_partial_line(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder
) -> None:
    """Case 6a."""
    async def cut(request: Request, out: Writer) -> None:
        await out.start_stream()
        await out.send(b'{"type":"ADDED","obj')
        await out.end_stream()

    server.script("watch", cut)
    factory.informer("v1", "pods").events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED)
    server.wait_for(lambda: len(server.requests_of("watch")) == 2)
    server.add(pod("real", 0))
    recorder.wait_count(EventType.ADDED)
    assert recorder.summary()[-1] == ("ADDED", "real")
    assert len([e for e in recorder.items if e.type is EventType.ADDED]) == 1


def test_event_split_across_writes_is_delivered_once(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder
) -> None:
    """Case 6b: one event in two writes 200 ms apart."""
    line = json.dumps({"type": "ADDED", "object": pod("split", 101)}).encode() + b"\n"

    async def split(request: Request, out: Writer) -> None:
        await out.start_stream()
        await out.send(line[:30])
        await asyncio.sleep(0.2)
        await out.send(line[30:])
        await out.hold()

    server.script("watch", split)
    factory.informer("v1", "pods").events.subscribe(recorder)
    recorder.wait_count(EventType.ADDED)
    assert recorder.summary() == [("SYNCED", None), ("ADDED", "split")]


def test_objects_of_one_and_a_half_mebibytes_in_list_and_watch(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder
) -> None:
    """Case 8."""
    big = "x" * (3 * 512 * 1024)
    server.add(pod("big-listed", 0, data={"blob": big}))
    factory.informer("v1", "pods").events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED)
    server.add(pod("big-watched", 0, data={"blob": big + "\u2028"}))
    recorder.wait_count(EventType.ADDED, 2)
    sizes = [len(e.object["data"]["blob"]) for e in recorder.items if e.object]
    assert sizes == [len(big), len(big) + 1]


def test_410_as_a_plain_200_with_content_length_relists(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder
) -> None:
    """Case 9."""
    async def gone_body(request: Request, out: Writer) -> None:
        await out.json(200, json.dumps({"type": "ERROR", "object": GONE}).encode() + b"\n")

    server.add(pod("a", 0))
    server.script("watch", gone_body)
    factory.informer("v1", "pods").events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED, 2)
    assert isinstance(errors_of(recorder)[0], GoneError)
    assert len(server.requests_of("list")) == 2
    # The relist found the same object: nothing but the error and the second sync.
    assert recorder.summary() == [("ADDED", "a"), ("SYNCED", None), ("ERROR", None),
                                  ("SYNCED", None)]


def test_skeleton_bookmark_moves_the_next_watch_start(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder
) -> None:
    """Case 10 and 16: a bookmark advances the version the next watch starts from."""
    async def bookmark_then_end(request: Request, out: Writer) -> None:
        await out.start_stream()
        await out.event("BOOKMARK", {"kind": "Pod", "apiVersion": "v1", "spec": None,
                                     "metadata": {"resourceVersion": "150"}})
        await out.end_stream()

    server.script("watch", bookmark_then_end)
    factory.informer("v1", "pods").events.subscribe(recorder)
    server.wait_for(lambda: len(server.requests_of("watch")) == 2)
    assert server.requests_of("watch")[1].query["resourceVersion"] == "150"
    assert recorder.summary() == [("SYNCED", None)]
    assert len(server.requests_of("list")) == 1


def test_410_event_in_a_watch_left_open_relists_and_watches_from_the_new_version(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder
) -> None:
    """Case 13, with objects deleted meanwhile arriving as DELETED(final_state_unknown)."""
    async def gone_and_hold(request: Request, out: Writer) -> None:
        await out.start_stream()
        server.delete("doomed")
        await out.event("ERROR", GONE)
        await out.hold()

    server.add(pod("doomed", 0))
    server.script("watch", gone_and_hold)
    factory.informer("v1", "pods").events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED, 2)
    deleted = [e for e in recorder.items if e.type is EventType.DELETED]
    assert len(deleted) == 1 and deleted[0].final_state_unknown
    server.wait_for(lambda: len(server.requests_of("watch")) == 2)
    assert server.requests_of("watch")[1].query["resourceVersion"] == "102"


def test_two_page_list_makes_two_requests_and_deletes_what_is_gone(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder
) -> None:
    """Case 15: a relist of two pages; the object absent from both becomes DELETED."""
    for name in ("a", "b", "c"):
        server.add(pod(name, 0))
    pods = factory.informer("v1", "pods", page_size=2)
    pods.events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED)
    assert [r.query.get("continue") for r in server.requests_of("list")] == [None, "2"]
    assert all(r.query["limit"] == "2" for r in server.requests_of("list"))

    # Gone from the server with no trace in the history: only a relist can find out.
    del server.objects["default/b"]

    async def gone(request: Request, out: Writer) -> None:
        await out.json(410, GONE)

    server.script("watch", gone)
    server.end_watches()
    recorder.wait_count(EventType.SYNCED, 2)
    assert len(server.requests_of("list")) == 3
    assert recorder.summary()[-3:] == [("ERROR", None), ("DELETED", "b"), ("SYNCED", None)]
    assert recorder.items[-2].final_state_unknown


def test_expired_continue_token_restarts_the_list(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder
) -> None:
    for name in ("a", "b", "c"):
        server.add(pod(name, 0))
    original = server._list

    async def first_page(request: Request, out: Writer) -> None:
        await original(request, out)

    async def expired(request: Request, out: Writer) -> None:
        await out.json(410, {**GONE, "metadata": {"continue": "fresh-token"}})

    server.script("list", first_page)
    server.script("list", expired)
    factory.informer("v1", "pods", page_size=2).events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED)
    tokens = [r.query.get("continue") for r in server.requests_of("list")]
    assert tokens == [None, "2", None, "2"]
    assert sorted(n for t, n in recorder.summary() if t == "ADDED") == ["a", "b", "c"]


def test_clean_end_resumes_from_the_last_version_without_relist_or_duplicate(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder
) -> None:
    """Case 16."""
    pods = factory.informer("v1", "pods")
    pods.events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED)
    server.add(pod("a", 0))
    recorder.wait_count(EventType.ADDED)
    server.end_watches()
    server.wait_for(lambda: len(server.requests_of("watch")) == 2)
    server.add(pod("b", 0))
    recorder.wait_count(EventType.ADDED, 2)
    assert server.requests_of("watch")[1].query["resourceVersion"] == "101"
    assert recorder.summary() == [("SYNCED", None), ("ADDED", "a"), ("ADDED", "b")]
    assert len(server.requests_of("list")) == 1
    stats = pods.statistics()
    assert (stats.lists, stats.watches, stats.syncs, stats.failures) == (1, 2, 1, 0)


def test_429_with_retry_after_is_waited_out(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder
) -> None:
    """Case 17 (Retry-After of 1 s instead of 2 to keep the suite fast)."""
    server.add(pod("a", 0))
    for _ in range(3):
        server.script("list", status(429, {"Retry-After": "1"}))
    patient = Backoff(initial=0.05, cap=5.0)  # the cap bounds Retry-After too
    factory.informer("v1", "pods", backoff=patient).events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED, timeout=10)
    lists = server.requests_of("list")
    assert len(lists) == 4
    assert all(b.at - a.at >= 0.95 for a, b in itertools.pairwise(lists))
    assert recorder.summary()[-2:] == [("ADDED", "a"), ("SYNCED", None)]


def test_500_on_list_is_retried_and_the_informer_lives_on(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder
) -> None:
    """Case 18."""
    for _ in range(3):
        server.script("list", status(500))
    factory.informer("v1", "pods").events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED)
    assert [type(e) for e in errors_of(recorder)] == [StatusError] * 3
    assert "list pods" in str(errors_of(recorder)[0])


@pytest.mark.parametrize("code", [403, 404])
def test_forbidden_and_not_found_name_the_verb_and_resource(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder, code: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.script("list", status(code))
    factory.informer("v1", "pods", "team-a").events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED)
    message = str(errors_of(recorder)[0])
    assert f"list pods in team-a: {code}" in message
    assert "check RBAC" in caplog.text


def test_malformed_line_is_an_error_and_a_relist(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder
) -> None:
    async def garbage(request: Request, out: Writer) -> None:
        await out.start_stream()
        await out.send(b"this is not json\n")
        await out.hold()

    server.script("watch", garbage)
    factory.informer("v1", "pods").events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED, 2)
    assert isinstance(errors_of(recorder)[0], MalformedError)
    assert len(server.requests_of("list")) == 2


def test_namespaced_list_and_watch_use_the_same_path_and_selectors(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder
) -> None:
    """Case 22."""
    factory.informer("v1", "pods", "prod", "app=web", "status.phase=Running").events.subscribe(
        recorder
    )
    recorder.wait_count(EventType.SYNCED)
    server.wait_for(lambda: len(server.requests_of("watch")) == 1)
    (listed,), (watched,) = server.requests_of("list"), server.requests_of("watch")
    assert listed.path == watched.path == "/api/v1/namespaces/prod/pods"
    for request in (listed, watched):
        assert request.query["labelSelector"] == "app=web"
        assert request.query["fieldSelector"] == "status.phase=Running"
