"""Deterministic, realistic pods for the replay server.

A pod here looks like one a Deployment creates in a busy cluster: labels and annotations, an
owner reference to its ReplicaSet, two containers with env, probes and mounts, three volumes,
a full status and the `managedFields` the apiserver keeps (about 1 KB of the whole).
Serialised with orjson one weighs about 4.5 KB.

Every pod is built from a seed alone, so two processes (the server and the harness) agree on
the bytes without sharing them. The resource version is left as a placeholder of fixed text,
so a watch event is made by replacing it in the serialised bytes instead of re-encoding.
"""

from __future__ import annotations

import hashlib
import random
from typing import Any

import orjson

#: Stands for metadata.resourceVersion in serialised pods; replaced per list item or event.
RV_PLACEHOLDER = "@@RV@@"

_NAMESPACES = [f"team-{name}" for name in (
    "payments", "search", "checkout", "identity", "ledger", "catalog", "mail", "media",
    "ads", "edge", "risk", "notify", "infra", "data", "ml", "docs",
)]
_APPS = ["api", "worker", "gateway", "cron", "indexer", "renderer", "cache", "scheduler"]
_IMAGES = ["registry.example.com/{app}:v1.{minor}.{patch}", "ghcr.io/example/{app}:{minor}"]
_CREATED = "2026-11-0{day}T{hour:02d}:{minute:02d}:{second:02d}Z"


def _digest(*parts: object) -> str:
    text = "/".join(str(part) for part in parts)
    return hashlib.sha256(text.encode()).hexdigest()


def _uid(seed: int, index: int, kind: str) -> str:
    h = _digest(seed, index, kind)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def _timestamp(rng: random.Random) -> str:
    return _CREATED.format(
        day=rng.randint(1, 9), hour=rng.randint(0, 23),
        minute=rng.randint(0, 59), second=rng.randint(0, 59),
    )


def _env(rng: random.Random, app: str) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "APP_NAME", "value": app},
        {"name": "LOG_LEVEL", "value": rng.choice(["info", "debug", "warn"])},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"apiVersion": "v1",
                                                        "fieldPath": "metadata.name"}}},
        {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": f"{app}-db",
                                                                "key": "url"}}},
    ]
    return env


def _container(rng: random.Random, app: str, name: str, port: int) -> dict[str, Any]:
    image = rng.choice(_IMAGES).format(
        app=app, minor=rng.randint(0, 40), patch=rng.randint(0, 9),
    )
    probe = {
        "httpGet": {"path": "/healthz", "port": port, "scheme": "HTTP"},
        "initialDelaySeconds": 5, "periodSeconds": 10, "timeoutSeconds": 1,
        "successThreshold": 1, "failureThreshold": 3,
    }
    return {
        "name": name,
        "image": image,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": _env(rng, app),
        "resources": {
            "limits": {"cpu": f"{rng.choice([500, 1000, 2000])}m", "memory": "512Mi"},
            "requests": {"cpu": f"{rng.choice([50, 100, 250])}m", "memory": "128Mi"},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/app", "readOnly": True},
            {"name": "kube-api-access", "readOnly": True,
             "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
        ],
        "readinessProbe": probe,
        "imagePullPolicy": "IfNotPresent",
    }


def _sidecar(rng: random.Random) -> dict[str, Any]:
    # A mesh proxy: many pods carry one, and it is lean next to the application container.
    return {
        "name": "proxy",
        "image": f"registry.example.com/mesh-proxy:1.{rng.randint(20, 28)}.0",
        "ports": [{"name": "mesh", "containerPort": 15001, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "10m", "memory": "40Mi"}},
        "imagePullPolicy": "IfNotPresent",
    }


def _managed_fields(created: str) -> list[dict[str, Any]]:
    # The apiserver records which manager owns which field; this is what a transform that
    # drops managedFields saves, so its size matches a real Deployment-made pod.
    spec_fields = {
        "f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:app": {}, "f:team": {},
                                                          "f:pod-template-hash": {}},
                       "f:ownerReferences": {".": {}, 'k:{"uid":"owner"}': {}}},
        "f:spec": {"f:containers": {'k:{"name":"app"}': {
            ".": {}, "f:env": {".": {}}, "f:image": {}, "f:imagePullPolicy": {},
            "f:ports": {".": {}}, "f:resources": {".": {}, "f:limits": {}, "f:requests": {}},
        }}, "f:dnsPolicy": {}, "f:restartPolicy": {}, "f:schedulerName": {},
            "f:volumes": {".": {}}},
    }
    status_fields = {"f:status": {
        "f:conditions": {'k:{"type":"Ready"}': {".": {}, "f:lastProbeTime": {},
                                                "f:lastTransitionTime": {}, "f:status": {},
                                                "f:type": {}}},
        "f:containerStatuses": {}, "f:hostIP": {}, "f:phase": {}, "f:podIP": {},
        "f:podIPs": {".": {}}, "f:startTime": {},
    }}
    return [
        {"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
         "time": created, "fieldsType": "FieldsV1", "fieldsV1": spec_fields},
        {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": created,
         "fieldsType": "FieldsV1", "fieldsV1": status_fields, "subresource": "status"},
    ]


