"""A real, local Kubernetes control plane: one etcd and one kube-apiserver on loopback.

It exists so that integration tests, benchmarks and the demo talk to the genuine apiserver
(its watch cache, its 410s, its bookmarks) rather than to a fake. There is no scheduler, no
controller manager and no kubelet: objects are stored and watched, nothing reconciles them.
Pods can still be created, since the admission plugin that waits for the service-account
controller is turned off.

Security is set up as in a real cluster, only generated on the spot: a CA signs the serving
certificate, so clients verify TLS; a second CA signs the admin's client certificate (group
``system:masters``); a static token file holds an admin token and any ``tokens`` given;
authorization is RBAC. Every key and certificate is written with mode 0600 into a temporary
directory that also holds etcd's data and both processes' logs, and that :meth:`stop`
removes.

Both processes run in their own process group and are told by the kernel to die with the
Python process (``PR_SET_PDEATHSIG``), and an ``atexit`` hook stops whatever is still
running, so neither survives a crashed or interrupted test run.

Errors, besides those of :mod:`rx_informer.testing.binaries`::

    ControlPlaneError
     +-- ControlPlaneNotRunningError   an attribute or action needs a started control plane
     +-- ProcessStartupError           etcd or kube-apiserver exited while starting
     +-- StartupTimeoutError           it did not become ready before the deadline
     +-- EtcdRequestError              etcd's JSON gateway refused a request
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import datetime
import ipaddress
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from rx_informer.testing.binaries import (
    Binaries,
    ControlPlaneError,
    Progress,
    ensure_binaries,
)

__all__ = [
    "ControlPlane",
    "ControlPlaneNotRunningError",
    "EtcdRequestError",
    "ProcessStartupError",
    "StartupTimeoutError",
    "StaticToken",
]

logger = logging.getLogger(__name__)

# kube-apiserver needs 5 to 15 s to become ready on a 2-core machine (RBAC bootstrap and the
# first watch-cache fills dominate); 90 s leaves room for a loaded CI machine.
_DEFAULT_STARTUP_TIMEOUT = 90.0

# How often readiness is polled: ready is seen within 0.1 s without a busy loop.
_POLL_INTERVAL = 0.1

# How long SIGTERM may take before SIGKILL. kube-apiserver closes its watches and drains
# in-flight requests on SIGTERM; on loopback with no shutdown delay that takes under 2 s.
_STOP_GRACE_PERIOD = 15.0

# The size of the excerpt of a process's log that a startup error carries.
_LOG_TAIL_LINES = 40

# A client certificate or serving certificate outlives any test session by far.
_CERTIFICATE_LIFETIME = datetime.timedelta(days=7)

# Clocks of test machines may disagree by seconds; back-date not_valid_before a little.
_CLOCK_SKEW_ALLOWANCE = datetime.timedelta(minutes=5)

# The service range is only configuration here: no proxy or node ever routes it. This is
# kube-apiserver's own documented default, named so that the flag is explicit.
_SERVICE_CLUSTER_IP_RANGE = "10.0.0.0/24"

_ADMIN_USER = "rx-informer-admin"
_ADMIN_GROUP = "system:masters"

_DIRECTORY_PREFIX = "rx-informer-control-plane-"

# Holds the pid of the Python process that owns a directory, so that a later start can
# remove the directories of owners that were killed before they could stop.
_OWNER_FILE = "owner.pid"

# From linux/prctl.h.
_PR_SET_PDEATHSIG = 1


class ControlPlaneNotRunningError(ControlPlaneError):
    """An attribute or action needs a control plane that :meth:`ControlPlane.start` started."""


class ProcessStartupError(ControlPlaneError):
    """etcd or kube-apiserver exited before it became ready."""

    def __init__(self, name: str, returncode: int, log_tail: str) -> None:
        super().__init__(f"{name} exited with code {returncode} while starting; "
                         f"last lines of its log:\n{log_tail}")
        self.name = name
        self.returncode = returncode
        self.log_tail = log_tail


class StartupTimeoutError(ControlPlaneError):
    """etcd or kube-apiserver was still not ready when the startup deadline passed."""

    def __init__(self, name: str, timeout: float, last_answer: str, log_tail: str) -> None:
        super().__init__(f"{name} not ready after {timeout:.0f} s (last answer: {last_answer}); "
                         f"last lines of its log:\n{log_tail}")
        self.name = name
        self.timeout = timeout
        self.last_answer = last_answer
        self.log_tail = log_tail


class EtcdRequestError(ControlPlaneError):
    """etcd's JSON gateway answered a request with an error."""

    def __init__(self, path: str, detail: str) -> None:
        super().__init__(f"etcd request {path} failed: {detail}")
        self.path = path
        self.detail = detail


