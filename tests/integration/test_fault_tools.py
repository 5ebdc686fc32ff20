"""The fault proxy and the HTTP shim, each fault checked with plain httpx against the apiserver."""

from __future__ import annotations

import contextlib
import json
import socket
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import kubernetes
import pytest

from rx_informer.testing.control_plane import ControlPlane
from rx_informer.testing.fault_proxy import FaultProxy
from rx_informer.testing.http_shim import HttpShim
from tests.support.kube import configmap, unique_name, watch_events

pytestmark = pytest.mark.integration

# Long enough for a loaded 2-core machine to answer, short enough that a hang fails quickly.
DEADLINE = 30.0

# How long a client waits before calling a connection silent. The apiserver delivers a watch
# event within milliseconds on loopback, so 2 s of nothing means the proxy held it back.
SILENCE = 2.0

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
CLUSTERROLES = "/apis/rbac.authorization.k8s.io/v1/clusterroles"
# Watched by no other test, so the apiserver's count of open watches on it is exact here.
PODTEMPLATES = "/api/v1/namespaces/default/podtemplates"

# Without compression a list of the bootstrap cluster roles is about 80 KB: large enough to
# be cut in the middle of its body.
UNCOMPRESSED = {"Accept-Encoding": "identity"}





@contextlib.contextmanager
def watch_configmap(client: httpx.Client, name: str) -> Iterator[Iterator[dict[str, Any]]]:
    """Events for one configmap name, from a watch the apiserver has already registered."""
    params = {"watch": "true", "timeoutSeconds": "60", "fieldSelector": f"metadata.name={name}"}
    with client.stream("GET", CONFIGMAPS, params=params) as response:
        # The apiserver sends the head only once the watch is in place.
        response.raise_for_status()
        yield watch_events(response)


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    """Poll a condition nothing can notify us about (the apiserver's metrics)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still waiting after {timeout:.0f} s for {what}")
        # Each poll fetches /metrics; ten a second is quick without loading the apiserver.
        time.sleep(0.1)


# -- the fault proxy ----------------------------------------------------------------------------


@pytest.fixture
def proxy(control_plane: ControlPlane) -> Iterator[FaultProxy]:
    target = urllib.parse.urlsplit(control_plane.server)
    assert target.hostname is not None and target.port is not None
    with FaultProxy(target.hostname, target.port) as running:
        yield running


@pytest.fixture
def api(control_plane: ControlPlane) -> Iterator[httpx.Client]:
    """A client straight to the apiserver, to make changes that watches then report."""
    with httpx.Client(base_url=control_plane.server, verify=control_plane.ssl_context(),
                      timeout=DEADLINE) as client:
        yield client


def via(proxy: FaultProxy, plane: ControlPlane, *, connect: float = DEADLINE,
        read: float = DEADLINE) -> httpx.Client:
    """A client through the proxy that verifies the apiserver's certificate as usual."""
    return httpx.Client(base_url=f"https://127.0.0.1:{proxy.port}", verify=plane.ssl_context(),
                        timeout=httpx.Timeout(DEADLINE, connect=connect, read=read))


def test_proxy_passes_tls_through_and_counts(proxy: FaultProxy,
                                             control_plane: ControlPlane) -> None:
    with via(proxy, control_plane) as client:
        response = client.get("/version").raise_for_status()
        assert proxy.connections_open == 1

    proxy.wait_for(lambda: proxy.connections_open == 0)
    assert response.json()["gitVersion"].startswith("v1.")
    assert proxy.connections_total == 1
    assert proxy.bytes_down > len(response.content)
    assert proxy.bytes_up > 0


def test_reset_aborts_open_connections_with_rst(proxy: FaultProxy,
                                                control_plane: ControlPlane) -> None:
    # A bare TCP connection shows the RST itself: Python's ssl module reports a reset as an
    # EOF without close_notify, so httpx sees only an unfinished body.
    bare = socket.create_connection(proxy.address, timeout=DEADLINE)

    with (bare, via(proxy, control_plane) as client,
          watch_configmap(client, unique_name("reset")) as events):
        proxy.wait_for(lambda: proxy.connections_open == 2)

        assert proxy.reset() == 2

        with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
            next(events)
        with pytest.raises(ConnectionResetError):
            bare.recv(1)

    proxy.wait_for(lambda: proxy.connections_open == 0)
    with via(proxy, control_plane) as client:
        assert client.get("/version").status_code == 200


