"""pytest fixtures for tests against the local control plane.

``control_plane`` (session scope) yields a started :class:`ControlPlane` with default knobs,
shared by every test of the run. ``control_plane_factory`` (test scope) starts further control
planes with other knobs (``watch_cache_disabled_for``, ``min_request_timeout``, ``tokens``)
and stops them when the test ends.

When the binaries cannot be had here (no Go, a failed build), the tests that use either
fixture are skipped with one line saying why; with ``CI=true`` they fail instead, so that a
machine that should run them cannot pass silently.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rx_informer.testing.binaries import (
    Binaries,
    BinariesUnavailableError,
    BinaryBuildError,
    ensure_binaries,
)
from rx_informer.testing.control_plane import ControlPlane

__all__ = ["control_plane", "control_plane_binaries", "control_plane_factory"]

ControlPlaneFactory = Callable[..., ControlPlane]


@pytest.fixture(scope="session")
def control_plane_binaries(request: pytest.FixtureRequest) -> Binaries:
    """etcd and kube-apiserver, built on first use; skips (fails under CI) if impossible."""
    try:
        # The first build takes minutes: show its progress even while pytest captures output.
        capture = request.config.pluginmanager.getplugin("capturemanager")
        if capture is None:
            return ensure_binaries(_progress)
        with capture.global_and_fixture_disabled():
            return ensure_binaries(_progress)
    except BinariesUnavailableError as error:
        if os.environ.get("CI") == "true":
            pytest.fail(f"control plane binaries unavailable: {error}", pytrace=False)
        pytest.skip(f"control plane binaries unavailable: {_one_line(error)}")


@pytest.fixture(scope="session")
def control_plane(control_plane_binaries: Binaries) -> Iterator[ControlPlane]:
    """A started etcd and kube-apiserver, stopped when the test session ends."""
    with ControlPlane(binaries=control_plane_binaries) as plane:
        yield plane


@pytest.fixture
def control_plane_factory(control_plane_binaries: Binaries) -> Iterator[ControlPlaneFactory]:
    """Start a control plane with the given ControlPlane keyword arguments; stopped after."""
    started: list[ControlPlane] = []

    def start(**knobs: Any) -> ControlPlane:
        plane = ControlPlane(binaries=control_plane_binaries, **knobs)
        plane.start()
        started.append(plane)
        return plane

    yield start

    for plane in started:
        plane.stop()


def _one_line(error: BinariesUnavailableError) -> str:
    if isinstance(error, BinaryBuildError):
        last_output = (error.output_tail.splitlines() or ["no output"])[-1]
        return f"{error.step} of {error.module}@{error.version} failed: {last_output}"
    return str(error).splitlines()[0]


def _progress(message: str) -> None:
    print(f"\nrx-informer: {message}", file=sys.stderr, flush=True)
