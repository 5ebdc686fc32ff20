"""The HTTP boundary, with pytest-httpx: requests sent, and responses turned into inputs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from pytest_httpx import HTTPXMock

from rx_informer import Cluster, ResourceRef
from rx_informer.errors import ConnectError, GoneError, MalformedError, StatusError
from rx_informer.protocol.machine import EventReceived, PageReceived, RequestFailed, StreamEnded
from rx_informer.protocol.transport import Timeouts, Transport
from tests.support.fake_api import pod

SERVER = "http://k8s.test"
REF = ResourceRef("apps/v1", "deployments", "prod", label_selector="app=web")
PATH = f"{SERVER}/apis/apps/v1/namespaces/prod/deployments"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    config = tmp_path / "kc"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters:\n- name: k\n  cluster:\n    server: {SERVER}\n"
        "contexts:\n- name: c\n  context:\n    cluster: k\n    user: u\n"
        "users:\n- name: u\n  user:\n    token: tok\n"
    )
    made = Cluster.from_kubeconfig(str(config))
    yield made
    made.close()


@pytest.fixture
async def client(cluster: Cluster) -> AsyncIterator[httpx.AsyncClient]:
    async with cluster.client(httpx.Timeout(5)) as made:
        yield made


def status(code: int, reason: str = "") -> dict[str, object]:
    return {"kind": "Status", "code": code, "reason": reason, "message": "m"}


async def test_list_page_request_and_decoding(
    httpx_mock: HTTPXMock, cluster: Cluster, client: httpx.AsyncClient
) -> None:
    httpx_mock.add_response(
        url=f"{PATH}?labelSelector=app%3Dweb&limit=2&continue=tok1",
        json={"metadata": {"resourceVersion": "9", "continue": "tok2"},
              "items": [pod("a", 3), pod("b", 4)]},
    )
    page = await Transport(cluster, REF, Timeouts()).list_page(client, 2, "tok1")
    assert isinstance(page, PageReceived)
    assert [w.key for w in page.items] == ["default/a", "default/b"]
    assert (page.resource_version, page.continue_token) == ("9", "tok2")
    request = httpx_mock.get_request()
    assert request is not None
    assert request.headers["authorization"] == "Bearer tok"
    assert request.headers["accept"] == "application/json"


@pytest.mark.parametrize(
    ("code", "body", "headers", "kind", "text"),
    [
        (403, status(403, "Forbidden"), {}, StatusError, "list deployments.apps in prod"),
        (429, status(429), {"Retry-After": "3"}, StatusError, "429"),
        (410, status(410, "Expired"), {}, GoneError, "Expired"),
        (503, "<html>busy</html>", {}, StatusError, "503"),
    ],
)
async def test_list_error_responses(  # noqa: PLR0917 - one per parametrised field
    httpx_mock: HTTPXMock, cluster: Cluster, client: httpx.AsyncClient, code: int,
    body: object, headers: dict[str, str], kind: type[Exception], text: str,
) -> None:
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    httpx_mock.add_response(status_code=code, content=content, headers=headers)
    failed = await Transport(cluster, REF, Timeouts()).list_page(client, 500, None)
    assert isinstance(failed, RequestFailed)
    assert type(failed.error) is kind and text in str(failed.error)
    if headers:
        assert failed.error.retry_after == 3.0  # type: ignore[attr-defined]


async def test_list_that_is_not_a_list_is_malformed(
    httpx_mock: HTTPXMock, cluster: Cluster, client: httpx.AsyncClient
) -> None:
    httpx_mock.add_response(content=b'{"items": "nope"}')
    failed = await Transport(cluster, REF, Timeouts()).list_page(client, 500, None)
    assert isinstance(failed, RequestFailed) and isinstance(failed.error, MalformedError)


async def test_watch_request_and_stream(
    httpx_mock: HTTPXMock, cluster: Cluster, client: httpx.AsyncClient
) -> None:
    tricky = pod("a", 11, data={"v": "line\u2028sep\u0085next"})
    body = (json.dumps({"type": "ADDED", "object": tricky}, ensure_ascii=False) + "\n"
            + json.dumps({"type": "ERROR", "object": status(410, "Expired")}) + "\n").encode()
    httpx_mock.add_response(
        url=f"{PATH}?labelSelector=app%3Dweb&watch=true&resourceVersion=10"
            "&allowWatchBookmarks=true&timeoutSeconds=321",
        stream=httpx.ByteStream(body),
    )
    inputs = [i async for i in Transport(cluster, REF, Timeouts()).watch(client, "10", 321)]
    added, error, ended = inputs
    assert isinstance(added, EventReceived) and added.object is not None
    assert json.loads(added.object.raw) == tricky
    assert isinstance(error, EventReceived) and error.status == status(410, "Expired")
    assert isinstance(ended, StreamEnded) and ended.events == 2


async def test_watch_ending_inside_a_line_is_a_broken_connection(
    httpx_mock: HTTPXMock, cluster: Cluster, client: httpx.AsyncClient
) -> None:
    httpx_mock.add_response(stream=httpx.ByteStream(b'{"type":"ADDED","obj'))
    inputs = [i async for i in Transport(cluster, REF, Timeouts()).watch(client, "10", 300)]
    assert len(inputs) == 1
    assert isinstance(inputs[0], RequestFailed) and isinstance(inputs[0].error, ConnectError)


async def test_refused_connection_is_a_connect_error(
    httpx_mock: HTTPXMock, cluster: Cluster, client: httpx.AsyncClient
) -> None:
    httpx_mock.add_exception(httpx.ConnectError("Connection refused"))
    failed = await Transport(cluster, REF, Timeouts()).list_page(client, 500, None)
    assert isinstance(failed, RequestFailed) and isinstance(failed.error, ConnectError)
    assert "Connection refused" in str(failed.error)