def test_blackhole_silences_open_and_new_connections(proxy: FaultProxy,
                                                     control_plane: ControlPlane,
                                                     api: httpx.Client) -> None:
    name = unique_name("blackhole")

    with (via(proxy, control_plane, read=SILENCE) as client,
          watch_configmap(client, name) as events):
        proxy.blackhole()
        api.post(CONFIGMAPS, json=configmap(name)).raise_for_status()

        # The ADDED event was sent by the apiserver and swallowed on the way.
        with pytest.raises(httpx.ReadTimeout):
            next(events)

    # The client gave up and closed; the proxy then drops its side towards the apiserver too.
    proxy.wait_for(lambda: proxy.connections_open == 0)
    with (via(proxy, control_plane, connect=SILENCE) as client,
          pytest.raises(httpx.ConnectTimeout)):
        client.get("/version")

    proxy.blackhole(False)
    with via(proxy, control_plane) as client:
        assert client.get("/version").status_code == 200


def test_refuse_resets_new_connections_only(proxy: FaultProxy, control_plane: ControlPlane,
                                            api: httpx.Client) -> None:
    name = unique_name("refuse")

    with via(proxy, control_plane) as client, watch_configmap(client, name) as events:
        proxy.refuse()

        with via(proxy, control_plane) as other, pytest.raises(httpx.ConnectError):
            other.get("/version")

        api.post(CONFIGMAPS, json=configmap(name)).raise_for_status()
        event = next(events)

    assert event["type"] == "ADDED"
    assert event["object"]["metadata"]["name"] == name
    proxy.refuse(False)
    with via(proxy, control_plane) as client:
        assert client.get("/version").status_code == 200


def test_latency_delays_each_chunk_on_an_open_connection(proxy: FaultProxy,
                                                         control_plane: ControlPlane) -> None:
    delay = 0.3

    with via(proxy, control_plane) as client:
        client.get("/version").raise_for_status()
        proxy.latency(delay)

        started = time.monotonic()
        client.get("/version").raise_for_status()
        elapsed = time.monotonic() - started

    # The request went up in at least one chunk and the answer came down in at least one.
    assert elapsed >= 2 * delay
    assert proxy.connections_total == 1


def test_trickle_delivers_a_watch_event_intact_byte_by_byte(proxy: FaultProxy,
                                                            control_plane: ControlPlane,
                                                            api: httpx.Client) -> None:
    name = unique_name("trickle")
    delay = 0.002

    with via(proxy, control_plane) as client, watch_configmap(client, name) as events:
        proxy.trickle(delay=delay)
        before = proxy.bytes_down
        started = time.monotonic()

        api.post(CONFIGMAPS, json=configmap(name, colour="blue")).raise_for_status()
        event = next(events)

        elapsed = time.monotonic() - started
        trickled = proxy.bytes_down - before

    assert event["type"] == "ADDED"
    assert event["object"]["metadata"]["name"] == name
    assert event["object"]["data"] == {"colour": "blue"}
    # One pause after every byte but the last: forwarded whole, it would take milliseconds.
    assert trickled > 200
    assert elapsed >= (trickled - 1) * delay


def test_cut_after_resets_an_open_watch_in_the_middle_of_an_event(
        proxy: FaultProxy, control_plane: ControlPlane, api: httpx.Client) -> None:
    name = unique_name("cut-watch")
    cut = 40

    with via(proxy, control_plane) as client, watch_configmap(client, name) as events:
        before = proxy.bytes_down
        proxy.cut_after(cut)
        api.post(CONFIGMAPS, json=configmap(name)).raise_for_status()

        with pytest.raises(httpx.RemoteProtocolError):
            next(events)

    # The event's TLS record is hundreds of bytes: the client got part of it, then the reset.
    assert proxy.bytes_down - before == cut
    proxy.wait_for(lambda: proxy.connections_open == 0)


def test_cut_after_breaks_a_new_connection_in_the_middle_of_a_list(
        proxy: FaultProxy, control_plane: ControlPlane) -> None:
    cut = 32 * 1024
    with via(proxy, control_plane) as client:
        whole = len(client.get(CLUSTERROLES, headers=UNCOMPRESSED).raise_for_status().content)
    assert whole > 2 * cut
    # The closing handshake of that connection must not be counted below.
    proxy.wait_for(lambda: proxy.connections_open == 0)

    proxy.cut_after(cut)
    before = proxy.bytes_down
    with (via(proxy, control_plane) as client,
          pytest.raises(httpx.RemoteProtocolError, match="incomplete")):
        client.get(CLUSTERROLES, headers=UNCOMPRESSED)

    # A new connection counts from its first byte, the TLS handshake included.
    assert proxy.bytes_down - before == cut


# -- the HTTP shim ------------------------------------------------------------------------------


