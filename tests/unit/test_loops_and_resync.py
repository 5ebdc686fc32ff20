"""Where informers run (no thread per watch) and the resync timer."""

from __future__ import annotations

import asyncio
import threading

from rx_informer import EventType, InformerFactory
from rx_informer.streams.loop import background_loop
from tests.conftest import Recorder
from tests.support.fake_api import FakeApiServer, pod


def test_informers_from_synchronous_code_share_one_loop_thread(
    server: FakeApiServer, factory: InformerFactory
) -> None:
    background_loop()  # the one thread, possibly already started by an earlier test
    before = _informer_threads()
    recorders = []
    for namespace in ("a", "b", "c", "d", "e"):
        recorder = Recorder()
        factory.informer("v1", "pods", namespace).events.subscribe(recorder)
        recorders.append(recorder)
    for recorder in recorders:
        recorder.wait_count(EventType.SYNCED)
    assert _informer_threads() == before
    assert len({thread for r in recorders for thread in r.threads}) == 1


def _informer_threads() -> set[int]:
    """Threads other than the shared worker pool (which credential plugins may use)."""
    return {t.ident or 0 for t in threading.enumerate() if not t.name.startswith("asyncio_")}


async def test_inside_a_running_loop_callbacks_come_on_that_loop(
    server: FakeApiServer, factory: InformerFactory
) -> None:
    server.add(pod("a", 0))
    loop_thread = threading.get_ident()
    seen: list[int] = []
    synced = asyncio.Event()

    def on_event(event: object) -> None:
        seen.append(threading.get_ident())
        if getattr(event, "type", None) is EventType.SYNCED:
            synced.set()

    subscription = factory.informer("v1", "pods").events.subscribe(on_event)
    await asyncio.wait_for(synced.wait(), 5)
    assert set(seen) == {loop_thread}
    assert await factory.wait_for_sync_async(timeout=5)
    subscription.dispose()


def test_resync_redelivers_the_cache_without_any_request(
    server: FakeApiServer, factory: InformerFactory, recorder: Recorder
) -> None:
    server.add(pod("a", 0))
    server.add(pod("b", 0))
    pods = factory.informer("v1", "pods", resync_period=0.1)
    pods.events.subscribe(recorder)
    recorder.wait_count(EventType.MODIFIED, 4)
    modified = [e for e in recorder.items if e.type is EventType.MODIFIED]
    assert all(e.old is e.object for e in modified)
    assert sorted(e.name for e in modified[:2]) == ["a", "b"]
    assert len(server.requests_of("list")) == 1
    assert len(server.requests_of("watch")) == 1