@dataclass(frozen=True)
class StaticToken:
    """A bearer token that kube-apiserver accepts from its token file."""

    token: str
    user: str
    groups: tuple[str, ...] = ()
    uid: str = ""


# ---------------------------------------------------------------------------------------------
# Processes


_libc_prctl: Callable[..., int] | None
try:
    _libc_prctl = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    # Not Linux: children are still stopped by stop() and atexit, only not on a hard crash.
    _libc_prctl = None


def _child_setup(parent_pid: int) -> Callable[[], None]:
    """Return a preexec_fn that ties the child's life to the Python process."""

    def setup() -> None:
        if _libc_prctl is not None:
            _libc_prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        # If the parent died between fork and prctl, no signal will ever come.
        if os.getppid() != parent_pid:
            os._exit(1)

    return setup


class _Process:
    """One child process whose output goes to a log file."""

    def __init__(self, name: str, args: Sequence[str], log_path: Path) -> None:
        self.name = name
        self.args = list(args)
        self.log_path = log_path
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._popen is None else self._popen.pid

    @property
    def returncode(self) -> int | None:
        return None if self._popen is None else self._popen.poll()

    def start(self) -> None:
        logger.debug("starting %s: %s", self.name, self.args)

        # The kernel sends PDEATHSIG when the *thread* that forked the child exits, so it is
        # only safe from the main thread; elsewhere stop() and atexit must do.
        in_main_thread = threading.current_thread() is threading.main_thread()
        preexec = _child_setup(os.getpid()) if in_main_thread else None

        with self.log_path.open("ab") as log:
            # A session of its own: Ctrl-C in a terminal reaches Python alone, which then
            # stops the apiserver before etcd, and stop() can signal the whole group.
            # The preexec_fn calls only prctl and getppid, which take no lock that another
            # thread could hold at fork time.
            self._popen = subprocess.Popen(
                self.args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, preexec_fn=preexec)  # noqa: PLW1509

    def stop(self, grace_period: float = _STOP_GRACE_PERIOD) -> None:
        popen = self._popen
        if popen is None or popen.poll() is not None:
            return

        logger.debug("stopping %s (pid %d)", self.name, popen.pid)
        self._signal_group(popen, signal.SIGTERM)
        try:
            popen.wait(timeout=grace_period)
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop %.0f s after SIGTERM; killing it",
                           self.name, grace_period)
            self._signal_group(popen, signal.SIGKILL)
            popen.wait()

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        try:
            with self.log_path.open("rb") as log:
                tail = deque(log, maxlen=lines)
        except FileNotFoundError:
            return "(no log)"
        return b"".join(tail).decode("utf-8", errors="replace").rstrip()

    @staticmethod
    def _signal_group(popen: subprocess.Popen[bytes], signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signum)


def _free_loopback_port() -> int:
    # The port is free when this returns; another process could take it before the child
    # binds it, which on a test machine is rare enough to accept.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until_ready(process: _Process, check: Callable[[], str | None],
                      timeout: float) -> None:
    """Poll ``check`` until it returns None (ready); it returns a description otherwise."""
    deadline = time.monotonic() + timeout
    last_answer = "no answer yet"

    while True:
        if not process.running:
            raise ProcessStartupError(process.name, process.returncode or 0, process.log_tail())

        answer = check()
        if answer is None:
            return
        last_answer = answer

        if time.monotonic() >= deadline:
            raise StartupTimeoutError(process.name, timeout, last_answer, process.log_tail())
        time.sleep(_POLL_INTERVAL)


