"""The replay server serves what clients rely on: pages, continue tokens, resumable watches."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import orjson
import pytest

from benchmarks import pods, replay_server

POD_COUNT = 25
EVENT_COUNT = 60


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    replay = replay_server.build_replay(POD_COUNT, EVENT_COUNT, seed=7)
    stats = replay_server.Stats()
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            sock, _ = listener.accept()
            connection = replay_server.Connection(sock, replay, stats, hold=False)
            threading.Thread(target=connection.serve, daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


def test_pods_are_deterministic_and_about_four_kilobytes() -> None:
    first = pods.pod_bytes(3, 11)

    assert first == pods.pod_bytes(3, 11)
    assert first != pods.pod_bytes(4, 11)
    assert 3_500 < len(first) < 5_500


def test_pages_follow_continue_tokens_to_every_pod(server_url: str) -> None:
    names: list[str] = []
    token = ""
    with httpx.Client(base_url=server_url) as client:
        while True:
            params = {"limit": "10", **({"continue": token} if token else {})}
            page = orjson.loads(client.get("/api/v1/pods", params=params).content)
            names += [item["metadata"]["name"] for item in page["items"]]
            token = page["metadata"].get("continue", "")
            if not token:
                break

    assert len(names) == len(set(names)) == POD_COUNT
    assert page["metadata"]["resourceVersion"] == str(POD_COUNT)


def test_unpaged_list_holds_every_pod(server_url: str) -> None:
    page = orjson.loads(httpx.get(f"{server_url}/api/v1/pods").content)

    assert len(page["items"]) == POD_COUNT
    assert "continue" not in page["metadata"]


def _watch_versions(server_url: str, resource_version: int) -> list[int]:
    params = {"watch": "true", "resourceVersion": str(resource_version)}
    response = httpx.get(f"{server_url}/api/v1/pods", params=params)
    lines = response.content.split(b"\n")
    events = [orjson.loads(line) for line in lines if line]
    assert {event["type"] for event in events} <= {"MODIFIED"}
    return [int(event["object"]["metadata"]["resourceVersion"]) for event in events]


@pytest.mark.parametrize("start", [POD_COUNT, POD_COUNT + 1, POD_COUNT + 37])
def test_watch_resumes_right_after_the_given_version(server_url: str, start: int) -> None:
    versions = _watch_versions(server_url, start)

    assert versions == list(range(start + 1, POD_COUNT + EVENT_COUNT + 1))


def test_streaming_list_is_refused_so_clients_fall_back(server_url: str) -> None:
    params = {"watch": "true", "sendInitialEvents": "true"}
    response = httpx.get(f"{server_url}/api/v1/pods", params=params)

    assert response.status_code == 422
    assert response.json()["kind"] == "Status"