@pytest.fixture
def shim(control_plane: ControlPlane) -> Iterator[HttpShim]:
    with HttpShim(control_plane) as running:
        yield running


@pytest.fixture
def shimmed(shim: HttpShim) -> Iterator[httpx.Client]:
    """A client of the shim: plain HTTP, no credentials."""
    with httpx.Client(base_url=shim.url, timeout=DEADLINE, trust_env=False) as client:
        yield client


def test_shim_relays_requests_as_the_admin_and_records_them(
        shim: HttpShim, shimmed: httpx.Client, api: httpx.Client) -> None:
    name = unique_name("shimmed")

    created = shimmed.post(CONFIGMAPS, json=configmap(name, colour="green"))
    listed = shimmed.get(CONFIGMAPS, params={"limit": "500"})

    assert created.status_code == 201, created.text
    assert name in [item["metadata"]["name"] for item in listed.json()["items"]]
    stored = api.get(f"{CONFIGMAPS}/{name}").raise_for_status().json()
    assert stored["data"] == {"colour": "green"}

    records = shim.requests
    assert [(r.method, r.path, dict(r.query), r.status, r.injected) for r in records] == [
        ("POST", CONFIGMAPS, {}, 201, False),
        ("GET", CONFIGMAPS, {"limit": "500"}, 200, False),
    ]
    assert records[0].time <= records[1].time


def test_fail_next_fails_that_many_requests_then_relays(shim: HttpShim,
                                                        shimmed: httpx.Client) -> None:
    shim.fail_next(2, 503)

    answers = [shimmed.get(CONFIGMAPS) for _ in range(3)]

    assert [answer.status_code for answer in answers] == [503, 503, 200]
    for failed in answers[:2]:
        status = failed.json()
        assert (status["kind"], status["code"], status["reason"]) == (
            "Status", 503, "ServiceUnavailable")
    assert answers[2].json()["kind"] == "ConfigMapList"
    assert [record.injected for record in shim.requests] == [True, True, False]


def test_fail_next_applies_to_matching_requests_only(shim: HttpShim,
                                                     shimmed: httpx.Client) -> None:
    shim.fail_next(1, 429, headers={"Retry-After": "1"},
                   match=lambda method, path, query: query.get("watch") == "true")
    watch = {"watch": "true", "timeoutSeconds": "1"}

    listed = shimmed.get(CONFIGMAPS)
    refused = shimmed.get(CONFIGMAPS, params=watch)
    watched = shimmed.get(CONFIGMAPS, params=watch)

    assert listed.status_code == 200
    assert refused.status_code == 429
    assert refused.headers["Retry-After"] == "1"
    assert refused.json()["reason"] == "TooManyRequests"
    assert watched.status_code == 200
    assert [record.status for record in shim.requests] == [200, 429, 200]


def test_shim_streams_watch_events_as_they_happen(shimmed: httpx.Client,
                                                  api: httpx.Client) -> None:
    name = unique_name("streamed")

    # The watch lasts 60 s and the client's read timeout is 30 s: an event held back until
    # the response ends would fail the read.
    with watch_configmap(shimmed, name) as events:
        api.post(CONFIGMAPS, json=configmap(name)).raise_for_status()
        event = next(events)

    assert event["type"] == "ADDED"
    assert event["object"]["metadata"]["name"] == name


def test_closing_the_client_ends_the_watch_on_the_apiserver(
        shimmed: httpx.Client, control_plane: ControlPlane) -> None:
    def open_watches() -> float:
        return control_plane.apiserver_metric("apiserver_longrunning_requests",
                                              verb="WATCH", resource="podtemplates")

    before = open_watches()

    params = {"watch": "true", "timeoutSeconds": "600"}
    with shimmed.stream("GET", PODTEMPLATES, params=params) as response:
        response.raise_for_status()
        wait_until(lambda: open_watches() == before + 1, "the watch to open on the apiserver")

    wait_until(lambda: open_watches() == before, "the watch to end on the apiserver")


def test_kubeconfig_points_at_the_shim_without_credentials(shim: HttpShim,
                                                           tmp_path: Path) -> None:
    path = shim.write_kubeconfig(tmp_path / "kubeconfig")

    config = json.loads(path.read_text())
    # The official client's kubeconfig reader, as any user of the shim would rely on.
    client = kubernetes.config.new_client_from_config(config_file=str(path))

    assert config["users"][0]["user"] == {}
    assert client.configuration.host == shim.url
    with client:
        listed = kubernetes.client.CoreV1Api(client).list_namespaced_config_map("default")
    assert listed.kind == "ConfigMapList"
    assert [record.status for record in shim.requests] == [200]
