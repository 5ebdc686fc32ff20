"""Connecting as a kubeconfig says: TLS material, verification, SNI name, proxy, errors."""

from __future__ import annotations

import base64
import logging
import ssl
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from rx_informer import Cluster, ConfigError, EventType, InformerFactory
from tests.conftest import FAST_BACKOFF, Recorder
from tests.support.certs import Pki, make_pki
from tests.support.fake_api import FakeApiServer
from tests.support.kubeconfigs import write_kubeconfig


def tls_server(pki: Pki, require_client_cert: bool) -> FakeApiServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca)
    return FakeApiServer(tls=context).start()


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


def sync_once(cluster: Cluster) -> Recorder:
    recorder = Recorder()
    factory = InformerFactory(cluster, backoff=FAST_BACKOFF)
    factory.informer("v1", "pods").events.subscribe(recorder)
    try:
        recorder.wait(lambda items: len(items) >= 1)
    finally:
        factory.close()
    return recorder


def b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


@pytest.fixture
def mtls(pki: Pki) -> Iterator[FakeApiServer]:
    server = tls_server(pki, require_client_cert=True)
    yield server
    server.stop()


def test_client_certificate_from_files_with_a_ca_file(
    mtls: FakeApiServer, pki: Pki, tmp_path: Path
) -> None:
    config = write_kubeconfig(
        tmp_path / "kc",
        f"    server: {mtls.url}\n    certificate-authority: {pki.ca}\n",
        f"    client-certificate: {pki.client_cert}\n    client-key: {pki.client_key}\n",
    )
    cluster = Cluster.from_kubeconfig(config)
    assert sync_once(cluster).items[0].type is EventType.SYNCED
    cluster.close()


def test_inline_data_goes_to_private_files_removed_on_close(
    mtls: FakeApiServer, pki: Pki, tmp_path: Path
) -> None:
    config = write_kubeconfig(
        tmp_path / "kc",
        f"    server: {mtls.url}\n    certificate-authority-data: {b64(pki.ca)}\n",
        f"    client-certificate-data: {b64(pki.client_cert)}\n"
        f"    client-key-data: {b64(pki.client_key)}\n",
    )
    cluster = Cluster.from_kubeconfig(config)
    private = Path(cluster._temp_dir)
    assert stat.S_IMODE(private.stat().st_mode) == 0o700
    assert any(private.iterdir())
    assert sync_once(cluster).items[0].type is EventType.SYNCED
    cluster.close()
    assert not private.exists()


def test_wrong_ca_fails_with_a_clear_error(pki: Pki, tmp_path: Path) -> None:
    server = tls_server(pki, require_client_cert=False)
    (tmp_path / "other").mkdir()
    other = make_pki(tmp_path / "other")
    config = write_kubeconfig(
        tmp_path / "kc", f"    server: {server.url}\n    certificate-authority: {other.ca}\n"
    )
    cluster = Cluster.from_kubeconfig(config)
    first = sync_once(cluster).items[0]
    assert first.type is EventType.ERROR
    assert "certificate" in str(first.error).lower()
    assert "certificate-authority" in str(first.error)
    server.stop()
    cluster.close()


def test_insecure_skip_tls_verify_only_when_the_kubeconfig_says_so(
    pki: Pki, tmp_path: Path
) -> None:
    server = tls_server(pki, require_client_cert=False)
    config = write_kubeconfig(tmp_path / "kc", f"    server: {server.url}\n"
                                         "    insecure-skip-tls-verify: true\n")
    cluster = Cluster.from_kubeconfig(config)
    assert sync_once(cluster).items[0].type is EventType.SYNCED
    cluster.close()

    verified = Cluster.from_kubeconfig(
        write_kubeconfig(tmp_path / "kc2", f"    server: {server.url}\n")
    )
    assert sync_once(verified).items[0].type is EventType.ERROR
    verified.close()
    server.stop()


def test_tls_server_name_is_used_for_sni_and_verification(tmp_path: Path) -> None:
    pki = make_pki(tmp_path, server_name="api.internal")
    server = tls_server(pki, require_client_cert=False)
    cluster_block = f"    server: {server.url}\n    certificate-authority: {pki.ca}\n"
    named = Cluster.from_kubeconfig(write_kubeconfig(
        tmp_path / "kc", cluster_block + "    tls-server-name: api.internal\n"))
    assert sync_once(named).items[0].type is EventType.SYNCED
    unnamed = Cluster.from_kubeconfig(write_kubeconfig(tmp_path / "kc2", cluster_block))
    assert sync_once(unnamed).items[0].type is EventType.ERROR
    named.close()
    unnamed.close()
    server.stop()


