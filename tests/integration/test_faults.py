"""Faults between the informer and a real control plane: nothing lost, nothing invented.

Every test ends with the invariant checker (``rx_informer.testing.invariant``): the cache
equals a fresh list and the events, replayed from empty, reproduce it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from rx_informer import (
    Backoff,
    Cluster,
    Event,
    EventType,
    GoneError,
    Informer,
    InformerFactory,
    Timeouts,
)
from rx_informer.testing.control_plane import ControlPlane, StaticToken
from rx_informer.testing.fault_proxy import FaultProxy
from rx_informer.testing.http_shim import HttpShim
from rx_informer.testing.invariant import InvariantChecker
from rx_informer.testing.soak import write_kubeconfig_through
from tests.conftest import Recorder
from tests.support.kube import watch_checked
from tests.support.kubeconfigs import TOKEN_FILE_PLUGIN

pytestmark = pytest.mark.integration

DEADLINE = 30.0
INACTIVITY = 2.0
QUICK = Backoff(initial=0.1, cap=1.0, reset_after=30.0)
# The bound the invariant promises: one inactivity timeout plus one backoff, with slack for
# a loaded machine.
CONVERGE = INACTIVITY + QUICK.cap + 15.0


@dataclass
class Rig:
    """A control plane, a fault proxy in front of it, and an informer going through it."""

    plane: ControlPlane
    proxy: FaultProxy
    api: httpx.Client
    cluster: Cluster
    factory: InformerFactory
    namespace: str

    def informer(self, **options: Any) -> Informer:
        return self.factory.informer("v1", "configmaps", self.namespace, **options)

    def write(self, method: str, name: str = "", body: Any = None) -> None:
        path = f"/api/v1/namespaces/{self.namespace}/configmaps" + (f"/{name}" if name else "")
        headers = {"Content-Type": "application/merge-patch+json"} if method == "PATCH" else {}
        self.api.request(method, path, json=body, headers=headers).raise_for_status()

    def create(self, name: str, value: str = "0") -> None:
        self.write("POST", body={"metadata": {"name": name}, "data": {"v": value}})

    def update(self, name: str, value: str) -> None:
        self.write("PATCH", name, {"data": {"v": value}})

    def delete(self, name: str) -> None:
        self.write("DELETE", name)


def make_rig(plane: ControlPlane, tmp_path: Path) -> Iterator[Rig]:
    host, _, port = plane.server.removeprefix("https://").partition(":")
    with FaultProxy(host, int(port)) as proxy, httpx.Client(
        base_url=plane.server, verify=plane.ssl_context(), timeout=DEADLINE
    ) as api:
        namespace = f"f-{uuid.uuid4().hex[:10]}"
        api.post("/api/v1/namespaces", json={"metadata": {"name": namespace}}).raise_for_status()
        cluster = Cluster.from_kubeconfig(
            str(write_kubeconfig_through(plane, proxy, tmp_path / "kc")))
        factory = InformerFactory(cluster, timeouts=Timeouts(inactivity=INACTIVITY),
                                  backoff=QUICK)
        yield Rig(plane, proxy, api, cluster, factory, namespace)
        factory.close()
        cluster.close()
        api.delete(f"/api/v1/namespaces/{namespace}")


@pytest.fixture
def rig(control_plane: ControlPlane, tmp_path: Path) -> Iterator[Rig]:
    yield from make_rig(control_plane, tmp_path)


def start(rig: Rig, **options: Any) -> tuple[Informer, InvariantChecker, Recorder]:
    informer = rig.informer(**options)
    return informer, *watch_checked(informer, rig.cluster, DEADLINE)


def errors(recorder: Recorder) -> list[Exception]:
    return [e.error for e in recorder.items if e.type is EventType.ERROR]


def test_reset_in_the_middle_of_a_watch(rig: Rig) -> None:
    informer, checker, recorder = start(rig)
    rig.create("a")
    recorder.wait_count(EventType.ADDED, timeout=DEADLINE)
    assert rig.proxy.reset() >= 1
    rig.create("b")
    rig.update("a", "1")
    checker.wait_converged(CONVERGE)
    assert informer.statistics().syncs == 1  # a reset resumes the watch, no relist


def test_reset_in_the_middle_of_a_list_page(rig: Rig) -> None:
    for index in range(60):
        rig.create(f"cm-{index:02d}", "x" * 2000)
    rig.proxy.cut_after(40_000)  # in the first page of about 130 KB
    informer = rig.informer()
    checker = InvariantChecker(informer, rig.cluster).start()
    recorder = Recorder()
    informer.events.subscribe(recorder)
    deadline = time.monotonic() + DEADLINE
    while informer.statistics().failures == 0:  # the cut armed: every connection fails
        assert time.monotonic() < deadline, "the list was never cut"
        time.sleep(0.01)
    rig.proxy.cut_after(None)
    recorder.wait_count(EventType.SYNCED, timeout=DEADLINE)
    checker.wait_converged(CONVERGE)
    assert errors(recorder), "the cut list page must have been reported"
    assert len([e for e in recorder.items if e.type is EventType.ADDED]) == 60


def test_half_open_connection_is_detected_and_missed_changes_arrive(rig: Rig) -> None:
    """Case 1 against a real server: the proxy keeps the socket but forwards nothing."""
    informer, checker, recorder = start(rig)
    rig.proxy.blackhole(True)
    rig.create("while-dark")
    failures_before = informer.statistics().failures
    deadline = time.monotonic() + DEADLINE
    while informer.statistics().failures == failures_before:
        assert time.monotonic() < deadline, "inactivity was never detected"
        time.sleep(0.05)
    rig.proxy.blackhole(False)
    checker.wait_converged(CONVERGE)
    assert ("ADDED", "while-dark") in [(e.type.value, e.name) for e in recorder.items]


def test_latency_and_a_trickle_of_single_bytes(rig: Rig) -> None:
    """Every event split into one-byte TCP writes, with U+0085, U+2028 and multi-byte text."""
    _, checker, recorder = start(rig)
    rig.proxy.latency(0.05)
    rig.proxy.trickle(True, delay=0.0)
    tricky = "caf\u00e9 \u6f22\u5b57 \U0001f600 line\u2028sep next\u0085line " * 20
    rig.create("tricky", tricky)
    recorder.wait_count(EventType.ADDED, timeout=DEADLINE)
    rig.proxy.heal()
    assert recorder.items[-1].object["data"]["v"] == tricky
    checker.wait_converged(CONVERGE)


def test_apiserver_restart_with_writes_after(rig: Rig) -> None:
    _, checker, recorder = start(rig)
    rig.create("before")
    rig.plane.stop_apiserver()
    rig.plane.delete_from_storage(f"configmaps/{rig.namespace}/before")
    rig.plane.start_apiserver()
    rig.create("after")
    checker.wait_converged(CONVERGE)
    deleted = [e for e in recorder.items if e.type is EventType.DELETED]
    assert [e.name for e in deleted] == ["before"]


def test_etcd_restart_and_writes_that_fail_meanwhile(rig: Rig) -> None:
    informer, checker, _ = start(rig)
    rig.create("a")
    restart = threading.Thread(target=rig.plane.restart_etcd)
    restart.start()
    attempts = 0
    while restart.is_alive():  # writes during the outage fail or succeed: either is fine
        attempts += 1
        with contextlib.suppress(httpx.HTTPError):
            rig.update("a", str(attempts))
        time.sleep(0.2)
    restart.join()
    rig.update("a", "final")
    checker.wait_converged(CONVERGE)
    assert informer.store.get("a", rig.namespace)["data"]["v"] == "final"  # type: ignore[index]


@pytest.fixture
def uncached_rig(
    control_plane_factory: Callable[..., ControlPlane], tmp_path: Path
) -> Iterator[Rig]:
    """Lists and watches of configmaps served by etcd itself, so compaction bites at once."""
    yield from make_rig(control_plane_factory(watch_cache_disabled_for=["configmaps"]), tmp_path)


def test_compaction_expires_a_continue_token_and_the_list_restarts(uncached_rig: Rig) -> None:
    rig = uncached_rig
    for index in range(40):
        rig.create(f"cm-{index:02d}", "y" * 1000)
    rig.proxy.latency(0.3)  # time to compact between two pages
    informer = rig.informer(page_size=10)
    checker = InvariantChecker(informer, rig.cluster).start()
    recorder = Recorder()
    informer.events.subscribe(recorder)
    deadline = time.monotonic() + DEADLINE
    while informer.statistics().lists < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    rig.update("cm-00", "moved on")
    rig.plane.compact()
    rig.proxy.heal()
    recorder.wait_count(EventType.SYNCED, timeout=DEADLINE)
    checker.wait_converged(CONVERGE)
    assert any(isinstance(e, GoneError) for e in errors(recorder))
    assert informer.statistics().syncs == 1
    assert informer.statistics().lists > 4


def test_subscribers_that_raise_are_slow_or_dispose_themselves(rig: Rig) -> None:
    informer, checker, _ = start(rig)
    slow, raised, once = Recorder(), [], Recorder()

    def slow_subscriber(event: Event) -> None:
        time.sleep(0.1)
        slow(event)

    def raising(event: Event) -> None:
        raised.append(event.type)
        raise RuntimeError("handler bug")

    holder: list[Any] = []

    def dispose_itself(event: Event) -> None:
        once(event)
        if event.type is EventType.ADDED and event.name == "cm-1":
            holder[0].dispose()

    informer.events.subscribe(slow_subscriber)
    informer.events.subscribe(raising)
    holder.append(informer.events.subscribe(dispose_itself))
    for index in range(5):
        rig.create(f"cm-{index}")
    slow.wait(lambda items: len([e for e in items if e.type is EventType.ADDED]) == 5,
              timeout=DEADLINE)
    checker.wait_converged(CONVERGE)
    assert [e.name for e in once.items if e.type is EventType.ADDED] == ["cm-0", "cm-1"]
    assert raised.count(EventType.ADDED) == 5


def test_dispose_and_subscribe_racing_from_many_threads(rig: Rig) -> None:
    informer, checker, _ = start(rig)
    stop = threading.Event()
    problems: list[str] = []

    def churn_subscriptions() -> None:
        while not stop.is_set():
            seen = Recorder()
            subscription = informer.events.subscribe(seen)
            subscription.dispose()
            if seen.concurrent > 1:
                problems.append("concurrent delivery")

    threads = [threading.Thread(target=churn_subscriptions) for _ in range(4)]
    for thread in threads:
        thread.start()
    for index in range(20):
        rig.create(f"cm-{index}")
    stop.set()
    for thread in threads:
        thread.join(DEADLINE)
    checker.wait_converged(CONVERGE)
    assert problems == []
    assert informer.statistics().syncs == 1


def test_rotated_credential_with_the_old_one_rejected(
    control_plane_factory: Callable[..., ControlPlane], tmp_path: Path
) -> None:
    """Case 19 against a real server: a static token file with the old token removed."""
    admin = ("admin", ("system:masters",))
    plane = control_plane_factory(tokens=[StaticToken("first-token", *admin)])
    token_file = tmp_path / "token"
    token_file.write_text("first-token")
    plugin = tmp_path / "plugin.py"
    plugin.write_text(TOKEN_FILE_PLUGIN)
    config = json.loads(Path(plane.kubeconfig_path).read_text())
    config["users"][0]["user"] = {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "command": sys.executable, "args": [str(plugin), str(token_file)]}}
    (tmp_path / "kc").write_text(json.dumps(config))
    cluster = Cluster.from_kubeconfig(str(tmp_path / "kc"))
    factory = InformerFactory(cluster, backoff=QUICK)
    informer = factory.informer("v1", "configmaps", "default")
    checker, recorder = watch_checked(informer, cluster, DEADLINE)

    plane.set_tokens([StaticToken("second-token", *admin)])
    token_file.write_text("second-token")
    plane.restart_apiserver()
    with httpx.Client(base_url=plane.server, verify=plane.ssl_context()) as api:
        api.post("/api/v1/namespaces/default/configmaps",
                 json={"metadata": {"name": "after-rotation"}}).raise_for_status()
    checker.wait_converged(CONVERGE)
    unauthorized = [e for e in errors(recorder) if "401" in str(e)]
    assert 1 <= len(unauthorized) <= 2  # one per request made with the old token, no loop
    assert "first-token" not in repr(cluster) and "second-token" not in repr(cluster)
    factory.close()
    cluster.close()


def test_objects_of_a_mebibyte_and_unicode_names_in_list_and_watch(rig: Rig) -> None:
    """ConfigMaps are capped at 1 MiB by the API server; the fake-server suite covers 1.5."""
    big = "\u2028\u0085\u00e9" * 140_000  # 7 bytes of UTF-8 each: 980,000 bytes
    rig.write("POST", body={"metadata": {"name": "big-listed",
                                         "annotations": {"note": "\u2028\u6f22"}},
                            "data": {"v": big}})
    _, checker, recorder = start(rig)
    rig.write("POST", body={"metadata": {"name": "big-watched"}, "data": {"v": big}})
    recorder.wait_count(EventType.ADDED, 2, timeout=DEADLINE)
    assert [len(e.object["data"]["v"]) for e in recorder.items if e.object] == [len(big)] * 2
    checker.wait_converged(CONVERGE)


FAULTS: dict[str, Callable[[Rig, random.Random], None]] = {
    "reset": lambda rig, rng: (rig.proxy.reset(), None)[1],
    "blackhole": lambda rig, rng: _dark_for(rig, INACTIVITY + 0.5),
    "trickle": lambda rig, rng: _for_a_while(rig, lambda on: rig.proxy.trickle(on, 0.0)),
    "latency": lambda rig, rng: _for_a_while(
        rig, lambda on: rig.proxy.latency(0.2 if on else 0.0)),
    "cut": lambda rig, rng: _for_a_while(
        rig, lambda on: rig.proxy.cut_after(rng.randint(100, 5000) if on else None)),
    "compaction": lambda rig, rng: (rig.plane.compact(), None)[1],
}


def _dark_for(rig: Rig, seconds: float) -> None:
    rig.proxy.blackhole(True)
    time.sleep(seconds)  # the fault lasts this long by design
    rig.proxy.blackhole(False)


def _for_a_while(rig: Rig, switch: Callable[[bool], None]) -> None:
    switch(True)
    time.sleep(1.0)  # the fault lasts this long by design
    switch(False)


def test_randomised_fault_schedule(rig: Rig, capsys: pytest.CaptureFixture[str]) -> None:
    """Faults mixed from a seed (printed: RX_INFORMER_FAULT_SEED=<seed> replays a run)."""
    seed = int(os.environ.get("RX_INFORMER_FAULT_SEED", random.randrange(1 << 30)))
    rounds = int(os.environ.get("RX_INFORMER_FAULT_ROUNDS", "6"))
    with capsys.disabled():
        print(f"\nfault schedule: RX_INFORMER_FAULT_SEED={seed}, {rounds} rounds")
    rng = random.Random(seed)
    informer, checker, _ = start(rig)
    alive: set[str] = set()
    counter = 0

    for round_number in range(rounds):
        fault = rng.choice(sorted(FAULTS))
        for _ in range(rng.randint(1, 6)):
            counter += 1
            choice = rng.random()
            if choice < 0.5 or not alive:
                name = f"cm-{counter}"
                rig.create(name)
                alive.add(name)
            elif choice < 0.8:
                rig.update(rng.choice(sorted(alive)), str(counter))
            else:
                victim = rng.choice(sorted(alive))
                rig.delete(victim)
                alive.discard(victim)
        FAULTS[fault](rig, rng)
        rig.proxy.heal()
        try:
            checker.wait_converged(CONVERGE)
        except AssertionError as failure:
            raise AssertionError(f"seed {seed}, round {round_number}, {fault}: {failure}") from None
    assert len(informer.store) == len(alive)


@pytest.fixture
def shimmed(control_plane: ControlPlane, tmp_path: Path) -> Iterator[tuple[HttpShim, Cluster]]:
    with HttpShim(control_plane) as shim:
        cluster = Cluster.from_kubeconfig(str(shim.write_kubeconfig(tmp_path / "kc")))
        yield shim, cluster
        cluster.close()


def _is_watch(method: str, path: str, query: dict[str, str]) -> bool:
    return query.get("watch") == "true"


def _is_list(method: str, path: str, query: dict[str, str]) -> bool:
    return method == "GET" and query.get("watch") != "true"


def test_429_with_retry_after_then_500_503_and_410_bursts(
    shimmed: tuple[HttpShim, Cluster], control_plane: ControlPlane
) -> None:
    """Case 17 and 18 against a real server, the statuses injected in front of it."""
    shim, cluster = shimmed
    namespace = f"s-{uuid.uuid4().hex[:10]}"
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    with httpx.Client(base_url=control_plane.server, verify=control_plane.ssl_context()) as api:
        api.post("/api/v1/namespaces", json={"metadata": {"name": namespace}}).raise_for_status()
        api.post(path, json={"metadata": {"name": "a"}}).raise_for_status()

        shim.fail_next(3, 429, headers={"Retry-After": "1"}, match=_is_list)
        # Watches of one second, so that the injected failures below meet new requests soon.
        factory = InformerFactory(cluster, backoff=QUICK,
                                  timeouts=Timeouts(watch_min=1, watch_max=1))
        informer = factory.informer("v1", "configmaps", namespace)
        checker = InvariantChecker(informer, cluster).start()
        recorder = Recorder()
        informer.events.subscribe(recorder)
        recorder.wait_count(EventType.SYNCED, timeout=DEADLINE)

        lists = [r for r in shim.requests if _is_list(r.method, r.path, r.query)]
        assert [r.status for r in lists] == [429, 429, 429, 200]
        assert all(b.time - a.time >= 0.95 for a, b in itertools.pairwise(lists))

        shim.fail_next(3, 500, match=_is_watch)
        shim.fail_next(3, 503, match=_is_watch)
        shim.fail_next(1, 410, match=_is_watch)
        api.post(path, json={"metadata": {"name": "b"}}).raise_for_status()
        recorder.wait_count(EventType.SYNCED, 2, timeout=DEADLINE)
        api.post(path, json={"metadata": {"name": "c"}}).raise_for_status()
        checker.wait_converged(CONVERGE)

    statuses = [r.status for r in shim.requests]
    assert (statuses.count(500), statuses.count(503), statuses.count(410)) == (3, 3, 1)
    assert len([e for e in recorder.items if e.type is EventType.ERROR]) >= 10
    factory.close()