def _remove_abandoned_directories() -> None:
    """Remove the directories of control planes whose Python process was killed."""
    for directory in Path(tempfile.gettempdir()).glob(_DIRECTORY_PREFIX + "*"):
        try:
            owner = int((directory / _OWNER_FILE).read_text())
            mine = directory.stat().st_uid == os.getuid()
        except (OSError, ValueError):
            # Not ours, or still being set up by another process.
            continue
        if mine and not _process_exists(owner):
            logger.debug("removing %s, left by process %d that no longer exists",
                         directory, owner)
            shutil.rmtree(directory, ignore_errors=True)


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------------------------------
# Keys and certificates


@dataclass(frozen=True)
class _Issued:
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    def key_pem(self) -> bytes:
        return _private_key_pem(self.key)

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def _private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256: supported by Go's TLS and service-account signing, and generated in
    # microseconds where RSA-2048 takes tens of milliseconds.
    return ec.generate_private_key(ec.SECP256R1())


def _certificate(subject: x509.Name, key: ec.EllipticCurvePrivateKey,
                 issuer: _Issued | None) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer.certificate.subject if issuer else subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _CLOCK_SKEW_ALLOWANCE)
            .not_valid_after(now + _CERTIFICATE_LIFETIME))


def _new_ca(common_name: str) -> _Issued:
    key = _new_key()
    builder = (_certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]),
                            key, issuer=None)
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=True, key_cert_sign=True, crl_sign=True,
                   content_commitment=False, key_encipherment=False, data_encipherment=False,
                   key_agreement=False, encipher_only=False, decipher_only=False),
                   critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False))
    return _Issued(key, builder.sign(key, hashes.SHA256()))


def _new_leaf(ca: _Issued, subject: x509.Name, usage: x509.ObjectIdentifier,
              alternative_names: Sequence[x509.GeneralName] = ()) -> _Issued:
    key = _new_key()
    builder = (_certificate(subject, key, issuer=ca)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=True, key_cert_sign=False, crl_sign=False,
                   content_commitment=False, key_encipherment=False, data_encipherment=False,
                   key_agreement=False, encipher_only=False, decipher_only=False),
                   critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   ca.key.public_key()), critical=False))
    if alternative_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alternative_names),
                                        critical=False)
    return _Issued(key, builder.sign(ca.key, hashes.SHA256()))


def _write_private(path: Path, content: bytes) -> Path:
    """Write a file that only the owner may read: it holds a key or a credential."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(content)
    return path


@dataclass(frozen=True)
class _Pki:
    """Paths of every key, certificate and credential file, all in the control plane's dir."""

    ca: Path
    serving_certificate: Path
    serving_key: Path
    client_ca: Path
    admin_certificate: Path
    admin_key: Path
    service_account_key: Path
    service_account_public_key: Path


def _create_pki(directory: Path) -> _Pki:
    ca = _new_ca("rx-informer serving CA")
    serving = _new_leaf(
        ca, x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        ExtendedKeyUsageOID.SERVER_AUTH,
        [x509.DNSName("localhost"), x509.DNSName("kubernetes"),
         x509.DNSName("kubernetes.default"), x509.DNSName("kubernetes.default.svc"),
         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])

    client_ca = _new_ca("rx-informer client CA")
    admin = _new_leaf(
        client_ca,
        x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ADMIN_GROUP),
                   x509.NameAttribute(NameOID.COMMON_NAME, _ADMIN_USER)]),
        ExtendedKeyUsageOID.CLIENT_AUTH)

    service_account = _new_key()
    service_account_public = service_account.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

    return _Pki(
        ca=_write_private(directory / "ca.crt", ca.certificate_pem()),
        serving_certificate=_write_private(directory / "apiserver.crt",
                                           serving.certificate_pem()),
        serving_key=_write_private(directory / "apiserver.key", serving.key_pem()),
        client_ca=_write_private(directory / "client-ca.crt", client_ca.certificate_pem()),
        admin_certificate=_write_private(directory / "admin.crt", admin.certificate_pem()),
        admin_key=_write_private(directory / "admin.key", admin.key_pem()),
        service_account_key=_write_private(directory / "service-account.key",
                                           _private_key_pem(service_account)),
        service_account_public_key=_write_private(directory / "service-account.pub",
                                                   service_account_public),
    )


