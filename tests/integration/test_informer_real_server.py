"""The informer against a real kube-apiserver: exact event sequences, server-side checks."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from rx_informer import (
    EVENT,
    Cluster,
    EventType,
    InformerFactory,
    Timeouts,
    make_informer,
)
from rx_informer.testing.control_plane import ControlPlane
from rx_informer.testing.invariant import InvariantChecker
from tests.conftest import FAST_BACKOFF, Recorder
from tests.support.kube import watch_checked

pytestmark = pytest.mark.integration

# Generous for a loaded 2-core machine; every wait ends as soon as its condition holds.
DEADLINE = 30.0


@pytest.fixture(scope="module")
def kube(control_plane: ControlPlane) -> Iterator[Cluster]:
    cluster = Cluster.from_kubeconfig(str(control_plane.kubeconfig_path))
    yield cluster
    cluster.close()


@pytest.fixture
def api(control_plane: ControlPlane) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=control_plane.server, verify=control_plane.ssl_context(),
                      timeout=DEADLINE) as client:
        yield client


@pytest.fixture
def namespace(api: httpx.Client) -> Iterator[str]:
    name = f"t-{uuid.uuid4().hex[:10]}"
    api.post("/api/v1/namespaces", json={"metadata": {"name": name}}).raise_for_status()
    yield name
    api.delete(f"/api/v1/namespaces/{name}")


@pytest.fixture
def factory(kube: Cluster) -> Iterator[InformerFactory]:
    made = InformerFactory(kube, backoff=FAST_BACKOFF)
    yield made
    made.close()


def configmap(name: str, **labels: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels}, "data": {"v": "1"}}


def create(api: httpx.Client, namespace: str, plural: str, body: dict[str, Any]) -> Any:
    response = api.post(f"/api/v1/namespaces/{namespace}/{plural}", json=body)
    response.raise_for_status()
    return response.json()


def shapes(recorder: Recorder) -> list[tuple[str, str | None]]:
    return [(e.type.value, e.name) for e in recorder.items]


def test_configmap_changes_reach_every_stream_and_the_facade(
    factory: InformerFactory, kube: Cluster, api: httpx.Client, namespace: str
) -> None:
    create(api, namespace, "configmaps", configmap("before"))
    informer = factory.informer("v1", "configmaps", namespace)
    events, snapshots, synced = Recorder(), Recorder(), Recorder()
    informer.events.subscribe(events)
    informer.snapshots.subscribe(snapshots)
    informer.synced.subscribe(synced)
    seed = make_informer(kube, f"/api/v1/namespaces/{namespace}/configmaps")
    calls: list[tuple[str, str]] = []
    for kind in (EVENT.ADD, EVENT.UPDATE, EVENT.DELETE):
        seed.on(kind, lambda obj, kind=kind: calls.append((kind.value, obj["metadata"]["name"])))
    seed.start().result(DEADLINE)
    events.wait_count(EventType.SYNCED, timeout=DEADLINE)

    path = f"/api/v1/namespaces/{namespace}/configmaps"
    create(api, namespace, "configmaps", configmap("cm"))
    api.patch(f"{path}/cm", json={"data": {"v": "2"}},
              headers={"Content-Type": "application/merge-patch+json"}).raise_for_status()
    api.delete(f"{path}/cm").raise_for_status()
    events.wait_count(EventType.DELETED, timeout=DEADLINE)

    assert shapes(events) == [("ADDED", "before"), ("SYNCED", None), ("ADDED", "cm"),
                              ("MODIFIED", "cm"), ("DELETED", "cm")]
    modified = events.items[3]
    assert modified.old["data"] == {"v": "1"} and modified.object["data"] == {"v": "2"}
    assert [len(s) for s in snapshots.items] == [1, 2, 2, 1]
    assert len(synced.items) == 1 and synced.items[0].has_synced
    deadline = time.monotonic() + DEADLINE
    while len(calls) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert calls == [("add", "before"), ("add", "cm"), ("update", "cm"), ("delete", "cm")]
    seed.stop()


def test_pods_without_a_scheduler(
    factory: InformerFactory, api: httpx.Client, namespace: str
) -> None:
    recorder = Recorder()
    factory.informer("v1", "pods", namespace).events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED, timeout=DEADLINE)
    pod = {"metadata": {"name": "p"},
           "spec": {"containers": [{"name": "c", "image": "registry.invalid/x:1"}]}}
    create(api, namespace, "pods", pod)
    api.delete(f"/api/v1/namespaces/{namespace}/pods/p",
               params={"gracePeriodSeconds": "0"}).raise_for_status()
    recorder.wait_count(EventType.DELETED, timeout=DEADLINE)
    assert next(t for t, n in shapes(recorder) if n == "p") == "ADDED"
    assert shapes(recorder)[-1] == ("DELETED", "p")


def test_paging_1200_objects_give_one_sync_with_all(
    factory: InformerFactory, api: httpx.Client, namespace: str, control_plane: ControlPlane
) -> None:
    async def create_many() -> None:
        async with httpx.AsyncClient(base_url=control_plane.server,
                                     verify=control_plane.ssl_context(),
                                     timeout=DEADLINE) as client:
            limit = asyncio.Semaphore(16)

            async def one(index: int) -> None:
                async with limit:
                    response = await client.post(
                        f"/api/v1/namespaces/{namespace}/configmaps",
                        json=configmap(f"cm-{index:04d}"))
                    response.raise_for_status()

            await asyncio.gather(*(one(i) for i in range(1200)))

    asyncio.run(create_many())
    informer = factory.informer("v1", "configmaps", namespace, page_size=500)
    recorder = Recorder()
    informer.synced.subscribe(recorder)
    snapshot = recorder.wait(lambda items: len(items) == 1, timeout=DEADLINE)[0]
    assert len(snapshot) == 1200
    assert informer.statistics().lists == 3
    assert informer.statistics().syncs == 1


def test_label_and_field_selectors(
    factory: InformerFactory, api: httpx.Client, namespace: str
) -> None:
    for name, app in (("web-1", "web"), ("web-2", "web"), ("db-1", "db")):
        create(api, namespace, "configmaps", configmap(name, app=app))
    by_label, by_field = Recorder(), Recorder()
    factory.informer("v1", "configmaps", namespace, "app=web").events.subscribe(by_label)
    factory.informer("v1", "configmaps", namespace,
                     field_selector="metadata.name=db-1").events.subscribe(by_field)
    by_label.wait_count(EventType.SYNCED, timeout=DEADLINE)
    by_field.wait_count(EventType.SYNCED, timeout=DEADLINE)
    create(api, namespace, "configmaps", configmap("web-3", app="web"))
    by_label.wait_count(EventType.ADDED, 3, timeout=DEADLINE)

    assert sorted(n for t, n in shapes(by_label) if t == "ADDED") == ["web-1", "web-2", "web-3"]
    assert shapes(by_field) == [("ADDED", "db-1"), ("SYNCED", None)]


def test_namespace_scope_excludes_other_namespaces(
    factory: InformerFactory, api: httpx.Client, namespace: str
) -> None:
    create(api, namespace, "configmaps", configmap("mine"))
    recorder = Recorder()
    factory.informer("v1", "configmaps", namespace).events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED, timeout=DEADLINE)
    create(api, "default", "configmaps", configmap(f"elsewhere-{namespace}"))
    create(api, namespace, "configmaps", configmap("mine-too"))
    recorder.wait_count(EventType.ADDED, 2, timeout=DEADLINE)
    assert shapes(recorder) == [("ADDED", "mine"), ("SYNCED", None), ("ADDED", "mine-too")]


def test_custom_resource_objects(
    factory: InformerFactory, api: httpx.Client, namespace: str
) -> None:
    group = f"{namespace}.example.com"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"widgets.{group}"},
        "spec": {
            "group": group, "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                "openAPIV3Schema": {"type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True}}}],
        },
    }
    api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
             json=crd).raise_for_status()
    path = f"/apis/{group}/v1/namespaces/{namespace}/widgets"
    deadline = time.monotonic() + DEADLINE
    while api.get(path).status_code != 200:  # the new API appears within seconds
        assert time.monotonic() < deadline, "the CRD's API never appeared"
        time.sleep(0.1)

    recorder = Recorder()
    factory.informer(f"{group}/v1", "widgets", namespace).events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED, timeout=DEADLINE)
    api.post(path, json={"apiVersion": f"{group}/v1", "kind": "Widget",
                         "metadata": {"name": "w"}, "size": 3}).raise_for_status()
    recorder.wait_count(EventType.ADDED, timeout=DEADLINE)
    assert recorder.items[-1].object["size"] == 3
    api.delete(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.{group}")


def test_watch_ended_by_the_server_resumes_without_relist_or_duplicate(
    kube: Cluster, api: httpx.Client, namespace: str
) -> None:
    short = Timeouts(watch_min=1, watch_max=1)
    factory = InformerFactory(kube, timeouts=short, backoff=FAST_BACKOFF)
    informer = factory.informer("v1", "configmaps", namespace)
    checker = InvariantChecker(informer, kube).start()
    recorder = Recorder()
    informer.events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED, timeout=DEADLINE)

    for index in range(4):  # each write lands in a different one-second watch
        create(api, namespace, "configmaps", configmap(f"cm-{index}"))
        deadline = time.monotonic() + DEADLINE
        while informer.statistics().watches < index + 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    recorder.wait_count(EventType.ADDED, 4, timeout=DEADLINE)

    checker.wait_converged(DEADLINE)
    assert informer.statistics().syncs == 1
    assert shapes(recorder) == [("SYNCED", None)] + [("ADDED", f"cm-{i}") for i in range(4)]
    factory.close()


def _open_watches(plane: ControlPlane) -> float:
    return plane.apiserver_metric("apiserver_longrunning_requests", verb="WATCH",
                                  resource="configmaps")


def wait_metric(plane: ControlPlane, want: float) -> None:
    deadline = time.monotonic() + DEADLINE
    while (value := _open_watches(plane)) != want:
        assert time.monotonic() < deadline, f"open configmap watches stayed {value}, not {want}"
        time.sleep(0.05)


def test_two_subscribers_one_watch_and_last_dispose_closes_it_on_the_server(
    factory: InformerFactory, control_plane: ControlPlane, namespace: str
) -> None:
    # kube-apiserver watches some configmaps itself: count ours on top of its own.
    baseline = _open_watches(control_plane)
    informer = factory.informer("v1", "configmaps", namespace)
    first, second = Recorder(), Recorder()
    one = informer.events.subscribe(first)
    two = informer.snapshots.subscribe(second)
    first.wait_count(EventType.SYNCED, timeout=DEADLINE)
    wait_metric(control_plane, baseline + 1)

    one.dispose()
    assert _open_watches(control_plane) == baseline + 1
    two.dispose()
    wait_metric(control_plane, baseline)


@pytest.mark.parametrize("watch_cache", ["on", "off"])
def test_apiserver_restart_with_deletes_and_compaction_while_down_relists(
    control_plane_factory: Any, watch_cache: str
) -> None:
    """410 after compaction (watch cache off: straight from etcd) and a restart (watch cache
    on: rebuilt empty). Objects deleted meanwhile come as DELETED with final_state_unknown."""
    knobs = {"watch_cache_disabled_for": ["configmaps"]} if watch_cache == "off" else {}
    plane = control_plane_factory(**knobs)
    kube = Cluster.from_kubeconfig(str(plane.kubeconfig_path))
    with httpx.Client(base_url=plane.server, verify=plane.ssl_context(), timeout=DEADLINE) as api:
        for name in ("stays", "vanishes"):
            create(api, "default", "configmaps", configmap(name))
        factory = InformerFactory(kube, backoff=FAST_BACKOFF)
        informer = factory.informer("v1", "configmaps", "default")
        checker, recorder = watch_checked(informer, kube, DEADLINE)

        plane.stop_apiserver()
        plane.delete_from_storage("configmaps/default/vanishes")
        plane.compact()
        plane.start_apiserver()
        recorder.wait_count(EventType.SYNCED, 2, timeout=DEADLINE)
        create(api, "default", "configmaps", configmap("after"))
        recorder.wait(lambda items: ("ADDED", "after") in shapes(recorder), timeout=DEADLINE)

        checker.wait_converged(DEADLINE)
        deleted = [e for e in recorder.items if e.type is EventType.DELETED]
        assert [(e.name, e.final_state_unknown) for e in deleted] == [("vanishes", True)]
        assert not [e for e in recorder.items if e.type is EventType.MODIFIED]
        assert informer.statistics().syncs == 2
        factory.close()
    kube.close()
