"""What faulty user code and odd server answers cannot do to an informer."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from rx_informer import (
    Cluster,
    EventType,
    InformerError,
    InformerFactory,
    TransformError,
)
from tests.conftest import Recorder
from tests.support.fake_api import FakeApiServer, Request, Writer, pod
from tests.support.kubeconfigs import exec_user, write_kubeconfig


def test_a_subscriber_raising_cancelled_error_cancels_nothing(
    server: FakeApiServer, factory: InformerFactory
) -> None:
    pods = factory.informer("v1", "pods")
    fired: list[int] = []

    def cancel_once(event: Any) -> None:
        if event.type is EventType.ADDED and not fired:
            fired.append(1)
            raise asyncio.CancelledError

    pods.events.subscribe(cancel_once)
    other = Recorder()
    pods.events.subscribe(other)
    other.wait_count(EventType.SYNCED)
    server.add(pod("a", 0))
    server.add(pod("b", 0))
    other.wait_count(EventType.ADDED, 2)
    assert fired == [1]


def test_a_failing_transform_is_an_error_event_and_the_object_is_cached_as_received(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder
) -> None:
    def picky(obj: dict[str, Any]) -> dict[str, Any]:
        if obj["metadata"]["name"] == "odd":
            raise KeyError("spec")
        obj["metadata"].pop("uid", None)
        return obj

    server.add(pod("fine", 0))
    server.add(pod("odd", 0))
    pods = factory.informer("v1", "pods", transform=picky)
    pods.events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED)
    server.add(pod("later", 0))
    recorder.wait_count(EventType.ADDED, 3)

    errors = [e.error for e in recorder.items if e.type is EventType.ERROR]
    assert len(errors) == 1 and isinstance(errors[0], TransformError)
    assert "default/odd" in str(errors[0])
    assert "uid" in pods.store.get("odd", "default")["metadata"]  # type: ignore[index]
    assert "uid" not in pods.store.get("fine", "default")["metadata"]  # type: ignore[index]


def test_a_failing_or_non_string_indexer_leaves_objects_cached_but_unindexed(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def number(obj: dict[str, Any]) -> Any:
        return 5

    def node(obj: dict[str, Any]) -> str:
        return str(obj["spec"]["nodeName"])

    server.add(pod("a", 0, spec={"nodeName": "n1"}))
    server.add(pod("b", 0))
    pods = factory.informer("v1", "pods", indexers={"number": number, "node": node})
    pods.events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED)
    assert len(pods.store) == 2
    assert pods.store.index_values("number") == []
    assert [o["metadata"]["name"] for o in pods.store.by_index("node", "n1")] == ["a"]
    assert "index function number failed" in caplog.text


def test_an_informer_whose_loop_shut_down_says_so_and_starts_again_elsewhere(
    server: FakeApiServer, factory: InformerFactory
) -> None:
    pods = factory.informer("v1", "pods")
    errors: list[Exception] = []

    async def inside_a_loop() -> None:
        pods.events.subscribe(lambda _: None, errors.append)
        assert await factory.wait_for_sync_async(timeout=5)

    asyncio.run(inside_a_loop())
    deadline = time.monotonic() + 5
    while not errors and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(errors) == 1 and isinstance(errors[0], InformerError)
    assert "event loop" in str(errors[0])

    recorder = Recorder()
    pods.events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED)
    server.add(pod("after-the-loop", 0))
    recorder.wait_count(EventType.ADDED)
    assert factory.wait_for_sync(timeout=5)


def test_wait_for_sync_after_close_starts_the_informer_again(
    server: FakeApiServer, factory: InformerFactory
) -> None:
    server.add(pod("a", 0))
    pods = factory.informer("v1", "pods")
    assert factory.wait_for_sync(timeout=5)
    pods.close()
    assert factory.wait_for_sync(timeout=5)
    assert len(pods.store) == 1


def test_the_same_object_on_two_pages_is_announced_once(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder
) -> None:
    def page(items: list[dict[str, Any]], token: str) -> Any:
        async def answer(request: Request, out: Writer) -> None:
            await out.json(200, {"metadata": {"resourceVersion": "9", "continue": token},
                                 "items": items})
        return answer

    server.script("list", page([pod("a", 1)], "next"))
    server.script("list", page([pod("a", 1), pod("b", 2)], ""))
    factory.informer("v1", "pods", page_size=1).events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED)
    assert recorder.summary() == [("ADDED", "a"), ("ADDED", "b"), ("SYNCED", None)]


def test_a_watch_line_with_an_extra_key_is_cached_correctly(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder
) -> None:
    async def extra_key(request: Request, out: Writer) -> None:
        await out.start_stream()
        await out.send(b'{"type":"ADDED","object":' + json.dumps(pod("z", 150)).encode()
                       + b',"x":1}\n')
        await out.hold()

    server.script("watch", extra_key)
    pods = factory.informer("v1", "pods")
    pods.events.subscribe(recorder)
    recorder.wait_count(EventType.ADDED)
    assert pods.store.get("z", "default") == pod("z", 150)


def test_events_and_snapshots_cannot_be_changed_by_a_subscriber(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder
) -> None:
    server.add(pod("a", 0))
    factory.informer("v1", "pods").events.subscribe(recorder)
    event = recorder.wait_count(EventType.SYNCED)[-1]
    with pytest.raises(AttributeError):
        event.type = EventType.DELETED
    with pytest.raises(AttributeError):
        event.snapshot.has_synced = False
    with pytest.raises(AttributeError):
        event.snapshot.resource_version = "0"


def test_a_password_in_the_server_url_stays_out_of_the_repr(tmp_path: Path) -> None:
    config = write_kubeconfig(tmp_path / "kc", "    server: http://admin:hunter2pw@127.0.0.1:9\n")
    cluster = Cluster.from_kubeconfig(config)
    assert "hunter2pw" not in repr(cluster)
    assert "127.0.0.1:9" in repr(cluster)
    cluster.close()


HANGING_PLUGIN = """\
import json, sys, time
from pathlib import Path
calls = Path(sys.argv[1])
count = int(calls.read_text() or 0) + 1 if calls.exists() else 1
calls.write_text(str(count))
if count > 1:
    time.sleep(30)
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1beta1",
                  "kind": "ExecCredential",
                  "status": {"token": "t", "expirationTimestamp": "2000-01-01T00:00:00Z"}}))
"""


def test_a_hanging_credential_plugin_stalls_neither_other_informers_nor_dispose(
    server: FakeApiServer, factory: InformerFactory, tmp_path: Path
) -> None:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(HANGING_PLUGIN)
    config = write_kubeconfig(tmp_path / "kc", f"    server: {server.url}\n",
                              exec_user(plugin, tmp_path / "calls"))
    stuck_cluster = Cluster.from_kubeconfig(config)  # first call: an expired token
    stuck = InformerFactory(stuck_cluster).informer("v1", "pods", "stuck")
    hung = stuck.events.subscribe(lambda _: None)  # its first request runs the plugin again
    calls = tmp_path / "calls"
    server.wait_for(lambda: calls.exists() and calls.read_text() == "2")

    healthy = Recorder()
    factory.informer("v1", "pods").events.subscribe(healthy)
    healthy.wait_count(EventType.SYNCED)
    server.add(pod("still-flowing", 0))
    healthy.wait_count(EventType.ADDED)

    started = time.monotonic()
    disposing = threading.Thread(target=hung.dispose)
    disposing.start()
    disposing.join(5)
    assert time.monotonic() - started < 1.0
    stuck_cluster.close()
