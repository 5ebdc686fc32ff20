"""Build etcd and kube-apiserver from the Go modules in ``controlplane/`` and cache them.

Neither binary is downloaded ready-made: each comes from a small Go module in this repository
whose ``go.mod`` and ``go.sum`` pin one release (``controlplane/etcd`` and
``controlplane/kube-apiserver``). The first call of :func:`ensure_binaries` fetches the
modules through the Go module proxy and compiles both commands, which takes minutes; the
binaries then live in a cache directory outside the repository, keyed by binary name,
release and Go version, so every later call returns at once.

Errors::

    ControlPlaneError                      (defined here, shared with control_plane.py)
     +-- BinariesUnavailableError          the binaries cannot be had on this machine
          +-- GoToolchainMissingError      no ``go`` command and nothing cached
          +-- GoModuleSourceMissingError   the ``controlplane/<name>`` module is not found
          +-- BinaryBuildError             ``go mod download`` or ``go build`` failed

Environment:

``RX_INFORMER_CACHE``
    cache root; default ``$XDG_CACHE_HOME/rx-informer``, else ``~/.cache/rx-informer``.
``RX_INFORMER_CONTROLPLANE_DIR``
    the directory holding the Go modules; default ``controlplane/`` beside the package.
``RX_INFORMER_ETCD``, ``RX_INFORMER_KUBE_APISERVER``
    use this binary instead of building one.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rx_informer.errors import InformerError

__all__ = [
    "Binaries",
    "BinariesUnavailableError",
    "BinaryBuildError",
    "ControlPlaneError",
    "GoModuleSourceMissingError",
    "GoToolchainMissingError",
    "ensure_binaries",
]

logger = logging.getLogger(__name__)

Progress = Callable[[str], None]

# How many lines of go's output a BinaryBuildError carries: enough for the compiler or the
# proxy error and the lines that lead to it, short enough to read in a test report.
_BUILD_OUTPUT_TAIL_LINES = 30

_VERSION_PACKAGE = "k8s.io/component-base/version"


class ControlPlaneError(InformerError):
    """Base class of every error raised while building or running the local control plane."""


class BinariesUnavailableError(ControlPlaneError):
    """The etcd or kube-apiserver binary cannot be built or found on this machine."""


class GoToolchainMissingError(BinariesUnavailableError):
    """No ``go`` command on PATH, and no cached binary to fall back on."""


class GoModuleSourceMissingError(BinariesUnavailableError):
    """The Go module that pins a binary's release is not where it was looked for."""


class BinaryBuildError(BinariesUnavailableError):
    """``go mod download`` or ``go build`` exited non-zero."""

    def __init__(self, step: str, module: str, version: str, output_tail: str) -> None:
        super().__init__(f"{step} of {module}@{version} failed; last lines of go's output:\n"
                         f"{output_tail}")
        self.step = step
        self.module = module
        self.version = version
        self.output_tail = output_tail


@dataclass(frozen=True)
class Binaries:
    """Paths of the two control-plane binaries and the releases they were built from."""

    etcd: Path
    kube_apiserver: Path
    etcd_release: str
    kubernetes_release: str


@dataclass(frozen=True)
class _Component:
    """One binary: the Go module directory that pins it and how to build it."""

    name: str
    source_dir: str
    pinned_module: str
    package: str
    override_env: str
    # What a first build costs, measured on a 2-core machine with empty Go caches; only
    # shown to the person waiting.
    cold_build: str


_ETCD = _Component(
    name="etcd",
    source_dir="etcd",
    pinned_module="go.etcd.io/etcd/server/v3",
    # Since etcd 3.5 the etcd command's main package is the root of the server module.
    package="go.etcd.io/etcd/server/v3",
    override_env="RX_INFORMER_ETCD",
    cold_build="about 1 minute on 2 cores",
)

_KUBE_APISERVER = _Component(
    name="kube-apiserver",
    source_dir="kube-apiserver",
    pinned_module="k8s.io/kubernetes",
    package="k8s.io/kubernetes/cmd/kube-apiserver",
    override_env="RX_INFORMER_KUBE_APISERVER",
    cold_build="about 7 minutes on 2 cores, up to 2.3 GB of memory",
)


def _print_to_stderr(message: str) -> None:
    print(f"rx-informer: {message}", file=sys.stderr, flush=True)


def ensure_binaries(progress: Progress = _print_to_stderr) -> Binaries:
    """Return etcd and kube-apiserver, building them first if they are not cached yet.

    Safe to call from several processes at once: a file lock per binary makes one build it
    while the others wait and then reuse it. A cached binary is returned without running
    anything but ``go env``.
    """
    started = time.monotonic()
    built: list[str] = []

    etcd, etcd_release = _ensure(_ETCD, progress, built)
    apiserver, kubernetes_release = _ensure(_KUBE_APISERVER, progress, built)

    if built:
        progress(f"control-plane binaries ready in {time.monotonic() - started:.0f} s "
                 f"(built: {', '.join(built)})")
    return Binaries(etcd=etcd, kube_apiserver=apiserver, etcd_release=etcd_release,
                    kubernetes_release=kubernetes_release)


