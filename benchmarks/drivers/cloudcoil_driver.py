"""cloudcoil's `SyncInformer` (`cloudcoil.caching`).

The newest cloudcoil releases (0.7, 0.8) need Python 3.14; this machine's Python runs 0.6.0,
the newest it accepts. That release's informer lists one page only (`limit=page_size`, no
`continue`), keeps at most 10,000 objects and validates every object into a pydantic model.
The driver reports what it cached at sync (`objects`), so the harness can show the gap.
"""

# Imports inside functions are deliberate: a library that cannot be imported is reported,
# not fatal.
# ruff: noqa: PLC0415

from __future__ import annotations

import os
import time
from typing import Any

from benchmarks.drivers import _common


def main() -> None:
    args = _common.parse_args()
    try:
        # cloudcoil.client first: importing cloudcoil.caching first is a circular import.
        # isort: off
        from cloudcoil.client import Config
        from cloudcoil.caching import Cache
        import cloudcoil.models.kubernetes as k8s
        from cloudcoil.version import __version__
        # isort: on
    except ImportError as exc:
        _common.emit({"unavailable": f"cloudcoil is not importable: {exc}"})
        return
    if args.mode != "run":
        _common.emit({"unavailable": f"mode {args.mode} is measured for other contenders"})
        return
    if args.transform != "none":
        _common.emit({"unavailable": "cloudcoil's informer has no transform option"})
        return

    recorder = _common.Recorder(args, "cloudcoil", f"cloudcoil {__version__}")
    pod_type = k8s.core.v1.Pod
    if args.is_url:
        config = Config(server=args.server, token="replay-token", cache=Cache(resources=[pod_type]))
    else:
        config = Config(kubeconfig=args.server, cache=Cache(resources=[pod_type]))
    informer = config.cache.get_informer(pod_type, sync=True)
    if informer is None:
        _common.emit({"unavailable": "cloudcoil gave no informer for Pod"})
        return

    def on_update(old: Any, new: Any) -> None:
        # Only watch events call this (the list fills the store without handlers).
        _ = new.metadata.name
        recorder.count_event()

    informer.on_update(on_update)

    recorder.start()
    config.cache.start()
    # The informer offers no callback at sync, so poll its flag every millisecond.
    while not informer.has_synced():
        time.sleep(0.001)
    recorder.mark_synced()
    recorder.wait(lambda: len(informer.list()))
    recorder.finish()

    # cache.stop() joins the watch thread for up to 10 s while it sits in a socket read (the
    # read timeout is 305 s); the measurement is over, so leave without waiting for it.
    os._exit(0)


if __name__ == "__main__":
    main()
