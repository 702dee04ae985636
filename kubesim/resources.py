"""Registry of served resource types (built-in and CRD-backed)."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: list[str] = field(default_factory=list)
    status_subresource: bool = False
    has_generation: bool = False
    custom: bool = False
    categories: list[str] = field(default_factory=list)
    validator: Any = None  # for custom resources: compiled jsonschema validator
    crd_name: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """Storage key, shared by all versions of a resource."""
        return (self.group, self.plural)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def gr(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def verbs(self) -> list[str]:
        if self.plural == "namespaces":
            return ["create", "delete", "get", "list", "patch", "update", "watch"]
        return list(ALL_VERBS)


BUILTINS = [
    ResourceType("", "v1", "namespaces", "Namespace", False, "namespace", ["ns"], True),
    ResourceType("", "v1", "secrets", "Secret", True, "secret"),
    ResourceType("", "v1", "configmaps", "ConfigMap", True, "configmap", ["cm"]),
    ResourceType("", "v1", "services", "Service", True, "service", ["svc"], True, categories=["all"]),
    ResourceType("", "v1", "pods", "Pod", True, "pod", ["po"], True, categories=["all"]),
    ResourceType(
        "",
        "v1",
        "persistentvolumeclaims",
        "PersistentVolumeClaim",
        True,
        "persistentvolumeclaim",
        ["pvc"],
        True,
    ),
    ResourceType("", "v1", "events", "Event", True, "event", ["ev"]),
    ResourceType("", "v1", "serviceaccounts", "ServiceAccount", True, "serviceaccount", ["sa"]),
    ResourceType(
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        True,
        "statefulset",
        ["sts"],
        True,
        True,
        categories=["all"],
    ),
    ResourceType("networking.k8s.io", "v1", "ingresses", "Ingress", True, "ingress", ["ing"], True, True),
    # Stored and validated only (no controller plays them): enough to `kubectl apply` an application
    # such as Tenter's own deploy/ manifests.
    ResourceType(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        True,
        "deployment",
        ["deploy"],
        True,
        True,
        categories=["all"],
    ),
    ResourceType("batch", "v1", "jobs", "Job", True, "job", [], True, True, categories=["all"]),
    ResourceType(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        True,
        "horizontalpodautoscaler",
        ["hpa"],
        True,
        categories=["all"],
    ),
    ResourceType(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "PodDisruptionBudget",
        True,
        "poddisruptionbudget",
        ["pdb"],
        True,
        True,
    ),
    ResourceType(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "NetworkPolicy",
        True,
        "networkpolicy",
        ["netpol"],
        False,
        True,
    ),
    ResourceType("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False, "ingressclass"),
    ResourceType("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, "storageclass", ["sc"]),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "CustomResourceDefinition",
        False,
        "customresourcedefinition",
        ["crd", "crds"],
        True,
        True,
    ),
]

# Groups served that have no stored resources (only special endpoints).
SPECIAL_GROUPS = {"authorization.k8s.io": ["v1"]}


class Registry:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.types: dict[tuple[str, str, str], ResourceType] = {}
        # group -> ordered versions (preferred first)
        self.groups: dict[str, list[str]] = {}
        for rt in BUILTINS:
            self.add(rt)

    def add(self, rt: ResourceType, preferred: bool = False) -> None:
        with self.lock:
            self.types[(rt.group, rt.version, rt.plural)] = rt
            versions = self.groups.setdefault(rt.group, [])
            if rt.version not in versions:
                if preferred:
                    versions.insert(0, rt.version)
                else:
                    versions.append(rt.version)

    def remove_crd(self, crd_name: str) -> list[ResourceType]:
        with self.lock:
            gone = [rt for rt in self.types.values() if rt.crd_name == crd_name]
            for rt in gone:
                del self.types[(rt.group, rt.version, rt.plural)]
            for rt in gone:
                if not any(t.group == rt.group and t.version == rt.version for t in self.types.values()):
                    versions = self.groups.get(rt.group, [])
                    if rt.version in versions:
                        versions.remove(rt.version)
                    if not versions:
                        self.groups.pop(rt.group, None)
            return gone

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self.types.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for rt in list(self.types.values()):
            if rt.group == group and rt.version == version and rt.kind == kind:
                return rt
        return None

    def any_version(self, group: str, plural: str) -> ResourceType | None:
        for v in self.groups.get(group, []):
            rt = self.types.get((group, v, plural))
            if rt:
                return rt
        return None

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in list(self.types.values()) if rt.group == group and rt.version == version]

    def all_keys(self) -> set[tuple[str, str]]:
        return {rt.key for rt in list(self.types.values())}