def _token_file_content(tokens: Iterable[StaticToken]) -> bytes:
    # The format kube-apiserver reads: token,user,uid,"group1,group2" (CSV, one per line).
    lines = []
    for token in tokens:
        for field in (token.token, token.user, token.uid, *token.groups):
            if any(bad in field for bad in ',"\n'):
                raise ValueError(f"static token field {field!r} contains , or \" or a newline")
        groups = ",".join(token.groups)
        lines.append(f'{token.token},{token.user},{token.uid},"{groups}"\n')
    return "".join(lines).encode()


def _kubeconfig(server: str, pki: _Pki) -> bytes:
    # JSON is valid YAML, so every kubeconfig reader accepts it and no YAML writer is needed.
    def inline(path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "rx-informer", "cluster": {
            "server": server, "certificate-authority-data": inline(pki.ca)}}],
        "users": [{"name": _ADMIN_USER, "user": {
            "client-certificate-data": inline(pki.admin_certificate),
            "client-key-data": inline(pki.admin_key)}}],
        "contexts": [{"name": "rx-informer", "context": {
            "cluster": "rx-informer", "user": _ADMIN_USER}}],
        "current-context": "rx-informer",
    }
    return json.dumps(config, indent=2).encode()


# ---------------------------------------------------------------------------------------------
# The control plane


@dataclass
class _Running:
    """Everything that exists only between start() and stop()."""

    directory: Path
    pki: _Pki
    token_file: Path
    kubeconfig: Path
    etcd: _Process
    apiserver: _Process
    etcd_endpoint: str
    server: str
    admin_token: str
    ssl_context: ssl.SSLContext


_RUNNING: set[ControlPlane] = set()
_RUNNING_LOCK = threading.Lock()


def _stop_all_at_exit() -> None:
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for control_plane in running:
        control_plane.stop()


atexit.register(_stop_all_at_exit)


