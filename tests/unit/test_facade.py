"""The imperative facade: make_informer, on, on_sync, start, stop, cache."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from kubernetes.client import V1ListMeta, V1ObjectMeta, V1Pod, V1PodList

from rx_informer import EVENT, Cluster, make_informer
from rx_informer.errors import InvalidResourceError
from tests.conftest import Recorder
from tests.support.fake_api import FakeApiServer, Request, Writer, pod


def test_callbacks_sync_and_cache(server: FakeApiServer, cluster: Cluster) -> None:
    server.add(pod("a", 0))
    informer = make_informer(cluster, "/api/v1/pods")
    added, updated, deleted, synced = Recorder(), Recorder(), Recorder(), Recorder()
    informer.on(EVENT.ADD, added)
    informer.on(EVENT.UPDATE, updated)
    informer.on(EVENT.DELETE, deleted)
    informer.on_sync(synced)

    informer.start().result(timeout=5)
    assert [o["metadata"]["name"] for o in synced.items[0]] == ["a"]
    assert informer.cache.get("a", "default") is not None
    assert [o["metadata"]["name"] for o in informer.cache.list("default")] == ["a"]

    server.modify(pod("a", 0, spec={"x": 1}))
    server.delete("a")
    deleted.wait(lambda items: len(items) == 1)
    assert [o["metadata"]["name"] for o in added.items + updated.items] == ["a", "a"]
    informer.stop()


def test_slow_first_list_start_completes_with_a_full_cache(
    server: FakeApiServer, cluster: Cluster
) -> None:
    """Case 14: start() completes only after the cache is full and sync callbacks ran."""
    original = server._list

    async def slow(request: Request, out: Writer) -> None:
        await asyncio.sleep(0.5)
        await original(request, out)

    server.add(pod("a", 0))
    server.script("list", slow)
    informer = make_informer(cluster, "/api/v1/pods")
    synced = Recorder()
    informer.on_sync(synced)
    informer.start().result(timeout=5)
    assert len(synced.items) == 1
    assert informer.cache.get("a", "default") is not None
    informer.stop()


def test_start_twice_at_once_makes_one_list_and_one_watch(
    server: FakeApiServer, cluster: Cluster
) -> None:
    """Case 21."""
    informer = make_informer(cluster, "/api/v1/pods")
    barrier = threading.Barrier(2)
    futures = []

    def start() -> None:
        barrier.wait()
        futures.append(informer.start())

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    futures[0].result(timeout=5)
    assert futures[0] is futures[1]
    server.wait_for(lambda: len(server.requests_of("watch")) == 1)
    assert len(server.requests_of("list")) == 1
    informer.stop()


def test_error_handler_that_restarts_never_opens_a_second_watch(
    server: FakeApiServer, cluster: Cluster
) -> None:
    """Case 4: failing watches, and a handler that calls start() on every error."""
    async def fail_later(request: Request, out: Writer) -> None:
        await out.start_stream()
        await asyncio.sleep(0.05)
        out.drop()

    for _ in range(3):
        server.script("watch", fail_later)
    informer = make_informer(cluster, "/api/v1/pods")
    errors = Recorder()
    informer.on(EVENT.ERROR, errors)
    informer.on(EVENT.ERROR, lambda _: informer.start())
    informer.start().result(timeout=5)
    errors.wait(lambda items: len(items) == 3, timeout=10)
    server.wait_for(lambda: len(server.requests_of("watch")) == 4, timeout=10)
    assert server.open_connections == 1
    assert len(server.requests_of("list")) == 1
    informer.stop()


def test_stop_means_no_callback_afterwards(server: FakeApiServer, cluster: Cluster) -> None:
    informer = make_informer(cluster, "/api/v1/pods")
    calls = Recorder()
    informer.on(EVENT.ADD, calls)
    informer.start().result(timeout=5)
    server.add(pod("a", 0))
    calls.wait(lambda items: len(items) == 1)

    informer.stop()
    server.add(pod("b", 0))
    time.sleep(0.2)  # window in which a late callback would show up
    assert len(calls.items) == 1

    informer.start().result(timeout=5)
    assert sorted(o["metadata"]["name"] for o in informer.cache.list()) == ["a", "b"]
    informer.stop()


def test_list_fn_with_a_kubernetes_model_replaces_the_paged_list(
    server: FakeApiServer, cluster: Cluster
) -> None:
    calls: list[int] = []

    def list_fn() -> V1PodList:
        calls.append(1)
        return V1PodList(
            metadata=V1ListMeta(resource_version="100"),
            items=[V1Pod(metadata=V1ObjectMeta(name="m", namespace="ns", resource_version="7"))],
        )

    informer = make_informer(cluster, "/api/v1/namespaces/ns/pods", list_fn=list_fn)
    informer.start().result(timeout=5)
    cached = informer.cache.get("m", "ns")
    assert cached is not None and cached["metadata"]["resourceVersion"] == "7"
    server.wait_for(lambda: len(server.requests_of("watch")) == 1)
    assert server.requests_of("list") == [] and calls == [1]
    assert server.requests_of("watch")[0].path == "/api/v1/namespaces/ns/pods"
    informer.stop()


async def test_await_start_inside_a_running_loop(server: FakeApiServer, cluster: Cluster) -> None:
    server.add(pod("a", 0))
    informer = make_informer(cluster, "/api/v1/pods")
    threads: set[int] = set()
    informer.on(EVENT.ADD, lambda _: threads.add(threading.get_ident()))
    await informer.start()
    assert threads == {threading.get_ident()}  # callbacks on the caller's loop, no new thread
    informer.stop()


@pytest.mark.parametrize("path", ["/api/v1", "/apis/apps/v1/namespaces/prod", "pods",
                                  "/api/v1/Pods", "/api/v2/pods", "/apis/apps/v1/deploy ments"])
def test_paths_that_cannot_be_valid_fail_before_any_request(
    server: FakeApiServer, cluster: Cluster, path: str
) -> None:
    with pytest.raises(InvalidResourceError):
        make_informer(cluster, path)
    assert server.requests == []


def test_stop_racing_an_error_handler_that_restarts_leaves_it_stopped(
    server: FakeApiServer, cluster: Cluster
) -> None:
    """Case 4's restart-on-error handler must not bring back an informer being stopped."""
    informer = make_informer(cluster, "/api/v1/pods")
    in_handler, stop_called = threading.Event(), threading.Event()

    def restart_on_error(_: object) -> None:
        in_handler.set()
        stop_called.wait(5)
        time.sleep(0.05)  # let stop() get as far as it can while the handler runs
        informer.start()

    informer.on(EVENT.ERROR, restart_on_error)
    async def fail(request: Request, out: Writer) -> None:
        await out.json(500, {"kind": "Status", "code": 500})

    server.script("list", fail)
    informer.start()
    assert in_handler.wait(5)
    stopper = threading.Thread(target=informer.stop)
    stopper.start()
    stop_called.set()
    stopper.join(5)
    requests_after_stop = len(server.requests)
    time.sleep(1.0)  # longer than the backoff: a resurrected informer would list again
    assert len(server.requests) == requests_after_stop
