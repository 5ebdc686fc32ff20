"""The sharing operator: hot, ref-counted, reset per generation, serialised, fault-isolated."""

from __future__ import annotations

import logging
import threading

import pytest
import reactivex
from reactivex import Observable, abc
from reactivex.disposable import Disposable
from reactivex.subject import Subject

from rx_informer.streams.sharing import ReplayLatestShare
from tests.conftest import Recorder


class CountingSource:
    """A source whose subscriptions are counted and whose observers tests drive by hand."""

    def __init__(self) -> None:
        self.subscribed = 0
        self.disposed = 0
        self.subject: Subject[int] = Subject()

    def observable(self) -> Observable[int]:
        def subscribe(
            observer: abc.ObserverBase[int], scheduler: abc.SchedulerBase | None = None
        ) -> abc.DisposableBase:
            self.subscribed += 1
            self.subject = Subject()
            inner = self.subject.subscribe(observer)

            def dispose() -> None:
                self.disposed += 1
                inner.dispose()

            return Disposable(dispose)

        return reactivex.create(subscribe)


def make() -> tuple[CountingSource, ReplayLatestShare[int]]:
    source = CountingSource()
    return source, ReplayLatestShare(source.observable(), lambda latest: latest * 100)


def test_one_source_subscription_for_many_observers_and_dispose_on_last() -> None:
    source, shared = make()
    first, second = Recorder(), Recorder()
    a = shared.subscribe(first)
    b = shared.subscribe(second)
    source.subject.on_next(1)
    assert source.subscribed == 1 and first.items == [1] and second.items == [1]

    a.dispose()
    assert source.disposed == 0
    b.dispose()
    assert source.disposed == 1


def test_late_observer_gets_the_replay_then_live_values() -> None:
    source, shared = make()
    shared.subscribe(Recorder())
    source.subject.on_next(7)
    late = Recorder()
    shared.subscribe(late)
    source.subject.on_next(8)
    assert late.items == [700, 8]


def test_new_generation_after_refcount_zero_sees_nothing_stale() -> None:
    source, shared = make()
    subscription = shared.subscribe(Recorder())
    source.subject.on_next(1)
    subscription.dispose()
    assert shared.latest is None

    fresh = Recorder()
    shared.subscribe(fresh)
    assert source.subscribed == 2
    assert fresh.items == []


@pytest.mark.parametrize("end", ["error", "completed"])
def test_new_generation_after_the_source_ends(end: str) -> None:
    source, shared = make()
    ended: list[str] = []
    shared.subscribe(lambda _: None, lambda e: ended.append("error"), lambda: ended.append("done"))
    source.subject.on_next(1)
    if end == "error":
        source.subject.on_error(RuntimeError("bug"))
    else:
        source.subject.on_completed()
    assert ended == ["error" if end == "error" else "done"]

    fresh = Recorder()
    shared.subscribe(fresh)
    source.subject.on_next(2)
    assert source.subscribed == 2 and fresh.items == [2]


def test_raising_observer_is_logged_and_others_still_get_every_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Case 20."""
    source, shared = make()
    calls: list[int] = []

    def explode(value: int) -> None:
        calls.append(value)
        raise ValueError("handler bug")

    shared.subscribe(explode)
    good = Recorder()
    shared.subscribe(good)
    with caplog.at_level(logging.ERROR):
        source.subject.on_next(1)
        source.subject.on_next(2)
    assert good.items == [1, 2]
    assert calls == [1, 2]
    assert "handler bug" in caplog.text


def test_dispose_from_inside_a_callback_stops_delivery_to_that_observer() -> None:
    source, shared = make()
    got: list[int] = []
    holder: list[abc.DisposableBase] = []

    def once(value: int) -> None:
        got.append(value)
        holder[0].dispose()

    holder.append(shared.subscribe(once))
    other = Recorder()
    shared.subscribe(other)
    source.subject.on_next(1)
    source.subject.on_next(2)
    assert got == [1] and other.items == [1, 2]


def test_no_concurrent_calls_and_nothing_after_dispose_under_racing_threads() -> None:
    source, shared = make()
    keeper = Recorder()
    shared.subscribe(keeper)
    stop = threading.Event()
    late_calls: list[int] = []

    def churn() -> None:
        while not stop.is_set():
            disposed = threading.Event()

            def on_next(value: int, disposed: threading.Event = disposed) -> None:
                if disposed.is_set():
                    late_calls.append(value)

            subscription = shared.subscribe(on_next)
            subscription.dispose()
            disposed.set()

    def emit() -> None:
        for value in range(5000):
            source.subject.on_next(value)

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for thread in threads:
        thread.start()
    emitter = threading.Thread(target=emit)
    emitter.start()
    emitter.join(30)
    stop.set()
    for thread in threads:
        thread.join(30)

    assert keeper.items == list(range(5000))
    assert keeper.concurrent == 1
    assert late_calls == []
    assert source.subscribed == 1


def test_subscribing_from_inside_a_callback_misses_nothing_and_gets_no_duplicate() -> None:
    source, shared = make()
    late = Recorder()

    def first(value: int) -> None:
        if value == 1:
            shared.subscribe(late)

    shared.subscribe(first)
    source.subject.on_next(1)
    source.subject.on_next(2)
    assert late.items == [100, 2]


def test_only_the_retained_part_of_the_latest_value_is_kept() -> None:
    source = CountingSource()
    shared = ReplayLatestShare(source.observable(), lambda v: v, retain=lambda v: v % 10)
    shared.subscribe(Recorder())
    source.subject.on_next(1234)
    assert shared.latest == 4
