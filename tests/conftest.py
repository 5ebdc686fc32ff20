"""Fixtures shared by the unit tests: a fake API server on a real socket and a recorder."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from rx_informer import Backoff, Cluster, Event, EventType, InformerFactory, Timeouts
from rx_informer.streams.loop import background_loop
from tests.support.fake_api import FakeApiServer

# Short enough that recovery happens within a test's deadline, long enough to tell apart
# from "at once".
FAST_BACKOFF = Backoff(initial=0.05, cap=0.4, reset_after=5.0)
FAST_TIMEOUTS = Timeouts(connect=2.0, list_read=5.0, inactivity=5.0, watch_min=60, watch_max=60)


@pytest.fixture
def server() -> Iterator[FakeApiServer]:
    fake = FakeApiServer().start()
    yield fake
    fake.stop()


@pytest.fixture
def cluster(server: FakeApiServer, tmp_path: Path) -> Iterator[Cluster]:
    connected = Cluster.from_kubeconfig(server.kubeconfig(str(tmp_path / "kubeconfig")))
    yield connected
    connected.close()


@pytest.fixture
def factory(cluster: Cluster) -> Iterator[InformerFactory]:
    made = InformerFactory(cluster, timeouts=FAST_TIMEOUTS, backoff=FAST_BACKOFF)
    yield made
    made.close()


class Recorder:
    """An observer that keeps what it got and lets a test wait for it, with a deadline."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.threads: set[int] = set()
        self.concurrent = 0
        self._active = 0
        self._cond = threading.Condition()

    def __call__(self, item: Any) -> None:
        with self._cond:
            self._active += 1
            self.concurrent = max(self.concurrent, self._active)
        self.threads.add(threading.get_ident())
        with self._cond:
            self.items.append(item)
            self._active -= 1
            self._cond.notify_all()

    def wait(self, predicate: Callable[[list[Any]], bool], timeout: float = 5.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.items):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"not met within {timeout} s; got {self.items!r}")
                self._cond.wait(left)
            return list(self.items)

    def wait_count(self, event_type: EventType, count: int = 1, timeout: float = 5.0) -> list[Any]:
        return self.wait(lambda items: sum(1 for e in items if e.type is event_type) >= count,
                         timeout)

    def summary(self) -> list[tuple[str, str | None]]:
        """``[("ADDED", "a"), ("SYNCED", None), ...]``: the shape tests compare."""
        return [_summarise(e) for e in self.items]


def _summarise(event: Event) -> tuple[str, str | None]:
    if event.object is None:
        return (event.type.value, None)
    return (event.type.value, event.object["metadata"]["name"])


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture(autouse=True)
def no_informer_outlives_its_test() -> Iterator[None]:
    """Every test must stop what it started: a leftover informer would keep retrying against
    servers of later tests (and would be a leak in a user's program)."""
    yield
    loop = background_loop()

    def running() -> int:
        return asyncio.run_coroutine_threadsafe(_count_tasks(), loop).result(5)

    deadline = time.monotonic() + 5.0
    while (left := running()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert left == 0, f"{left} informer task(s) still running after the test"


async def _count_tasks() -> int:
    return len([t for t in asyncio.all_tasks() if t is not asyncio.current_task()])
