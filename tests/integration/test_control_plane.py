"""The local control plane itself, checked over plain httpx with the kubeconfig's credentials."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from rx_informer.testing.binaries import Binaries
from rx_informer.testing.control_plane import ControlPlane, ProcessStartupError, StaticToken
from tests.support.kube import configmap, unique_name, watch_events

pytestmark = pytest.mark.integration

# Long enough for a loaded 2-core machine to answer, short enough that a hang fails quickly.
DEADLINE = 30.0

# The shortest request timeout that still leaves a watch time to be observed while open.
MIN_REQUEST_TIMEOUT = 2

CONFIGMAPS = "/api/v1/namespaces/default/configmaps"


def client_from_kubeconfig(path: Path, tmp_path: Path) -> httpx.Client:
    """An httpx client that verifies the server with the kubeconfig's CA and presents its
    client certificate, the way any Kubernetes client reads a kubeconfig."""
    config = json.loads(path.read_text())
    cluster = config["clusters"][0]["cluster"]
    user = config["users"][0]["user"]

    certificate = tmp_path / "client.crt"
    key = tmp_path / "client.key"
    certificate.write_bytes(base64.b64decode(user["client-certificate-data"]))
    key.write_bytes(base64.b64decode(user["client-key-data"]))

    context = ssl.create_default_context(
        cadata=base64.b64decode(cluster["certificate-authority-data"]).decode())
    context.load_cert_chain(certificate, key)
    return httpx.Client(base_url=cluster["server"], verify=context, timeout=DEADLINE)


def token_client(plane: ControlPlane) -> httpx.Client:
    """A client that verifies the server but presents no certificate: tokens go in headers."""
    context = ssl.create_default_context(cafile=plane.ca_path)
    return httpx.Client(base_url=plane.server, verify=context, timeout=DEADLINE)


@pytest.fixture
def api(control_plane: ControlPlane, tmp_path: Path) -> Iterator[httpx.Client]:
    with client_from_kubeconfig(control_plane.kubeconfig_path, tmp_path) as client:
        yield client


@pytest.fixture(scope="module")
def tuned_plane(control_plane_binaries: Binaries) -> Iterator[ControlPlane]:
    """A second control plane whose configmap watches come from etcd and end quickly."""
    plane = ControlPlane(binaries=control_plane_binaries,
                         watch_cache_disabled_for=["configmaps"],
                         min_request_timeout=MIN_REQUEST_TIMEOUT)
    with plane:
        yield plane


@pytest.fixture
def tuned_api(tuned_plane: ControlPlane, tmp_path: Path) -> Iterator[httpx.Client]:
    with client_from_kubeconfig(tuned_plane.kubeconfig_path, tmp_path) as client:
        yield client





def wait_for(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still waiting after {timeout:.0f} s for {what}")
        time.sleep(0.1)


def test_version_reports_the_pinned_release(control_plane: ControlPlane,
                                            api: httpx.Client) -> None:
    assert control_plane.binaries is not None
    release = control_plane.binaries.kubernetes_release

    version = api.get("/version").raise_for_status().json()

    assert version["gitVersion"] == release
    assert f"v{version['major']}.{version['minor']}" == release.rsplit(".", 1)[0]


def test_configmap_can_be_created_listed_and_watched(api: httpx.Client) -> None:
    name = unique_name("listed")
    before = api.get(CONFIGMAPS).raise_for_status().json()["metadata"]["resourceVersion"]

    created = api.post(CONFIGMAPS, json=configmap(name, colour="blue")).raise_for_status()
    listed = api.get(CONFIGMAPS).raise_for_status().json()

    assert created.status_code == 201
    assert name in [item["metadata"]["name"] for item in listed["items"]]

    params = {"watch": "true", "resourceVersion": before, "timeoutSeconds": "10",
              "fieldSelector": f"metadata.name={name}"}
    with api.stream("GET", CONFIGMAPS, params=params) as response:
        response.raise_for_status()
        event = next(watch_events(response))
    assert event["type"] == "ADDED"
    assert event["object"]["metadata"]["name"] == name
    assert event["object"]["data"] == {"colour": "blue"}


def test_admin_token_is_accepted_and_a_wrong_one_is_not(control_plane: ControlPlane) -> None:
    with token_client(control_plane) as client:
        good = client.get(CONFIGMAPS, headers={"Authorization":
                                               f"Bearer {control_plane.admin_token}"})
        bad = client.get(CONFIGMAPS, headers={"Authorization": "Bearer not-a-token"})

    assert good.status_code == 200
    assert bad.status_code == 401


def test_pod_is_stored_without_scheduler_or_service_account(api: httpx.Client) -> None:
    name = unique_name("pod")
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
           "spec": {"containers": [{"name": "main", "image": "busybox"}]}}

    created = api.post("/api/v1/namespaces/default/pods", json=pod)
    fetched = api.get(f"/api/v1/namespaces/default/pods/{name}").raise_for_status().json()

    assert created.status_code == 201, created.text
    assert fetched["spec"]["containers"][0]["image"] == "busybox"
    assert "nodeName" not in fetched["spec"]


def test_watch_from_compacted_version_is_gone(tuned_plane: ControlPlane,
                                              tuned_api: httpx.Client) -> None:
    old = tuned_api.post(CONFIGMAPS, json=configmap(unique_name("old"))).raise_for_status()
    old_version = old.json()["metadata"]["resourceVersion"]
    # A watch from X starts at X + 1, and compaction at C keeps C itself: two later writes
    # put X + 1 strictly before C.
    for _ in range(2):
        tuned_api.post(CONFIGMAPS, json=configmap(unique_name("new"))).raise_for_status()

    compacted_at = tuned_plane.compact()

    assert compacted_at > int(old_version) + 1
    params = {"watch": "true", "resourceVersion": old_version, "timeoutSeconds": "10"}
    with tuned_api.stream("GET", CONFIGMAPS, params=params) as response:
        if response.status_code == 410:
            return
        response.raise_for_status()
        event = next(watch_events(response))
    assert event["type"] == "ERROR"
    assert event["object"]["code"] == 410


def test_watch_without_timeout_ends_after_min_request_timeout(tuned_api: httpx.Client) -> None:
    started = time.monotonic()

    # The apiserver picks a duration between the minimum and twice it.
    with tuned_api.stream("GET", CONFIGMAPS, params={"watch": "true"}) as response:
        response.raise_for_status()
        for _ in watch_events(response):
            pass

    elapsed = time.monotonic() - started
    assert MIN_REQUEST_TIMEOUT * 0.9 <= elapsed <= MIN_REQUEST_TIMEOUT * 2 + 5


def test_restart_apiserver_keeps_port_and_data(control_plane: ControlPlane,
                                               api: httpx.Client) -> None:
    name = unique_name("kept")
    server = control_plane.server
    uid = api.post(CONFIGMAPS, json=configmap(name)).raise_for_status().json()["metadata"]["uid"]
    old_pid = control_plane.process_ids["kube-apiserver"]

    control_plane.restart_apiserver()

    assert control_plane.server == server
    assert control_plane.process_ids["kube-apiserver"] != old_pid
    # The same client, so the same URL: the port did not change.
    fetched = api.get(f"{CONFIGMAPS}/{name}").raise_for_status().json()
    assert fetched["metadata"]["uid"] == uid


def test_tokens_rotate_across_an_apiserver_restart(control_plane: ControlPlane) -> None:
    first = StaticToken(token=uuid.uuid4().hex, user="alice", groups=("system:masters",))
    second = StaticToken(token=uuid.uuid4().hex, user="bob", groups=("system:masters",))

    def status_with(token: StaticToken) -> int:
        with token_client(control_plane) as client:
            headers = {"Authorization": f"Bearer {token.token}"}
            return client.get(CONFIGMAPS, headers=headers).status_code

    control_plane.set_tokens([first])
    control_plane.restart_apiserver()
    assert (status_with(first), status_with(second)) == (200, 401)

    control_plane.set_tokens([second])
    control_plane.restart_apiserver()
    assert (status_with(first), status_with(second)) == (401, 200)

    control_plane.set_tokens([])
    control_plane.restart_apiserver()


def test_longrunning_requests_follow_an_open_watch(control_plane: ControlPlane,
                                                   api: httpx.Client) -> None:
    def open_watches() -> float:
        return control_plane.apiserver_metric("apiserver_longrunning_requests",
                                              verb="WATCH", resource="configmaps")

    before = open_watches()

    params = {"watch": "true", "timeoutSeconds": "60"}
    with api.stream("GET", CONFIGMAPS, params=params) as response:
        response.raise_for_status()
        wait_for(lambda: open_watches() == before + 1, "the watch to be counted")

    wait_for(lambda: open_watches() == before, "the closed watch to be uncounted")


def test_startup_failure_reports_the_log_and_leaves_nothing(
        control_plane_binaries: Binaries, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    plane = ControlPlane(binaries=control_plane_binaries,
                         extra_apiserver_args=["--no-such-flag"])

    with pytest.raises(ProcessStartupError, match="no-such-flag") as raised:
        plane.start()

    assert raised.value.name == "kube-apiserver"
    assert list(tmp_path.iterdir()) == []
    # etcd was started first; its data dir was under tmp_path, so pgrep would still find it.
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, check=False)
    assert leftover.stdout == b""


def test_stop_ends_both_processes_and_removes_the_directory(
        control_plane_binaries: Binaries) -> None:
    plane = ControlPlane(binaries=control_plane_binaries)
    plane.start()
    pids = plane.process_ids
    directory = plane.directory

    plane.stop()

    assert set(pids) == {"etcd", "kube-apiserver"}
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not directory.exists()
