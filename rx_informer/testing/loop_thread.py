"""An asyncio loop running in a daemon thread, for test servers driven from test code."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

_T = TypeVar("_T")

# How long start() and stop() may take on the loop thread: binding a loopback port and
# aborting sockets take milliseconds; 10 s only bounds a loop that hangs.
CONTROL_TIMEOUT = 10.0


class LoopThread:
    """An asyncio loop running forever in a daemon thread; other threads hand it work."""

    def __init__(self, name: str) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, _T], timeout: float = CONTROL_TIMEOUT) -> _T:
        """Run ``coroutine`` on the loop and wait for its result from the calling thread."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def call(self, function: Callable[[], _T], timeout: float = CONTROL_TIMEOUT) -> _T:
        """Run ``function`` on the loop's thread, so it never races the loop's own work."""
        if threading.current_thread() is self._thread:
            return function()

        result: concurrent.futures.Future[_T] = concurrent.futures.Future()

        def run() -> None:
            try:
                result.set_result(function())
            except BaseException as error:
                result.set_exception(error)

        self.loop.call_soon_threadsafe(run)
        return result.result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(CONTROL_TIMEOUT)
        if not self._thread.is_alive():
            self.loop.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
