"""The floor: the same list pages and watch bytes read by a bare httpx loop.

No cache, no objects beyond a decoded dict per item, no threads: what it costs is what any
Python informer must at least pay to move and decode these bytes. With `cache=1` (memory
workload only) it keeps the decoded dicts in a plain dict, the least a Python cache can hold.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import orjson

from benchmarks.drivers import _common

PAGE_SIZE = 500


def list_all(client: httpx.Client, cache: dict[str, Any] | None,
             transform: Callable[[dict[str, Any]], dict[str, Any]]) -> str:
    """Read every list page; return the list's resource version."""
    token = ""
    while True:
        params: dict[str, Any] = {"limit": PAGE_SIZE}
        if token:
            params["continue"] = token
        response = client.get("/api/v1/pods", params=params)
        response.raise_for_status()
        page = orjson.loads(response.content)

        for item in page["items"]:
            metadata = item["metadata"]
            if cache is not None:
                cache[f"{metadata['namespace']}/{metadata['name']}"] = transform(item)
        token = page["metadata"].get("continue", "")
        if not token:
            return str(page["metadata"]["resourceVersion"])


def watch(client: httpx.Client, resource_version: str, recorder: _common.Recorder) -> None:
    """Stream events, splitting on b"\\n" and searching only the new bytes for it."""
    if recorder.target == 0:
        return
    params = {"watch": "true", "resourceVersion": resource_version,
              "allowWatchBookmarks": "true"}
    with client.stream("GET", "/api/v1/pods", params=params) as response:
        pending = b""
        for chunk in response.iter_raw():
            start = len(pending)
            pending += chunk
            end = pending.find(b"\n", start)
            begin = 0
            while end != -1:
                event = orjson.loads(pending[begin:end])
                _ = event["object"]["metadata"]["name"]
                recorder.count_event()
                if recorder.done.is_set():
                    return
                begin = end + 1
                end = pending.find(b"\n", begin)
            pending = pending[begin:]


def _unchanged(obj: dict[str, Any]) -> dict[str, Any]:
    return obj


def main() -> None:
    args = _common.parse_args()
    recorder = _common.Recorder(args, "floor", f"httpx {httpx.__version__}")
    if not args.is_url:
        _common.emit({"unavailable": "the floor reads the replay server only"})
        return
    cache: dict[str, Any] | None = {} if args.cache else None
    transform = _common.drop_managed_fields if args.transform != "none" else _unchanged

    recorder.start()
    with httpx.Client(base_url=args.server, timeout=httpx.Timeout(60.0)) as client:
        resource_version = list_all(client, cache, transform)
        recorder.mark_synced()
        recorder.after_synced(args.pods if cache is None else len(cache))

        watch(client, resource_version, recorder)
        recorder.after_done()
    recorder.finish()


if __name__ == "__main__":
    main()
