from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml
from kubernetes import client, config


@dataclass
class Clients:
    api: client.ApiClient
    core: client.CoreV1Api
    apps: client.AppsV1Api
    net: client.NetworkingV1Api
    custom: client.CustomObjectsApi
    ext: client.ApiextensionsV1Api
    authz: client.AuthorizationV1Api


def clients_from_kubeconfig(text: str) -> Clients:
    """The way the app does it: a kubeconfig string -> official client."""
    api = config.new_client_from_config_dict(yaml.safe_load(text))
    return Clients(
        api,
        client.CoreV1Api(api),
        client.AppsV1Api(api),
        client.NetworkingV1Api(api),
        client.CustomObjectsApi(api),
        client.ApiextensionsV1Api(api),
        client.AuthorizationV1Api(api),
    )


def wait_for(fn: Callable[[], Any], timeout: float = 5.0, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except Exception as e:
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last: {last!r})")


def sts_body(
    name: str,
    image: str = "nginx:1.27",
    annotations: dict[str, str] | None = None,
    replicas: int = 1,
    claims: bool = True,
) -> dict[str, Any]:
    tmeta: dict[str, Any] = {"labels": {"app": name}}
    if annotations:
        tmeta["annotations"] = annotations
    spec: dict[str, Any] = {
        "replicas": replicas,
        "serviceName": name,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": tmeta,
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": image,
                        "ports": [{"containerPort": 3000, "name": "app"}],
                        "env": [{"name": "A", "value": "1"}],
                    }
                ]
            },
        },
    }
    if claims:
        spec["volumeClaimTemplates"] = [
            {
                "metadata": {"name": "home"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}},
            }
        ]
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name}, "spec": spec}


def cluster_v1(name: str, stop: bool | None = None) -> dict[str, Any]:
    comp: dict[str, Any] = {
        "name": "postgresql",
        "serviceVersion": "16.4.0",
        "replicas": 1,
        "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}},
        "volumeClaimTemplates": [
            {
                "name": "data",
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "3Gi"}}},
            }
        ],
    }
    if stop is not None:
        comp["stop"] = stop
    return {
        "apiVersion": "apps.kubeblocks.io/v1",
        "kind": "Cluster",
        "metadata": {"name": name},
        "spec": {
            "terminationPolicy": "Delete",
            "clusterDef": "postgresql",
            "topology": "replication",
            "componentSpecs": [comp],
        },
    }


def cluster_v1alpha1(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps.kubeblocks.io/v1alpha1",
        "kind": "Cluster",
        "metadata": {"name": name},
        "spec": {
            "terminationPolicy": "Delete",
            "componentSpecs": [
                {
                    "name": "postgresql",
                    "componentDef": "postgresql-14",
                    "replicas": 1,
                    "volumeClaimTemplates": [
                        {
                            "name": "data",
                            "spec": {
                                "accessModes": ["ReadWriteOnce"],
                                "resources": {"requests": {"storage": "3Gi"}},
                            },
                        }
                    ],
                }
            ],
        },
    }


def raw(k: Clients, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
    """A request through the official ApiClient (auth, TLS) returning decoded JSON."""
    headers = {"Accept": "application/json"}
    if body is not None:
        headers["Content-Type"] = content_type
    return k.api.call_api(
        path,
        method,
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
        response_types_map={200: "object", 201: "object", 202: "object"},
        _return_http_data_only=True,
    )
