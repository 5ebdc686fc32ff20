"""rx_informer through its reactive API: a factory, a shared informer, `events` subscribers.

Modes:
- `run`: one subscriber that reads every event's object name.
- `share`: `subscribers=S` parts of a program each ask the factory for the pods informer and
  subscribe; the harness counts the connections the server saw.
- `dispose`: `tries=N` cycles of subscribe, wait for SYNCED, dispose; for each, the time from
  `dispose()` to the server seeing the watch connection end, read from the server's /stats
  (both sides use `time.monotonic()`, one clock for all processes on Linux).
"""

# Imports inside functions are deliberate: a library that cannot be imported is reported,
# not fatal.
# ruff: noqa: PLC0415

from __future__ import annotations

import threading
import time
from typing import Any

import httpx

from benchmarks.drivers import _common

#: How long to wait for the server to see a disposed watch go before calling it a leak.
CLOSE_WAIT_S = 5.0


def _make_factory(args: _common.Args) -> tuple[Any, Any]:
    from rx_informer import Cluster, InformerFactory

    path = _common.write_kubeconfig(args.server) if args.is_url else args.server
    factory = InformerFactory(Cluster.from_kubeconfig(path=path))
    transform = _common.drop_managed_fields if args.transform != "none" else None
    return factory, transform


def run(args: _common.Args, recorder: _common.Recorder) -> None:
    """`run` and `share`: subscribers that each touch every event."""
    from rx_informer import EventType

    factory, transform = _make_factory(args)
    counted = (EventType.ADDED, EventType.MODIFIED, EventType.DELETED)
    errors: list[str] = []

    def on_next(event: Any) -> None:
        if event.type is EventType.SYNCED:
            recorder.mark_synced()
        elif event.type in counted:
            _ = event.object["metadata"]["name"]
            if recorder.synced.is_set():
                recorder.count_event()
        elif event.type is EventType.ERROR:
            errors.append(repr(event.error))

    subscribers = args.subscribers if args.mode == "share" else 1
    recorder.start()
    subscriptions = []
    for _ in range(subscribers):
        informer = factory.informer("v1", "pods", page_size=500, transform=transform)
        subscriptions.append(informer.events.subscribe(on_next))
    recorder.wait(lambda: len(informer.store))

    for subscription in subscriptions:
        subscription.dispose()
    factory.close()
    if errors:
        recorder.result["informer_errors"] = len(errors)
        recorder.result["first_informer_error"] = errors[0]


def _closed_count(stats_client: httpx.Client) -> tuple[int, list[float]]:
    stats = stats_client.get("/stats").json()
    return len(stats["watch_closed_at"]), stats["watch_closed_at"]


def _wait_for_watch(stats_client: httpx.Client, timeout: float) -> bool:
    # SYNCED can come before the watch request is sent; dispose once the watch is open, as
    # when the last subscriber of a long-running informer leaves.
    deadline = time.monotonic() + timeout
    while stats_client.get("/stats").json()["watch_open"] < 1:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.002)
    return True


def dispose(args: _common.Args) -> dict[str, Any]:
    """`dispose`: latency from the last dispose to the server seeing the socket end."""
    from rx_informer import EventType

    factory, _ = _make_factory(args)
    informer = factory.informer("v1", "pods", page_size=500)
    latencies: list[float] = []
    leaks = 0
    with httpx.Client(base_url=args.server, timeout=10.0) as stats_client:
        for _ in range(args.tries):
            synced = threading.Event()
            seen, _ = _closed_count(stats_client)
            def on_next(event: Any, synced: threading.Event = synced) -> None:
                if event.type is EventType.SYNCED:
                    synced.set()

            subscription = informer.events.subscribe(on_next)
            if not synced.wait(args.timeout):
                return {"error": "not synced before the timeout"}
            if not _wait_for_watch(stats_client, args.timeout):
                return {"error": "no watch opened before the timeout"}

            disposed_at = time.monotonic()
            subscription.dispose()
            deadline = disposed_at + CLOSE_WAIT_S
            count, closed_at = _closed_count(stats_client)
            while count <= seen and time.monotonic() < deadline:
                time.sleep(0.002)
                count, closed_at = _closed_count(stats_client)
            if count <= seen:
                leaks += 1
                continue
            latencies.append(closed_at[-1] - disposed_at)
    factory.close()
    return {"dispose_latencies_s": latencies, "not_closed": leaks}


def main() -> None:
    args = _common.parse_args()
    try:
        import rx_informer
    except Exception as exc:
        _common.emit({"unavailable": f"rx_informer is not importable: {exc!r}"})
        return
    version = f"rx_informer {getattr(rx_informer, '__version__', 'source tree')}"

    if args.mode == "dispose":
        result = {"contender": "rx_informer", "version": version, **dispose(args)}
        _common.emit(result)
        return
    recorder = _common.Recorder(args, "rx_informer", version)
    run(args, recorder)
    recorder.finish()


if __name__ == "__main__":
    main()