def cache_root() -> Path:
    """The directory that holds one sub-directory per cached binary."""
    explicit = os.environ.get("RX_INFORMER_CACHE")
    if explicit:
        return Path(explicit)

    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "rx-informer"


def controlplane_source_root() -> Path:
    """The directory that holds the ``etcd`` and ``kube-apiserver`` Go modules."""
    explicit = os.environ.get("RX_INFORMER_CONTROLPLANE_DIR")
    if explicit:
        return Path(explicit)
    return Path(__file__).resolve().parents[2] / "controlplane"


def _ensure(component: _Component, progress: Progress, built: list[str]) -> tuple[Path, str]:
    source = controlplane_source_root() / component.source_dir
    release = _pinned_release(component, source)

    override = os.environ.get(component.override_env)
    if override:
        return Path(override), release

    go = shutil.which("go")
    if go is None:
        return _any_cached_build(component, release), release

    target_dir = cache_root() / f"{component.name}-{release}-{_go_version(go, source)}"
    binary = target_dir / component.name
    if _is_executable(binary):
        return binary, release

    with _build_lock(target_dir, component, progress):
        # Another process may have finished the build while this one waited for the lock.
        if not _is_executable(binary):
            _build(component, release, go=go, source=source, binary=binary, progress=progress)
            built.append(component.name)
    return binary, release


def _pinned_release(component: _Component, source: Path) -> str:
    go_mod = source / "go.mod"
    try:
        text = go_mod.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GoModuleSourceMissingError(
            f"no Go module for {component.name} at {go_mod}; set RX_INFORMER_CONTROLPLANE_DIR "
            f"to the repository's controlplane/ directory") from None

    # Matches both "require X vN" and a line inside a require block.
    pattern = rf"^\s*(?:require\s+)?{re.escape(component.pinned_module)}\s+(v\S+)"
    found = re.search(pattern, text, flags=re.MULTILINE)
    if found is None:
        raise GoModuleSourceMissingError(
            f"{go_mod} does not require {component.pinned_module}")
    return found.group(1)


def _go_version(go: str, source: Path) -> str:
    # Run inside the module so that a GOTOOLCHAIN switch is reflected in the answer.
    result = subprocess.run([go, "env", "GOVERSION"], cwd=source, capture_output=True,
                            text=True, check=False)
    if result.returncode != 0:
        raise BinaryBuildError("go env", "go", "GOVERSION", _tail(result.stderr))
    return result.stdout.strip()


def _any_cached_build(component: _Component, release: str) -> Path:
    candidates = sorted(cache_root().glob(f"{component.name}-{release}-go*/{component.name}"))
    usable = [path for path in candidates if _is_executable(path)]
    if not usable:
        raise GoToolchainMissingError(
            f"no go command on PATH to build {component.name} {release}, and no cached build "
            f"in {cache_root()}; install Go 1.26 or newer")
    return usable[-1]


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


@contextmanager
def _build_lock(target_dir: Path, component: _Component, progress: Progress) -> Iterator[None]:
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    lock_path = target_dir.with_name(target_dir.name + ".lock")

    with lock_path.open("a") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for another process that is building {component.name}")
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _build(component: _Component, release: str, *, go: str, source: Path, binary: Path,
           progress: Progress) -> None:
    env = {**os.environ, "CGO_ENABLED": "0"}

    progress(f"downloading Go modules for {component.name} {release}")
    _run_go(component, release, "go mod download", [go, "mod", "download"], cwd=source,
            env=env)

    progress(f"building {component.name} {release} ({component.cold_build} when Go's build "
             f"cache is empty)")
    started = time.monotonic()
    binary.parent.mkdir(parents=True, exist_ok=True)
    partial = binary.with_name(f".{component.name}.partial-{os.getpid()}")
    command = [go, "build", "-trimpath", "-ldflags", _ldflags(component, release),
               "-o", str(partial), component.package]
    try:
        _run_go(component, release, "go build", command, cwd=source, env=env)
        # A rename within one directory is atomic: no reader ever sees half a binary.
        partial.replace(binary)
    finally:
        partial.unlink(missing_ok=True)

    progress(f"built {component.name} {release} in {time.monotonic() - started:.0f} s: {binary}")


def _ldflags(component: _Component, release: str) -> str:
    # -s -w drop the symbol table and DWARF data: a smaller binary and a faster link.
    flags = ["-s", "-w"]
    if component is _KUBE_APISERVER:
        major, minor = release.removeprefix("v").split(".")[:2]
        build_date = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        values = {"gitVersion": release, "gitMajor": major, "gitMinor": minor,
                  "gitCommit": "", "gitTreeState": "clean", "buildDate": build_date}
        flags += [f"-X {_VERSION_PACKAGE}.{name}={value}" for name, value in values.items()]
    return " ".join(flags)


def _run_go(component: _Component, release: str, step: str, command: list[str], *,
            cwd: Path, env: dict[str, str]) -> None:
    logger.debug("running %s in %s", command, cwd)
    result = subprocess.run(command, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = result.stdout + result.stderr
        raise BinaryBuildError(step, component.pinned_module, release, _tail(output))


def _tail(output: str) -> str:
    return "\n".join(output.strip().splitlines()[-_BUILD_OUTPUT_TAIL_LINES:])
