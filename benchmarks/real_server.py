"""Initial sync against a real kube-apiserver (`--server real`).

It uses the project's `rx_informer.testing.control_plane.ControlPlane` (etcd and
kube-apiserver on loopback). When that module cannot be imported, the workload is skipped and
the report says why. The pods are the replay server's, created through the API in their
namespaces, so the bytes on the wire are alike apart from what the apiserver adds.

Only rx_informer and client-go run here; the floor speaks plain HTTP to the replay server
only, so the figure is rx_informer's time over client-go's, paired per run.
"""

# Imports inside functions are deliberate: a library that cannot be imported is reported,
# not fatal.
# ruff: noqa: PLC0415
# The kubernetes package is not annotated.
# mypy: disallow-untyped-calls=False

from __future__ import annotations

import concurrent.futures
import logging
from typing import Any

from benchmarks import pods as pod_factory
from benchmarks.workloads import Case, Context, progress

logger = logging.getLogger(__name__)

#: Concurrent creations; the apiserver and etcd share the machine's two cores with us.
CREATE_WORKERS = 8


def _creatable(seed: int, index: int) -> dict[str, Any]:
    # What a client may send: no status, and none of the fields the server owns.
    pod = pod_factory.make_pod(seed, index)
    metadata = pod["metadata"]
    for field in ("uid", "resourceVersion", "creationTimestamp", "managedFields",
                  "ownerReferences", "generateName"):
        metadata.pop(field, None)
    pod.pop("status", None)
    return pod


def _create_pods(kubeconfig: str, count: int, seed: int) -> None:
    from kubernetes import client, config

    api = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
    bodies = [_creatable(seed, index) for index in range(count)]
    for namespace in sorted({body["metadata"]["namespace"] for body in bodies}):
        # The client serialises plain dicts as they are; its annotations name the models.
        api.create_namespace({"metadata": {"name": namespace}})  # type: ignore[arg-type]

    def create(body: dict[str, Any]) -> None:
        api.create_namespaced_pod(body["metadata"]["namespace"], body)  # type: ignore[arg-type]

    with concurrent.futures.ThreadPoolExecutor(CREATE_WORKERS) as pool:
        list(pool.map(create, bodies))


def real(ctx: Context) -> dict[str, Any]:
    """Start the control plane, create the pods, time rx_informer's and client-go's sync."""
    try:
        from rx_informer.testing.control_plane import ControlPlane
    except Exception as exc:
        reason = f"rx_informer.testing.control_plane is not importable: {exc!r}"
        progress(f"[real] skipped: {reason}")
        return {"skipped": reason}

    from benchmarks import harness

    count = ctx.sizes.real_pods
    cases = [Case(name, name) for name in ("rx_informer", "client-go") if ctx.wanted(Case(
        name, name))]
    results: dict[str, list[dict[str, Any]]] = {case.label: [] for case in cases}
    progress("[real] starting etcd and kube-apiserver (a first start builds them: minutes)")
    with ControlPlane() as plane:
        kubeconfig = str(plane.kubeconfig_path)
        progress(f"[real] creating {count} pods")
        _create_pods(kubeconfig, count, ctx.seed)
        for run in range(ctx.sizes.runs):
            for case in cases:
                args = [kubeconfig, "0", "run", f"pods={count}", f"timeout={ctx.sizes.timeout}"]
                log = ctx.log_dir / "real" / f"{case.label}-{run}.log"
                result = harness.run_driver(ctx.contenders[case.contender], args,
                                            ctx.sizes.timeout + 60, log)
                results[case.label].append(result)
                synced = result.get("synced_s")
                shown = f"synced {synced:.3f} s" if synced is not None else str(result)[:160]
                progress(f"[real {count} pods] run {run + 1}/{ctx.sizes.runs} {case.label}: "
                         f"{shown}")
    return {"pods": count, "cases": results}
