"""Which asyncio loop runs an informer.

Inside a running loop, the informer runs on it: its callbacks come on that loop's thread and
no thread is added. From plain synchronous code, every informer of the process shares one
daemon loop thread, started on first use (a thread per watch would not scale to hundreds of
resources).
"""

from __future__ import annotations

import asyncio
import logging
import threading

log = logging.getLogger(__name__)

_lock = threading.Lock()
_background: asyncio.AbstractEventLoop | None = None


def current_or_background_loop() -> asyncio.AbstractEventLoop:
    """The running loop of this thread if there is one, else the shared background loop."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return background_loop()


def background_loop() -> asyncio.AbstractEventLoop:
    """The process-wide loop thread for informers used from synchronous code."""
    global _background  # noqa: PLW0603 - one loop per process, made on first use
    with _lock:
        if _background is None or _background.is_closed():
            _background = _start_loop_thread()
        return _background


def _start_loop_thread() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    thread = threading.Thread(target=run, name="rx-informer-loop", daemon=True)
    thread.start()
    ready.wait()
    log.debug("started the background informer loop thread")
    return loop