def _status(rng: random.Random, containers: list[dict[str, Any]], created: str,
             node_ip: str, pod_ip: str) -> dict[str, Any]:
    conditions = [
        {"type": kind, "status": "True",
         "lastTransitionTime": created}
        for kind in ("Initialized", "Ready", "ContainersReady", "PodScheduled")
    ]
    statuses = [
        {"name": c["name"], "ready": True, "restartCount": rng.randint(0, 3),
         "started": True, "image": c["image"], "imageID": f"sha256:{_digest(c['image'])}",
         "containerID": f"containerd://{_digest(c['name'], pod_ip)}",
         "state": {"running": {"startedAt": created}}}
        for c in containers
    ]
    return {
        "phase": "Running", "conditions": conditions, "hostIP": node_ip,
        "podIP": pod_ip, "podIPs": [{"ip": pod_ip}],
        "startTime": created, "containerStatuses": statuses, "qosClass": "Burstable",
    }


def make_pod(seed: int, index: int) -> dict[str, Any]:
    """Return pod number `index` of the cluster described by `seed`."""
    rng = random.Random(seed * 1_000_003 + index)
    app = rng.choice(_APPS)
    namespace = _NAMESPACES[index % len(_NAMESPACES)]
    template_hash = _digest(seed, app, namespace)[:10]
    name = f"{app}-{template_hash}-{index:06d}"
    created = _timestamp(rng)
    node = f"node-{rng.randint(1, 400):03d}"
    node_ip = f"10.{rng.randint(0, 3)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    pod_ip = f"10.{rng.randint(64, 127)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
    containers = [_container(rng, app, "app", 8080), _sidecar(rng)]

    metadata = {
        "name": name, "generateName": f"{app}-{template_hash}-", "namespace": namespace,
        "uid": _uid(seed, index, "pod"), "resourceVersion": RV_PLACEHOLDER,
        "creationTimestamp": created,
        "labels": {"app": app, "team": namespace.removeprefix("team-"),
                   "pod-template-hash": template_hash, "tier": rng.choice(["web", "batch"]),
                   "version": f"v1.{rng.randint(0, 40)}"},
        "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": "9090",
                        "checksum/config": _digest(seed, app, "config")},
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                             "name": f"{app}-{template_hash}", "controller": True,
                             "blockOwnerDeletion": True, "uid": _uid(seed, 0, app)}],
        "managedFields": _managed_fields(created),
    }
    spec = {
        "containers": containers,
        "volumes": [
            {"name": "config", "configMap": {"name": f"{app}-config", "defaultMode": 420}},
            {"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt",
                               "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            ]}},
        ],
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default", "nodeName": node, "schedulerName": "default-scheduler",
    }
    status = _status(rng, containers, created, node_ip, pod_ip)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec,
            "status": status}


def pod_bytes(seed: int, index: int) -> bytes:
    """Serialised pod with `RV_PLACEHOLDER` where its resource version goes."""
    return orjson.dumps(make_pod(seed, index))


def with_rv(template: bytes, resource_version: int) -> bytes:
    """Put a concrete resource version into a serialised pod template."""
    return template.replace(RV_PLACEHOLDER.encode(), str(resource_version).encode(), 1)
