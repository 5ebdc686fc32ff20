"""Credentials: refreshed after a 401, never written to logs, reprs or errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rx_informer import Cluster, EventType, InformerFactory
from tests.conftest import FAST_BACKOFF, Recorder
from tests.support.fake_api import FakeApiServer
from tests.support.kubeconfigs import TOKEN_FILE_PLUGIN, exec_user, write_kubeconfig


def exec_kubeconfig(tmp_path: Path, server: FakeApiServer, token: str) -> Path:
    token_file = tmp_path / "token"
    token_file.write_text(token)
    plugin = tmp_path / "plugin.py"
    plugin.write_text(TOKEN_FILE_PLUGIN)
    return Path(write_kubeconfig(tmp_path / "kubeconfig", f"    server: {server.url}\n",
                                 exec_user(plugin, token_file)))


def test_rotated_token_is_fetched_after_a_401_without_a_loop(
    server: FakeApiServer, tmp_path: Path, recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """Case 19: the exec plugin hands out a new token; the old one is now rejected."""
    server.accepted_tokens = {"old-secret-1"}
    cluster = Cluster.from_kubeconfig(str(exec_kubeconfig(tmp_path, server, "old-secret-1")))
    factory = InformerFactory(cluster, backoff=FAST_BACKOFF)
    factory.informer("v1", "pods").events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED)
    server.wait_for(lambda: server.open_connections == 1 and len(server.requests) == 2)

    (tmp_path / "token").write_text("new-secret-2")
    server.accepted_tokens = {"new-secret-2"}
    server.end_watches()
    server.wait_for(lambda: server.requests[-1].headers.get("authorization", "").endswith("2"))
    server.wait_for(lambda: len(server.requests_of("watch")) == 3)

    tokens = [r.headers["authorization"] for r in server.requests]
    assert tokens == ["Bearer old-secret-1"] * 3 + ["Bearer new-secret-2"]
    errors = [str(e.error) for e in recorder.items if e.type is EventType.ERROR]
    assert len([text for text in errors if "401" in text]) == 1
    assert len(server.requests_of("list")) == 1
    for secret in ("old-secret-1", "new-secret-2"):
        assert secret not in caplog.text
        assert secret not in repr(cluster)
        assert all(secret not in repr(e) for e in recorder.items)
    factory.close()
    cluster.close()


def test_static_token_never_appears_in_repr_or_logs(
    server: FakeApiServer, cluster: Cluster, factory: InformerFactory, recorder: Recorder,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server.accepted_tokens = {"something-else"}
    with caplog.at_level(logging.DEBUG):
        factory.informer("v1", "pods").events.subscribe(recorder)
        recorder.wait_count(EventType.ERROR, 2)
    assert "secret-token-123" not in caplog.text
    assert "secret-token-123" not in repr(cluster)
    assert "401" in str(recorder.items[0].error)
