"""Watch pods and print every event and every sync as it arrives.

    python -m rx_informer.demo                      # a local control plane, scripted changes
    python -m rx_informer.demo --kubeconfig PATH    # watch that cluster (read only)

Without ``--kubeconfig`` or ``--context``, the demo starts the local control plane from
``rx_informer.testing`` (building it from Go modules the first time, with a progress line
per step), creates, updates and deletes a few pods there, and exits once the informer has
seen all of it. Against a real cluster it only watches, for ``--seconds``.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from rx_informer import Cluster, Event, EventType, InformerError, InformerFactory

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return _run(args)
    except InformerError as exc:
        _say(f"error: {exc}")
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.kubeconfig or args.context:
        cluster = Cluster.from_kubeconfig(args.kubeconfig, args.context)
        _say(f"watching pods on {cluster.server} for {args.seconds} s (read only)")
        with InformerFactory(cluster) as factory:
            subscription = _print_events(factory, args.namespace)
            time.sleep(args.seconds)
            subscription()
        return 0

    with _local_control_plane() as kubeconfig:
        cluster = Cluster.from_kubeconfig(kubeconfig)
        with InformerFactory(cluster) as factory:
            seen = _Seen()
            stop = _print_events(factory, "demo", seen)
            _scripted_changes(kubeconfig, seen)
            stop()
        cluster.close()
    _say("done")
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m rx_informer.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kubeconfig", help="watch the cluster of this kubeconfig instead")
    parser.add_argument("--context", help="kubeconfig context (implies a real cluster)")
    parser.add_argument("--namespace", help="only this namespace (real cluster)")
    parser.add_argument("--seconds", type=float, default=30.0,
                        help="how long to watch a real cluster (default 30)")
    return parser.parse_args(argv)


def _say(message: str) -> None:
    print(f"[demo] {message}", file=sys.stderr, flush=True)


class _Seen:
    """Names whose events the demo waits for, so it exits when everything arrived."""

    def __init__(self) -> None:
        self.events: list[tuple[EventType, str]] = []
        self._changed = threading.Condition()

    def add(self, kind: EventType, name: str) -> None:
        with self._changed:
            self.events.append((kind, name))
            self._changed.notify_all()

    def wait_for(self, kind: EventType, name: str, timeout: float = 30.0) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: (kind, name) in self.events, timeout):
                raise TimeoutError(f"the informer did not report {kind.value} {name}")


def _print_events(
    factory: InformerFactory, namespace: str | None, seen: _Seen | None = None
) -> Callable[[], None]:
    pods = factory.informer("v1", "pods", namespace)

    def show(event: Event) -> None:
        if event.type is EventType.SYNCED and event.snapshot is not None:
            print(f"SYNCED    {len(event.snapshot)} pods at resourceVersion "
                  f"{event.snapshot.resource_version}", flush=True)
        elif event.type is EventType.ERROR:
            print(f"ERROR     {event.error}", flush=True)
        elif event.object is not None:
            metadata = event.object["metadata"]
            phase = (event.object.get("status") or {}).get("phase", "")
            print(f"{event.type.value:<9} {metadata.get('namespace')}/{metadata['name']} "
                  f"rv={metadata['resourceVersion']} {phase}", flush=True)
        if seen is not None and event.object is not None:
            seen.add(event.type, event.object["metadata"]["name"])
        elif seen is not None:
            seen.add(event.type, "")

    return pods.events.subscribe(show).dispose


@contextlib.contextmanager
def _local_control_plane() -> Iterator[str]:
    try:
        from rx_informer.testing.control_plane import ControlPlane  # noqa: PLC0415
    except ImportError as exc:
        raise SystemExit(
            f"the local control plane needs the testing extra ({exc}); "
            "run: pip install 'rx-informer[testing]', or pass --kubeconfig"
        ) from exc

    _say("starting a local control plane (etcd + kube-apiserver)")
    with ControlPlane(progress=_say) as plane:
        _say(f"control plane ready at {plane.server}")
        yield str(plane.kubeconfig_path)
    _say("control plane stopped")


def _scripted_changes(kubeconfig: str, seen: _Seen) -> None:
    """Create, update and delete pods, each time waiting for the informer to report it."""
    from kubernetes import client, config  # noqa: PLC0415

    load: Any = config.new_client_from_config
    api = client.CoreV1Api(load(config_file=kubeconfig))
    api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="demo")))
    seen.wait_for(EventType.SYNCED, "")

    for name in ("web-1", "web-2", "worker"):
        api.create_namespaced_pod("demo", _pod(name))
        seen.wait_for(EventType.ADDED, name)
    api.patch_namespaced_pod("web-1", "demo", {"metadata": {"labels": {"tier": "front"}}})
    seen.wait_for(EventType.MODIFIED, "web-1")
    for name in ("web-2", "worker"):
        api.delete_namespaced_pod(name, "demo", grace_period_seconds=0)
        seen.wait_for(EventType.DELETED, name)


def _pod(name: str) -> Any:
    from kubernetes import client  # noqa: PLC0415

    return client.V1Pod(
        metadata=client.V1ObjectMeta(name=name, labels={"app": name.split("-", maxsplit=1)[0]}),
        spec=client.V1PodSpec(
            containers=[client.V1Container(name="main", image="registry.invalid/demo:1")]
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