class ControlPlane:
    """etcd and kube-apiserver on loopback, started by :meth:`start` or ``with``.

    After start, :attr:`server` is the https URL, :attr:`kubeconfig_path` a kubeconfig with
    the CA and the admin's client certificate, :attr:`ca_path` the CA certificate alone and
    :attr:`etcd_endpoint` etcd's plain-HTTP client URL. :attr:`admin_token` is a bearer token
    for the same admin.

    ``watch_cache_disabled_for`` names resources (``"configmaps"``, ``"deployments.apps"``)
    whose watches kube-apiserver serves straight from etcd, so that an old resource version
    after :meth:`compact` gets 410 at once. ``min_request_timeout`` (seconds) bounds a watch
    without ``timeoutSeconds`` to between it and twice it. ``tokens`` are further bearer tokens
    for the token file; :meth:`set_tokens` replaces them at the next apiserver start.
    """

    def __init__(
        self,
        *,
        watch_cache_disabled_for: Sequence[str] = (),
        min_request_timeout: int | None = None,
        tokens: Sequence[StaticToken] = (),
        extra_apiserver_args: Sequence[str] = (),
        binaries: Binaries | None = None,
        startup_timeout: float = _DEFAULT_STARTUP_TIMEOUT,
        keep_directory: bool = False,
        progress: Progress | None = None,
    ) -> None:
        self.watch_cache_disabled_for = tuple(watch_cache_disabled_for)
        self.min_request_timeout = min_request_timeout
        self.extra_apiserver_args = tuple(extra_apiserver_args)
        self.startup_timeout = startup_timeout
        self.keep_directory = keep_directory
        self._tokens = tuple(tokens)
        self._binaries = binaries
        self._progress = progress
        self._running: _Running | None = None
        #: The last run's directory, readable after stop() when ``keep_directory`` is set.
        self._kept: Path | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """Start etcd, then kube-apiserver, and return once the apiserver reports ready."""
        if self._running is not None:
            return

        binaries = self._binaries or self._ensure_binaries()
        started = time.monotonic()
        _remove_abandoned_directories()
        directory = Path(tempfile.mkdtemp(prefix=_DIRECTORY_PREFIX))
        (directory / _OWNER_FILE).write_text(str(os.getpid()))
        try:
            self._running = self._prepare(binaries, directory)
            with _RUNNING_LOCK:
                _RUNNING.add(self)

            self._start_etcd()
            self.start_apiserver()
        except BaseException:
            # Ctrl-C or a startup failure: leave no process and no directory behind.
            self.stop()
            if not self.keep_directory:
                shutil.rmtree(directory, ignore_errors=True)
            raise

        logger.info("control plane ready at %s in %.1f s (etcd %s, data in %s)",
                    self.server, time.monotonic() - started, self.etcd_endpoint, directory)

    def stop(self) -> None:
        """Stop kube-apiserver, then etcd, and remove the directory. Safe to call twice."""
        running = self._running
        if running is None:
            return

        running.apiserver.stop()
        running.etcd.stop()
        with _RUNNING_LOCK:
            _RUNNING.discard(self)
        self._running = None
        self._kept = running.directory if self.keep_directory else None

        if self.keep_directory:
            logger.info("control plane stopped; its files are kept in %s", running.directory)
        else:
            shutil.rmtree(running.directory, ignore_errors=True)

    def stop_apiserver(self) -> None:
        """Stop kube-apiserver alone; etcd and every file stay."""
        self._require_running().apiserver.stop()

    def start_apiserver(self) -> None:
        """Start kube-apiserver on the same port with the same certificates; wait for ready."""
        running = self._require_running()
        if running.apiserver.running:
            return

        _write_private(running.token_file, _token_file_content(self._all_tokens(running)))
        running.apiserver.start()
        _wait_until_ready(running.apiserver, self._apiserver_readiness, self.startup_timeout)

    def restart_apiserver(self, downtime: float = 0.0) -> None:
        """Stop kube-apiserver, stay down for ``downtime`` seconds, then start it again."""
        self.stop_apiserver()
        if downtime > 0:
            # Deliberate downtime that a test asked for, not a wait for a condition.
            time.sleep(downtime)
        self.start_apiserver()

    def restart_etcd(self) -> None:
        """Stop etcd and start it again with the same data and port; wait until healthy."""
        running = self._require_running()
        running.etcd.stop()
        self._start_etcd()

    def set_tokens(self, tokens: Sequence[StaticToken]) -> None:
        """Replace the extra bearer tokens; kube-apiserver reads them when it next starts.

        kube-apiserver reads its token file once, at start, so rotating a token is
        ``set_tokens(...)`` followed by :meth:`restart_apiserver`.
        """
        self._tokens = tuple(tokens)

    # -- attributes ---------------------------------------------------------------------------

    @property
    def binaries(self) -> Binaries | None:
        """The binaries in use; None until start() built or found them, unless given."""
        return self._binaries

    @property
    def server(self) -> str:
        """The apiserver's https URL, e.g. ``https://127.0.0.1:43123``."""
        return self._require_running().server

    @property
    def kubeconfig_path(self) -> Path:
        """A kubeconfig with the CA and the admin's client certificate inline."""
        return self._require_running().kubeconfig

    @property
    def ca_path(self) -> Path:
        """The PEM certificate of the CA that signed the apiserver's serving certificate."""
        return self._require_running().pki.ca

    @property
    def client_certificate_path(self) -> Path:
        """The admin's client certificate (PEM), group ``system:masters``."""
        return self._require_running().pki.admin_certificate

    @property
    def client_key_path(self) -> Path:
        """The admin's private key (PEM)."""
        return self._require_running().pki.admin_key

    @property
    def admin_token(self) -> str:
        """A bearer token for an admin in group ``system:masters``."""
        return self._require_running().admin_token

    @property
    def etcd_endpoint(self) -> str:
        """etcd's client URL, plain HTTP on loopback."""
        return self._require_running().etcd_endpoint

    @property
    def directory(self) -> Path:
        """The temporary directory with keys, etcd's data and both logs (``etcd.log``,
        ``kube-apiserver.log``). With ``keep_directory=True`` it stays readable after stop()."""
        if self._running is None and self._kept is not None:
            return self._kept
        return self._require_running().directory

    @property
    def process_ids(self) -> dict[str, int]:
        """Process ids of the running children by name, for checks that none outlives stop."""
        running = self._require_running()
        return {process.name: process.pid for process in (running.etcd, running.apiserver)
                if process.pid is not None and process.running}

    @property
    def apiserver_log_path(self) -> Path:
        return self._require_running().apiserver.log_path

    @property
    def etcd_log_path(self) -> Path:
        return self._require_running().etcd.log_path

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that verifies the server and presents the admin certificate."""
        return self._require_running().ssl_context

    # -- etcd ---------------------------------------------------------------------------------

    def compact(self) -> int:
        """Compact etcd at its current revision and return that revision.

        Every resource version older than the returned one is gone afterwards: a watch from
        one of them gets 410 once the apiserver asks etcd (at once for resources in
        ``watch_cache_disabled_for``).
        """
        answer = self._etcd_post("/v3/kv/range", {"key": base64.b64encode(b"/").decode()})
        # The gateway renders int64 fields as JSON strings.
        header = answer.get("header")
        if not isinstance(header, dict) or "revision" not in header:
            raise EtcdRequestError("/v3/kv/range", f"no revision in the answer {answer!r}")
        revision = int(header["revision"])

        try:
            self._etcd_post("/v3/kv/compaction", {"revision": revision, "physical": True})
        except EtcdRequestError as error:
            # Nothing was written since the last compaction: the goal is already reached.
            if "required revision has been compacted" not in error.detail:
                raise
        logger.debug("compacted etcd at revision %d", revision)
        return revision

    def delete_from_storage(self, api_path: str) -> None:
        """Delete an object in etcd directly, behind kube-apiserver's back.

        ``api_path`` is the object's storage path as kube-apiserver writes it, e.g.
        ``configmaps/team-a/settings``. This is how a test changes the cluster while
        kube-apiserver is down: no watch ever reports the deletion, only a relist finds it.
        """
        key = base64.b64encode(f"/registry/{api_path.strip('/')}".encode()).decode()
        answer = self._etcd_post("/v3/kv/deleterange", {"key": key})
        if str(answer.get("deleted", "0")) != "1":
            raise EtcdRequestError("/v3/kv/deleterange", f"nothing at /registry/{api_path}")

    def _etcd_post(self, path: str, body: dict[str, object]) -> dict[str, object]:
        request = urllib.request.Request(
            self.etcd_endpoint + path, data=json.dumps(body).encode(), method="POST",
            headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                answer: dict[str, object] = json.load(response)
                return answer
        except urllib.error.HTTPError as error:
            raise EtcdRequestError(path, error.read().decode(errors="replace")) from error
        except OSError as error:
            raise EtcdRequestError(path, str(error)) from error

    # -- apiserver ----------------------------------------------------------------------------

    def apiserver_metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of metric ``name`` whose labels include ``labels``.

        For example ``apiserver_metric("apiserver_longrunning_requests", verb="WATCH",
        resource="configmaps")`` counts the configmap watches open on the server. A metric
        with no sample yet counts as 0.
        """
        text = self._apiserver_get("/metrics").decode()
        return sum(value for series_labels, value in _samples(text, name)
                   if all(series_labels.get(key) == want for key, want in labels.items()))

    def _apiserver_get(self, path: str, timeout: float = 10.0) -> bytes:
        running = self._require_running()
        with urllib.request.urlopen(running.server + path, timeout=timeout,
                                    context=running.ssl_context) as response:
            body: bytes = response.read()
            return body

    def _apiserver_readiness(self) -> str | None:
        try:
            self._apiserver_get("/readyz", timeout=5.0)
        except urllib.error.HTTPError as error:
            # Not ready yet: the body lists the checks that still fail.
            failing = [line for line in error.read().decode(errors="replace").splitlines()
                       if "failed" in line]
            return f"HTTP {error.code}: {'; '.join(failing) or error.reason}"
        except OSError as error:
            return str(error)
        return None

    # -- internals ----------------------------------------------------------------------------

    def _ensure_binaries(self) -> Binaries:
        self._binaries = (ensure_binaries(self._progress) if self._progress
                          else ensure_binaries())
        return self._binaries

    def _prepare(self, binaries: Binaries, directory: Path) -> _Running:
        pki = _create_pki(directory)
        etcd_port, peer_port, apiserver_port = (_free_loopback_port() for _ in range(3))
        etcd_endpoint = f"http://127.0.0.1:{etcd_port}"
        server = f"https://127.0.0.1:{apiserver_port}"
        token_file = directory / "tokens.csv"

        kubeconfig = _write_private(directory / "kubeconfig", _kubeconfig(server, pki))
        context = ssl.create_default_context(cafile=str(pki.ca))
        context.load_cert_chain(pki.admin_certificate, pki.admin_key)

        etcd = _Process("etcd", self._etcd_args(binaries, directory, etcd_endpoint, peer_port),
                        directory / "etcd.log")
        apiserver = _Process(
            "kube-apiserver",
            self._apiserver_args(binaries, directory, pki, etcd_endpoint=etcd_endpoint,
                                 port=apiserver_port, token_file=token_file),
            directory / "kube-apiserver.log")

        return _Running(directory=directory, pki=pki, token_file=token_file,
                        kubeconfig=kubeconfig, etcd=etcd, apiserver=apiserver,
                        etcd_endpoint=etcd_endpoint, server=server,
                        admin_token=secrets.token_urlsafe(32), ssl_context=context)

    @staticmethod
    def _etcd_args(binaries: Binaries, directory: Path, endpoint: str,
                   peer_port: int) -> list[str]:
        peer = f"http://127.0.0.1:{peer_port}"
        return [
            str(binaries.etcd),
            "--name=rx-informer",
            f"--data-dir={directory / 'etcd-data'}",
            f"--listen-client-urls={endpoint}",
            f"--advertise-client-urls={endpoint}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=rx-informer={peer}",
            # Test data need not survive a power cut; fsync would make every write wait on
            # the disk.
            "--unsafe-no-fsync",
            # compact() talks to etcd through this JSON gateway (on by default; named because
            # this module depends on it).
            "--enable-grpc-gateway=true",
        ]

    def _apiserver_args(self, binaries: Binaries, directory: Path, pki: _Pki, *,
                        etcd_endpoint: str, port: int, token_file: Path) -> list[str]:
        args = [
            str(binaries.kube_apiserver),
            f"--etcd-servers={etcd_endpoint}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={directory / 'apiserver-cert-dir'}",
            f"--tls-cert-file={pki.serving_certificate}",
            f"--tls-private-key-file={pki.serving_key}",
            f"--client-ca-file={pki.client_ca}",
            f"--token-auth-file={token_file}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc",
            f"--service-account-key-file={pki.service_account_public_key}",
            f"--service-account-signing-key-file={pki.service_account_key}",
            f"--service-cluster-ip-range={_SERVICE_CLUSTER_IP_RANGE}",
            # Without a controller manager no "default" service account ever appears, and
            # this plugin would then refuse every pod.
            "--disable-admission-plugins=ServiceAccount",
            # The reconciler would publish 127.0.0.1 as the kubernetes service's endpoint,
            # which validation rejects as loopback, and log that error every 10 s.
            "--endpoint-reconciler-type=none",
        ]
        if self.watch_cache_disabled_for:
            sizes = ",".join(f"{resource}#0" for resource in self.watch_cache_disabled_for)
            args.append(f"--watch-cache-sizes={sizes}")
        if self.min_request_timeout is not None:
            args.append(f"--min-request-timeout={self.min_request_timeout}")
        return args + list(self.extra_apiserver_args)

    def _start_etcd(self) -> None:
        running = self._require_running()
        running.etcd.start()
        _wait_until_ready(running.etcd, self._etcd_health, self.startup_timeout)

    def _etcd_health(self) -> str | None:
        try:
            with urllib.request.urlopen(self.etcd_endpoint + "/health", timeout=5) as response:
                health = json.load(response)
        except (OSError, ValueError) as error:
            return str(error)
        return None if health.get("health") == "true" else json.dumps(health)

    def _all_tokens(self, running: _Running) -> list[StaticToken]:
        admin = StaticToken(running.admin_token, _ADMIN_USER, (_ADMIN_GROUP,), uid="admin")
        return [admin, *self._tokens]

    def _require_running(self) -> _Running:
        if self._running is None:
            raise ControlPlaneNotRunningError("the control plane is not started; call start()")
        return self._running


_SAMPLE_LINE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+"
                          r"(?P<value>\S+)")
_LABEL = re.compile(r'(?P<key>[a-zA-Z_][a-zA-Z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')


def _samples(exposition: str, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of one metric in Prometheus text exposition format."""
    samples = []
    for line in exposition.splitlines():
        match = _SAMPLE_LINE.match(line)
        if match is None or match["name"] != name:
            continue
        labels = {label["key"]: label["value"] for label in _LABEL.finditer(match["labels"] or "")}
        samples.append((labels, float(match["value"])))
    return samples
