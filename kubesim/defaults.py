"""A subset of apiserver defaulting, so stored objects look like a real cluster's."""

from __future__ import annotations

import base64
import itertools
import threading
from typing import Any

from kubesim.resources import ResourceType

_ip_lock = threading.Lock()
_ip_counter = itertools.count(10)


def _cluster_ip() -> str:
    with _ip_lock:
        n = next(_ip_counter)
    return f"10.96.{(n // 250) % 250}.{n % 250 + 1}"


def _container(c: dict[str, Any]) -> None:
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    image = str(c.get("image") or "")
    tail = image.rsplit("/", 1)[-1]
    if "imagePullPolicy" not in c:
        latest = "@" not in tail and (":" not in tail or tail.endswith(":latest"))
        c["imagePullPolicy"] = "Always" if latest else "IfNotPresent"
    c.setdefault("resources", {})
    for p in c.get("ports") or []:
        if isinstance(p, dict):
            p.setdefault("protocol", "TCP")


def pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for key in ("containers", "initContainers"):
        for c in spec.get(key) or []:
            if isinstance(c, dict):
                _container(c)


def apply_defaults(rt: ResourceType, obj: dict[str, Any], creating: bool) -> None:
    """Mutates obj in place (obj must be a private copy)."""
    if rt.custom:
        return
    p = rt.plural
    if p == "secrets":
        sd = obj.pop("stringData", None)
        if isinstance(sd, dict):
            data = dict(obj.get("data") or {})
            for k, v in sd.items():
                data[k] = base64.b64encode(str(v).encode()).decode()
            obj["data"] = data
        obj.setdefault("type", "Opaque")
    elif p == "namespaces":
        md = obj["metadata"]
        md["labels"] = dict(md.get("labels") or {}, **{"kubernetes.io/metadata.name": md["name"]})
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        if creating:
            obj["status"] = {"phase": "Active"}
    elif p == "services":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        if spec["type"] != "ExternalName":
            if creating and not spec.get("clusterIP"):
                spec["clusterIP"] = _cluster_ip()
            if spec.get("clusterIP") and "clusterIPs" not in spec:
                spec["clusterIPs"] = [spec["clusterIP"]]
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
            spec.setdefault("internalTrafficPolicy", "Cluster")
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                if "port" in port:
                    port.setdefault("targetPort", port["port"])
        if creating:
            obj["status"] = {"loadBalancer": {}}
    elif p == "statefulsets":
        if creating:
            obj["status"] = {"replicas": 0, "availableReplicas": 0}
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("podManagementPolicy", "OrderedReady")
        spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault(
            "persistentVolumeClaimRetentionPolicy", {"whenDeleted": "Retain", "whenScaled": "Retain"}
        )
        tmpl = spec.get("template")
        if isinstance(tmpl, dict) and isinstance(tmpl.get("spec"), dict):
            pod_spec(tmpl["spec"])
        for vct in spec.get("volumeClaimTemplates") or []:
            if isinstance(vct, dict):
                vct.setdefault("apiVersion", "v1")
                vct.setdefault("kind", "PersistentVolumeClaim")
                if isinstance(vct.get("spec"), dict):
                    vct["spec"].setdefault("volumeMode", "Filesystem")
    elif p == "ingresses":
        if creating:
            obj["status"] = {"loadBalancer": {}}
    elif p == "pods":
        if isinstance(obj.get("spec"), dict):
            pod_spec(obj["spec"])
        if creating:
            obj["status"] = dict(
                obj.get("status") or {}, phase=(obj.get("status") or {}).get("phase", "Pending")
            )
    elif p == "persistentvolumeclaims":
        if isinstance(obj.get("spec"), dict):
            obj["spec"].setdefault("volumeMode", "Filesystem")
        if creating:
            obj["status"] = {"phase": "Pending"}
