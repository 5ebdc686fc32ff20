"""How to reach one cluster: server URL, TLS and credentials, from kubeconfig or in-cluster.

Parsing kubeconfig, running exec credential plugins and re-reading service-account tokens is
the job of the ``kubernetes`` package; this module turns its ``Configuration`` (never the
global default one) into what httpx needs, and refreshes it when the server says 401.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import ssl
import tempfile
import threading
from collections.abc import Callable
from typing import Any

import httpx
import yaml
from kubernetes.client import Configuration
from kubernetes.config import incluster_config, kube_config
from kubernetes.config.config_exception import ConfigException

from rx_informer.errors import ConfigError

log = logging.getLogger(__name__)

Loader = Callable[[Configuration, str], None]

# Where the kubelet mounts a pod's service account.
SERVICE_ACCOUNT_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"
SERVICE_ACCOUNT_CA = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"


class Cluster:
    """A connection profile: where the API server is and how to authenticate to it.

    Thread-safe. Credentials are kept out of ``repr``, logs and error messages. Inline key data
    from a kubeconfig goes to files in a private directory (mode 0700) removed by ``close()``.
    """

    def __init__(self, load: Loader, description: str) -> None:
        self._load = load
        self._description = description
        self._lock = threading.Lock()
        self._temp_dir = tempfile.mkdtemp(prefix="rx-informer-")
        self._config = self._fresh_config()
        self._ssl_context = _ssl_context(self._config)

    @classmethod
    def from_kubeconfig(cls, path: str | None = None, context: str | None = None) -> Cluster:
        """Load ``path`` (default: ``$KUBECONFIG`` or ``~/.kube/config``) at ``context``."""
        source = path or os.environ.get("KUBECONFIG") or "~/.kube/config"
        source = os.path.expanduser(source)
        if ":" not in source and not os.path.exists(source):
            hint = (
                "check the path" if path else
                "pass the path of a kubeconfig, set KUBECONFIG, or inside a pod use "
                "Cluster.in_cluster()"
            )
            raise ConfigError(f"kubeconfig {source} does not exist: {hint}")

        def load(config: Configuration, temp_dir: str) -> None:
            kube_config.load_kube_config(  # type: ignore[no-untyped-call]
                config_file=source,
                context=context,
                client_configuration=config,
                persist_config=False,
                temp_file_path=temp_dir,
            )

        where = f"kubeconfig {source}" + (f" context {context}" if context else "")
        return cls(load, where)

    @classmethod
    def in_cluster(
        cls,
        token_path: str = SERVICE_ACCOUNT_TOKEN,
        ca_path: str = SERVICE_ACCOUNT_CA,
    ) -> Cluster:
        """Use the pod's service account (``KUBERNETES_SERVICE_HOST``/``_PORT`` and the files
        the kubelet mounts). The token file is re-read every minute, as the kubelet rotates
        it, and at once after a 401."""

        def load(config: Configuration, temp_dir: str) -> None:
            make_loader: Any = incluster_config.InClusterConfigLoader
            loader = make_loader(
                token_filename=token_path, cert_filename=ca_path, try_refresh_token=True
            )
            loader.load_and_set(config)

        return cls(load, "in-cluster service account")

    @property
    def server(self) -> str:
        """The API server's base URL, without a trailing slash."""
        return str(self._config.host).rstrip("/")

    def __repr__(self) -> str:
        server = re.sub(r"//[^/@]*@", "//", self.server)  # a password may sit in the URL
        return f"Cluster(server={server!r}, source={self._description!r})"

    def auth_headers(self) -> dict[str, str]:
        """The Authorization header for the next request, refreshing expired credentials."""
        with self._lock:
            config = self._config
            hook = config.refresh_api_key_hook
            if hook is not None:
                hook(config)
            settings = config.auth_settings().get("BearerToken")
        if settings and settings.get("value"):
            return {"Authorization": str(settings["value"])}
        return {}

    @property
    def credentials_may_block(self) -> bool:
        """Whether ``auth_headers`` may run something slow (an exec plugin, a file read)."""
        return self._config.refresh_api_key_hook is not None

    def refresh_credentials(self) -> None:
        """Load the configuration again: runs exec plugins anew, re-reads token files.

        Called after a 401, when the cached credential is no longer accepted.
        """
        config = self._fresh_config()
        with self._lock:
            self._config = config
            self._ssl_context = _ssl_context(config)
        log.debug("credentials refreshed from %s", self._description)

    def client(self, timeout: httpx.Timeout) -> httpx.AsyncClient:
        """A new HTTP/1.1 client for one informer run (HTTP/2 can't abort a single stream)."""
        with self._lock:
            config, context = self._config, self._ssl_context
        proxy = _kubeconfig_proxy(config)
        return httpx.AsyncClient(
            base_url=self.server,
            verify=context,
            proxy=proxy,
            trust_env=proxy is None,
            timeout=timeout,
            http2=False,
            follow_redirects=False,
        )

    @property
    def tls_server_name(self) -> str | None:
        """The name to verify the server's certificate against, when not the URL's host."""
        name = getattr(self._config, "tls_server_name", None)
        return str(name) if name else None

    def close(self) -> None:
        """Remove the private files that hold inline certificates and keys."""
        shutil.rmtree(self._temp_dir, ignore_errors=True)

    def _fresh_config(self) -> Configuration:
        config = Configuration()
        try:
            self._load(config, self._temp_dir)
        except ConfigException as exc:
            raise ConfigError(f"{self._description}: {exc}") from exc
        except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{self._description} cannot be used: {_describe(exc)}") from exc
        if not config.host:
            raise ConfigError(f"{self._description} names no server")
        return config


def _kubeconfig_proxy(config: Configuration) -> str | None:
    """The kubeconfig's proxy-url, if it has one.

    Newer ``kubernetes`` releases also fill ``Configuration.proxy`` from HTTP(S)_PROXY, but
    without applying NO_PROXY; a proxy that came from the environment is left to httpx,
    which applies both.
    """
    if not config.proxy or getattr(config, "_proxy_from_env", False):
        return None
    return str(config.proxy)


def _ssl_context(config: Configuration) -> ssl.SSLContext | bool:
    """Build the TLS context by hand: httpx drops the client certificate if given a CA path."""
    if not str(config.host).startswith("https"):
        return False

    context = ssl.create_default_context()
    try:
        if config.ssl_ca_cert:
            context.load_verify_locations(cafile=config.ssl_ca_cert)
        if config.cert_file:
            context.load_cert_chain(config.cert_file, config.key_file or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TLS files from the configuration cannot be loaded: {exc}") from exc

    if not config.verify_ssl:
        log.warning("TLS verification is off for %s (insecure-skip-tls-verify)", config.host)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _describe(exc: BaseException) -> str:
    # Exceptions from YAML parsing can quote the file; keep only the type and first line so a
    # token that sits in the file never reaches a message.
    first_line = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first_line[:200]}"
