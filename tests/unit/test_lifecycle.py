"""Subscribe starts, the last dispose aborts at once, a new subscriber starts afresh.

The server's own record of when each socket closed is the measure, not the client's word.
"""

from __future__ import annotations

import time

import pytest

from rx_informer import EventType, InformerFactory
from tests.conftest import Recorder
from tests.support.fake_api import FakeApiServer, Request, Writer, pod

ABORT_LIMIT = 0.05  # seconds from dispose() to the server seeing the socket close


async def hold(request: Request, out: Writer) -> None:
    await out.hold()


async def fail_500(request: Request, out: Writer) -> None:
    await out.json(500, {"kind": "Status", "code": 500, "message": "etcd unavailable"})


def dispose_and_time_close(server: FakeApiServer, dispose: object) -> float:
    closed_before = len(server.closed)
    started = time.monotonic()
    dispose.dispose()  # type: ignore[attr-defined]
    server.wait_for(lambda: len(server.closed) > closed_before, timeout=2)
    return server.closed[-1] - started


def test_dispose_during_watch_closes_the_socket_at_once(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder
) -> None:
    subscription = factory.informer("v1", "pods").events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED)
    server.wait_for(lambda: len(server.requests_of("watch")) == 1)

    assert dispose_and_time_close(server, subscription) < ABORT_LIMIT
    assert server.open_connections == 0


def test_dispose_during_list_closes_it_and_never_opens_a_watch(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder
) -> None:
    """Case 11: stop while the initial list is loading: no watch, no event, no sync."""
    server.script("list", hold)
    subscription = factory.informer("v1", "pods").events.subscribe(recorder)
    server.wait_for(lambda: len(server.requests_of("list")) == 1)

    assert dispose_and_time_close(server, subscription) < ABORT_LIMIT
    # An observation window for something that must not happen: a watch after the dispose.
    time.sleep(0.2)
    assert server.requests_of("watch") == []
    assert recorder.items == []


def test_dispose_during_backoff_sleep_stops_every_request(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder
) -> None:
    slow = factory.informer("v1", "pods", backoff=__import__("rx_informer").Backoff(initial=5))
    for _ in range(3):
        server.script("list", fail_500)
    subscription = slow.events.subscribe(recorder)
    recorder.wait_count(EventType.ERROR)
    assert len(server.requests_of("list")) == 1

    # The failed list's connection is kept alive in the pool; dispose must close it too.
    assert dispose_and_time_close(server, subscription) < ABORT_LIMIT
    assert len(server.requests_of("list")) == 1


def test_resubscribing_starts_a_fresh_list_with_no_stale_state(
    server: FakeApiServer, factory: InformerFactory
) -> None:
    server.add(pod("old", 0))
    pods = factory.informer("v1", "pods")
    first = Recorder()
    subscription = pods.events.subscribe(first)
    first.wait_count(EventType.SYNCED)
    subscription.dispose()

    server.delete("old")
    server.add(pod("new", 0))
    second = Recorder()
    pods.events.subscribe(second)
    second.wait_count(EventType.SYNCED)
    assert second.summary() == [("ADDED", "new"), ("SYNCED", None)]
    assert len(server.requests_of("list")) == 2


def test_late_subscriber_gets_cache_then_synced_then_live_without_gap(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder
) -> None:
    server.add(pod("a", 0))
    pods = factory.informer("v1", "pods")
    pods.events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED)
    server.add(pod("b", 0))
    recorder.wait_count(EventType.ADDED, 2)

    late, snapshots = Recorder(), Recorder()
    pods.events.subscribe(late)
    pods.snapshots.subscribe(snapshots)
    server.modify(pod("a", 0, spec={"v": "2"}))
    late.wait_count(EventType.MODIFIED)

    assert sorted(late.summary()[:2]) == [("ADDED", "a"), ("ADDED", "b")]
    assert late.summary()[2:] == [("SYNCED", None), ("MODIFIED", "a")]
    snapshots.wait(lambda items: len(items) == 2)
    assert len(snapshots.items[0]) == 2
    assert snapshots.items[1].get("a", "default")["spec"] == {"v": "2"}
    assert len(server.requests_of("watch")) == 1


def test_two_subscribers_share_one_connection(
    server: FakeApiServer, factory: InformerFactory
) -> None:
    assert factory.informer("v1", "pods") is factory.informer("v1", "pods")
    assert factory.informer("v1", "pods") is not factory.informer("v1", "pods", "ns")
    first, second = Recorder(), Recorder()
    factory.informer("v1", "pods").events.subscribe(first)
    factory.informer("v1", "pods").synced.subscribe(second)
    first.wait_count(EventType.SYNCED)
    second.wait(lambda items: len(items) == 1)
    assert len(server.requests_of("list")) == 1
    assert len(server.requests_of("watch")) <= 1


@pytest.mark.parametrize("calls", [1, 2])
def test_factory_wait_for_sync_keeps_informers_running_until_close(
    server: FakeApiServer, factory: InformerFactory, calls: int
) -> None:
    server.add(pod("a", 0))
    pods = factory.informer("v1", "pods")
    for _ in range(calls):
        assert factory.wait_for_sync(timeout=5)
    assert len(pods.store) == 1
    assert len(server.requests_of("list")) == 1

    closed_before = len(server.closed)
    factory.close()
    server.wait_for(lambda: len(server.closed) > closed_before, timeout=2)
    assert len(pods.store) == 0


def test_a_raising_subscriber_harms_neither_the_stream_nor_the_others(
    server: FakeApiServer, factory: InformerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """Case 20, on a live informer: the raiser keeps getting events, so do the others."""
    server.add(pod("a", 0))
    server.add(pod("b", 0))
    pods = factory.informer("v1", "pods")
    seen_by_raiser: list[str | None] = []

    def raiser(event: object) -> None:
        seen_by_raiser.append(getattr(event, "name", None))
        raise RuntimeError("subscriber bug")

    pods.events.subscribe(raiser)
    good = Recorder()
    pods.events.subscribe(good)
    good.wait_count(EventType.SYNCED)
    server.add(pod("c", 0))
    good.wait_count(EventType.ADDED, 3)

    assert sorted(n for n in seen_by_raiser if n) == ["a", "b", "c"]
    assert len(seen_by_raiser) == 4  # a, b, SYNCED, c
    assert "subscriber bug" in caplog.text