def test_proxy_url_routes_requests_through_the_proxy(
    server: FakeApiServer, tmp_path: Path
) -> None:
    config = write_kubeconfig(tmp_path / "kc", "    server: http://kube.invalid:6443\n"
                                         f"    proxy-url: {server.url}\n")
    cluster = Cluster.from_kubeconfig(config)
    assert sync_once(cluster).items[0].type is EventType.SYNCED
    assert server.requests[0].headers["host"] == "kube.invalid:6443"
    cluster.close()


def test_missing_kubeconfig_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist: check the path"):
        Cluster.from_kubeconfig(str(tmp_path / "nope"))


@pytest.mark.parametrize(
    ("text", "context", "message"),
    [
        ("apiVersion: v1\nkind: Config\nclusters: []\n", None, "current-context"),
        ("{{{ not yaml", None, "kubeconfig"),
    ],
)
def test_broken_kubeconfig_is_a_config_error(
    tmp_path: Path, text: str, context: str | None, message: str
) -> None:
    path = tmp_path / "kc"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        Cluster.from_kubeconfig(str(path), context)


def test_unknown_context_is_named(server: FakeApiServer, tmp_path: Path) -> None:
    path = server.kubeconfig(str(tmp_path / "kc"))
    with pytest.raises(ConfigError, match="nowhere"):
        Cluster.from_kubeconfig(path, context="nowhere")


def test_secrets_never_reach_logs_reprs_or_errors(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Token and client key, on the success path and on a TLS failure, at DEBUG level."""
    server = tls_server(pki, require_client_cert=True)
    (tmp_path / "other").mkdir()
    wrong_ca = make_pki(tmp_path / "other").ca
    token = "tok-9f8e7d6c5b4a"
    user = (f"    token: {token}\n"
            f"    client-certificate-data: {b64(pki.client_cert)}\n"
            f"    client-key-data: {b64(pki.client_key)}\n")
    key_lines = [line for line in pki.client_key.read_text().splitlines()
                 if line and not line.startswith("-----")]
    secrets = [token, b64(pki.client_key), *key_lines]

    with caplog.at_level(logging.DEBUG):
        for ca in (pki.ca, wrong_ca):
            config = write_kubeconfig(tmp_path / "kc", f"    server: {server.url}\n"
                                f"    certificate-authority-data: {b64(ca)}\n", user)
            cluster = Cluster.from_kubeconfig(config)
            events = sync_once(cluster).items
            texts = [caplog.text, repr(cluster), *(repr(e) for e in events),
                     *(str(e.error) for e in events if e.error)]
            for secret in secrets:
                assert all(secret not in text for text in texts)
            cluster.close()
    assert "certificate" in caplog.text  # the failure was logged, just not the secrets
    server.stop()


def test_in_cluster_service_account_with_a_rotated_token(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token file is read again when the server stops accepting the old token."""
    server = tls_server(pki, require_client_cert=False)
    host, _, port = server.url.removeprefix("https://").rpartition(":")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    token = tmp_path / "token"
    token.write_text("sa-token-1")
    server.accepted_tokens = {"sa-token-1"}
    cluster = Cluster.in_cluster(token_path=str(token), ca_path=str(pki.ca))
    assert "in-cluster" in repr(cluster)

    recorder = Recorder()
    factory = InformerFactory(cluster, backoff=FAST_BACKOFF)
    factory.informer("v1", "pods").events.subscribe(recorder)
    recorder.wait_count(EventType.SYNCED)
    token.write_text("sa-token-2")
    server.accepted_tokens = {"sa-token-2"}
    server.end_watches()
    server.wait_for(
        lambda: server.requests[-1].headers["authorization"].lower() == "bearer sa-token-2"
    )
    factory.close()
    cluster.close()
    server.stop()


def test_in_cluster_outside_a_pod_is_a_clear_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigError, match="in-cluster service account: Service host/port"):
        Cluster.in_cluster()


def test_https_proxy_from_the_environment_unless_no_proxy(
    server: FakeApiServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a proxy-url in the kubeconfig, HTTP(S)_PROXY and NO_PROXY apply."""
    config = write_kubeconfig(tmp_path / "kc", "    server: http://kube.invalid:6443\n")
    monkeypatch.setenv("HTTP_PROXY", server.url)
    cluster = Cluster.from_kubeconfig(config)
    assert sync_once(cluster).items[0].type is EventType.SYNCED
    assert server.requests[0].headers["host"] == "kube.invalid:6443"
    cluster.close()

    monkeypatch.setenv("NO_PROXY", "kube.invalid")
    direct = Cluster.from_kubeconfig(config)
    assert sync_once(direct).items[0].type is EventType.ERROR  # no such host: not proxied
    direct.close()
