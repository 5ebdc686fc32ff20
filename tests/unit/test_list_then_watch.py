"""The happy path over a real socket: list, SYNCED, then watch events in order."""

from __future__ import annotations

from rx_informer import EventType, InformerFactory
from tests.conftest import Recorder
from tests.support.fake_api import FakeApiServer, pod


def test_list_then_watch_delivers_every_change_in_order(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder
) -> None:
    server.add(pod("a", 0))
    server.add(pod("b", 0))
    pods = factory.informer("v1", "pods")

    subscription = pods.events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED)
    server.modify(pod("a", 0, spec={"x": "1"}))
    server.delete("b")
    server.add(pod("c", 0))
    recorder.wait_count(EventType.ADDED, 3)
    subscription.dispose()

    assert recorder.summary() == [
        ("ADDED", "a"), ("ADDED", "b"), ("SYNCED", None),
        ("MODIFIED", "a"), ("DELETED", "b"), ("ADDED", "c"),
    ]
    watch = server.requests_of("watch")[0]
    assert watch.query["resourceVersion"] == "102"
    assert watch.query["allowWatchBookmarks"] == "true"
    assert 60 <= int(watch.query["timeoutSeconds"]) <= 60
    assert watch.headers["authorization"] == "Bearer secret-token-123"


def test_store_tracks_the_cache_and_is_empty_when_nobody_listens(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder
) -> None:
    server.add(pod("a", 0))
    pods = factory.informer("v1", "pods")
    assert len(pods.store) == 0

    subscription = pods.synced.subscribe(recorder)
    snapshot = recorder.wait(lambda items: len(items) == 1)[0]
    assert [o["metadata"]["name"] for o in snapshot] == ["a"]
    assert pods.store.get("a", "default") is not None
    assert pods.store.list("default") == pods.store.list()
    assert pods.store.resource_version == "101"

    subscription.dispose()
    assert len(pods.store) == 0
