"""The official Python client's `kubernetes.informer.SharedInformer`.

Its list is one unpaged request (the informer passes no `limit`), decoded into `V1Pod`
models, and every watch event is decoded twice (JSON, then a model). It has no sync signal:
the cache is complete once the handler has seen one ADDED per listed pod, since the informer
fills the cache before it calls the handlers. That count needs `pods=P`.
"""

# Imports inside functions are deliberate: a library that cannot be imported is reported,
# not fatal.
# ruff: noqa: PLC0415
# The kubernetes package is not annotated.
# mypy: disallow-untyped-calls=False

from __future__ import annotations

from typing import Any

from benchmarks.drivers import _common


def main() -> None:
    args = _common.parse_args()
    try:
        import kubernetes
        from kubernetes import client, config
        from kubernetes.informer import ADDED, ERROR, MODIFIED, SharedInformer
    except ImportError as exc:
        _common.emit({"unavailable": f"kubernetes.informer is not importable: {exc}"})
        return
    if args.mode != "run":
        _common.emit({"unavailable": f"mode {args.mode} is measured for other contenders"})
        return
    if args.transform != "none":
        _common.emit({"unavailable": "SharedInformer has no transform option"})
        return

    recorder = _common.Recorder(args, "kubernetes", f"kubernetes {kubernetes.__version__}")
    if args.is_url:
        configuration = client.Configuration()
        configuration.host = args.server
        api_client = client.ApiClient(configuration)
    else:
        api_client = config.new_client_from_config(config_file=args.server)
    informer = SharedInformer(client.CoreV1Api(api_client).list_pod_for_all_namespaces)
    added = [0]

    def on_added(pod: Any) -> None:
        _ = pod.metadata.name
        added[0] += 1
        if added[0] == args.pods:
            recorder.mark_synced()

    def on_modified(pod: Any) -> None:
        # The first list fires ADDED only, so every MODIFIED is a watch event.
        _ = pod.metadata.name
        recorder.count_event()

    informer.add_event_handler(ADDED, on_added)
    informer.add_event_handler(MODIFIED, on_modified)
    informer.add_event_handler(ERROR, lambda exc: recorder.fail(f"informer error: {exc!r}"))

    recorder.start()
    informer.start()
    recorder.wait(lambda: len(informer.cache.list_keys()))
    informer.stop()
    recorder.finish()


if __name__ == "__main__":
    main()
