"""Simulated controllers: StatefulSets/pods/PVCs, KubeBlocks Clusters and OpsRequests."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import secrets
import string
import threading
import time
from typing import Any

from kubesim.api import Api
from kubesim.errors import ApiError
from kubesim.messages import clone, now_ts
from kubesim.resources import ResourceType
from kubesim.runtime import Runtime
from kubesim.store import Obj
from kubesim.validation import quantity

log = logging.getLogger("kubesim")

STS_KEY = ("apps", "statefulsets")
POD_KEY = ("", "pods")
PVC_KEY = ("", "persistentvolumeclaims")
CLUSTER_KEY = ("apps.kubeblocks.io", "clusters")
OPS_KEYS = [("apps.kubeblocks.io", "opsrequests"), ("operations.kubeblocks.io", "opsrequests")]
CLUSTER_FINALIZER = "cluster.kubeblocks.io/finalizer"
FAIL_ANNOTATION = "kubesim.dev/fail"
CLUSTER_FAILURES = {"Failed", "Abnormal"}
OPS_DONE = {"Succeed", "Failed", "Cancelled", "Aborted"}


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:10]


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def failure_mode(pod: Obj) -> tuple[str, str] | None:
    """(reason, container image) if the pod is meant to fail, from annotation or image name."""
    ann = (pod.get("metadata") or {}).get("annotations") or {}
    containers = (pod.get("spec") or {}).get("containers") or []
    image = str(containers[0].get("image", "")) if containers else ""
    mode = ann.get(FAIL_ANNOTATION)
    if mode in ("ImagePullBackOff", "ErrImagePull", "CrashLoopBackOff", "OOMKilled"):
        return ("ImagePullBackOff" if mode == "ErrImagePull" else mode), image
    for c in containers:
        img = str(c.get("image", ""))
        if "kubesim-fail-imagepull" in img:
            return "ImagePullBackOff", img
        if "kubesim-fail-crashloop" in img:
            return "CrashLoopBackOff", img
    return None


class Simulator:
    def __init__(
        self, api: Api, ready_after: float = 2.0, tick: float = 0.05, runtime: Runtime | None = None
    ) -> None:
        self.api = api
        self.runtime = runtime  # runs pods/exec commands; set up once per pod when it reaches Running
        api.runtime = runtime
        self.ready_after = ready_after
        self.tick_interval = tick
        self.started: dict[str, float] = {}  # pod uid -> start time
        self.events_done: set[tuple[str, str]] = set()  # (pod uid, reason)
        self.since: dict[tuple[str, str], float] = {}  # (uid, phase) -> first seen
        # Objects already converged, by uid -> the signature they had then: a tick skips them until
        # they (or, for a StatefulSet, its pods) change. Keeps a tick O(changed) instead of O(all).
        self._settled_sts: dict[str, tuple[Any, ...]] = {}
        self._settled_pods: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        api.create_hooks.append(self._admission)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="kubesim-simulator", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=2)

    def _loop(self) -> None:
        while not self._stop.wait(self.tick_interval):
            try:
                self.tick()
            except Exception:  # keep simulating whatever happens
                log.exception("kubesim: simulator tick failed")

    def _admission(self, rt: ResourceType, obj: Obj) -> None:
        if rt.key == CLUSTER_KEY:
            fins = obj["metadata"].setdefault("finalizers", [])
            if CLUSTER_FINALIZER not in fins:
                fins.append(CLUSTER_FINALIZER)

    def tick(self) -> None:
        with self.api.write_lock:
            now = time.monotonic()
            self._statefulsets(now)
            self._pods(now)
            self._pvcs()
            self._opsrequests(now)
            self._clusters(now)

    # ------------------------------------------------------------------ helpers
    def _rt(self, obj: Obj) -> ResourceType:
        rt = self.api.registry.by_kind(obj["apiVersion"], obj["kind"])
        if rt is None:
            group = obj["apiVersion"].rpartition("/")[0]
            rt = self.api.registry.any_version(group, obj["kind"].lower() + "s")
        assert rt is not None, obj["apiVersion"]
        return rt

    def _write(self, old: Obj, new: Obj) -> Obj:
        ns = old["metadata"].get("namespace", "")
        return self.api._commit_update(self._rt(old), ns, old, new, False)

    def _set_status(self, obj: Obj, status: dict[str, Any]) -> Obj:
        if obj.get("status") == status:
            return obj
        new = dict(obj)
        new["status"] = status
        new["metadata"] = dict(obj["metadata"])
        return self._write(obj, new)

    def _create(self, group: str, plural: str, ns: str, body: Obj) -> Obj | None:
        rt = self.api.registry.any_version(group, plural)
        if rt is None:
            return None
        try:
            return self.api.create(rt, ns, body, validate=False)
        except ApiError as e:
            if e.code not in (409, 403, 404):
                log.warning("kubesim: simulator could not create %s: %s", plural, e.message)
            return None

    def _delete(self, group: str, plural: str, ns: str, name: str) -> None:
        rt = self.api.registry.any_version(group, plural)
        if rt is None:
            return
        with contextlib.suppress(ApiError):
            self.api.delete(rt, ns, name, {})

    def _since(self, uid: str, phase: str, now: float) -> float:
        return self.since.setdefault((uid, phase), now)

    # ------------------------------------------------------------ StatefulSets
    def _sts_signature(self, sts: Obj) -> tuple[Any, ...]:
        md = sts["metadata"]
        replicas = int((sts.get("spec") or {}).get("replicas", 1) or 0)
        seen = int((sts.get("status") or {}).get("replicas") or 0)
        pods = [
            self.api.store.get(POD_KEY, md["namespace"], f"{md['name']}-{i}")
            for i in range(max(replicas, seen))
        ]
        return (md["resourceVersion"], *(p["metadata"]["resourceVersion"] if p else None for p in pods))

    def _statefulsets(self, now: float) -> None:
        items, _ = self.api.store.list_objects(STS_KEY, None)
        live = set()
        for sts in items:
            md = sts["metadata"]
            live.add(md["uid"])
            if md.get("deletionTimestamp"):
                continue
            if self._settled_sts.get(md["uid"]) == self._sts_signature(sts):
                continue
            self._reconcile_sts(sts, now)
            current = self.api.store.get(STS_KEY, md["namespace"], md["name"])
            if current is not None:
                self._settled_sts[md["uid"]] = self._sts_signature(current)
        for uid in set(self._settled_sts) - live:
            del self._settled_sts[uid]

    def _reconcile_sts(self, sts: Obj, now: float) -> None:
        md, spec = sts["metadata"], sts.get("spec") or {}
        ns, name = md["namespace"], md["name"]
        replicas = int(spec.get("replicas", 1) or 0)
        template = spec.get("template") or {}
        revision = f"{name}-{_hash(template)}"
        store = self.api.store
        for i in range(replicas):
            pod_name = f"{name}-{i}"
            pod = store.get(POD_KEY, ns, pod_name)
            if (
                pod is not None
                and pod["metadata"].get("labels", {}).get("controller-revision-hash") != revision
            ):
                if pod["metadata"].get("deletionTimestamp") is None:
                    self._delete("", "pods", ns, pod_name)
                pod = store.get(POD_KEY, ns, pod_name)
            if pod is None:
                for vct in spec.get("volumeClaimTemplates") or []:
                    self._ensure_pvc(sts, vct, i)
                self._create("", "pods", ns, self._pod_for(sts, i, revision))
        # scale down: remove pods with ordinal >= replicas (PVCs are kept)
        previous = int((sts.get("status") or {}).get("replicas") or 0)
        for ordinal in range(replicas, max(previous, replicas + 1)):
            pod = store.get(POD_KEY, ns, f"{name}-{ordinal}")
            if pod is not None and any(
                ref.get("uid") == md["uid"] for ref in pod["metadata"].get("ownerReferences") or []
            ):
                self._delete("", "pods", ns, pod["metadata"]["name"])
        found = [store.get(POD_KEY, ns, f"{name}-{i}") for i in range(replicas)]
        pods = [p for p in found if p is not None]
        ready = sum(1 for p in pods if _pod_ready(p))
        updated = sum(
            1 for p in pods if p["metadata"].get("labels", {}).get("controller-revision-hash") == revision
        )
        status: dict[str, Any] = {"observedGeneration": md.get("generation", 1), "replicas": len(pods)}
        if ready:
            status["readyReplicas"] = ready
        if updated:
            status["currentReplicas"] = updated
            status["updatedReplicas"] = updated
        status["availableReplicas"] = ready
        status["currentRevision"] = revision
        status["updateRevision"] = revision
        status["collisionCount"] = 0
        self._set_status(sts, status)

    def _ensure_pvc(self, sts: Obj, vct: Obj, ordinal: int) -> None:
        md = sts["metadata"]
        ns = md["namespace"]
        claim = (vct.get("metadata") or {}).get("name", "data")
        pvc_name = f"{claim}-{md['name']}-{ordinal}"
        if self.api.store.get(PVC_KEY, ns, pvc_name) is not None:
            return
        labels = dict(((sts.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})
        labels.update((vct.get("metadata") or {}).get("labels") or {})
        body = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": pvc_name, "namespace": ns, "labels": labels},
            "spec": clone(vct.get("spec") or {}),
        }
        self._create("", "persistentvolumeclaims", ns, body)

    def _pod_for(self, sts: Obj, ordinal: int, revision: str) -> Obj:
        md, spec = sts["metadata"], sts.get("spec") or {}
        template = clone(spec.get("template") or {})
        tmd = template.get("metadata") or {}
        pod_name = f"{md['name']}-{ordinal}"
        labels = dict(tmd.get("labels") or {})
        labels.update(
            {
                "controller-revision-hash": revision,
                "statefulset.kubernetes.io/pod-name": pod_name,
                "apps.kubernetes.io/pod-index": str(ordinal),
            }
        )
        pod_spec = template.get("spec") or {}
        pod_spec.setdefault("hostname", pod_name)
        if spec.get("serviceName"):
            pod_spec.setdefault("subdomain", spec["serviceName"])
        volumes = pod_spec.setdefault("volumes", [])
        for vct in spec.get("volumeClaimTemplates") or []:
            claim = (vct.get("metadata") or {}).get("name", "data")
            if not any(v.get("name") == claim for v in volumes):
                volumes.append(
                    {"name": claim, "persistentVolumeClaim": {"claimName": f"{claim}-{md['name']}-{ordinal}"}}
                )
        if not volumes:
            pod_spec.pop("volumes")
        pod_md: dict[str, Any] = {
            "name": pod_name,
            "namespace": md["namespace"],
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "StatefulSet",
                    "name": md["name"],
                    "uid": md["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        }
        if tmd.get("annotations"):
            pod_md["annotations"] = dict(tmd["annotations"])
        return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_md, "spec": pod_spec}

    # -------------------------------------------------------------------- pods
    def _pods(self, now: float) -> None:
        items, _ = self.api.store.list_objects(POD_KEY, None)
        live = set()
        for pod in items:
            md = pod["metadata"]
            uid = md["uid"]
            live.add(uid)
            if md.get("deletionTimestamp"):
                continue
            if self._settled_pods.get(uid) == md["resourceVersion"]:
                continue
            started = self.started.setdefault(uid, now)
            new = self._set_status(pod, self._pod_status(pod, now - started, now))
            if _pod_ready(new) and failure_mode(new) is None:
                self._settled_pods[uid] = new["metadata"]["resourceVersion"]
                if self.runtime is not None:
                    self.runtime.pod_started(new, self._lookup)
        gone = False
        for uid in list(self.started):
            if uid not in live:
                del self.started[uid]
                self._settled_pods.pop(uid, None)
                self.events_done = {e for e in self.events_done if e[0] != uid}
                if self.runtime is not None:
                    self.runtime.pod_gone(uid)
                    gone = True
        if gone and self.runtime is not None:
            claims, _ = self.api.store.list_objects(PVC_KEY, None)
            self.runtime.pvcs_gone({c["metadata"]["uid"][:8] for c in claims})

    def _lookup(self, plural: str, ns: str, name: str) -> Obj | None:
        return self.api.store.get(("", plural), ns, name)

    def _pod_status(self, pod: Obj, age: float, now: float) -> dict[str, Any]:
        old = pod.get("status") or {}
        start_time = old.get("startTime") or now_ts()
        containers = (pod.get("spec") or {}).get("containers") or []
        fail = failure_mode(pod)
        ts = old.get("startTime") or start_time
        base: dict[str, Any] = {
            "hostIP": "10.0.0.10",
            "podIP": old.get("podIP") or _pod_ip(pod),
            "qosClass": "BestEffort",
            "startTime": start_time,
        }
        base["podIPs"] = [{"ip": base["podIP"]}]
        ready = False
        if fail is not None:
            reason, image = fail
            statuses = []
            if reason == "ImagePullBackOff":
                phase = "Pending"
                msg = f'Back-off pulling image "{image}"'
                for c in containers:
                    statuses.append(
                        {
                            "name": c.get("name"),
                            "image": c.get("image"),
                            "imageID": "",
                            "ready": False,
                            "restartCount": 0,
                            "started": False,
                            "state": {"waiting": {"reason": "ImagePullBackOff", "message": msg}},
                            "lastState": {},
                        }
                    )
                self._event(
                    pod,
                    "Failed",
                    f'Failed to pull image "{image}": rpc error: code = NotFound desc = '
                    f'failed to pull and unpack image "{image}": not found',
                )
                self._event(pod, "BackOff", msg)
            else:
                phase = "Running"
                restarts = 1 + int(age // max(self.ready_after, 0.5))
                for c in containers:
                    cname = c.get("name")
                    statuses.append(
                        {
                            "name": cname,
                            "image": c.get("image"),
                            "imageID": "",
                            "ready": False,
                            "restartCount": restarts,
                            "started": False,
                            "state": {
                                "waiting": {
                                    "reason": "CrashLoopBackOff",
                                    "message": f"back-off 10s restarting failed container={cname} "
                                    f"pod={pod['metadata']['name']}_"
                                    f"{pod['metadata']['namespace']}({pod['metadata']['uid']})",
                                }
                            },
                            "lastState": {
                                "terminated": {
                                    "exitCode": 137 if reason == "OOMKilled" else 1,
                                    "reason": "OOMKilled" if reason == "OOMKilled" else "Error",
                                    "startedAt": ts,
                                    "finishedAt": ts,
                                }
                            },
                        }
                    )
                cname = containers[0].get("name") if containers else "main"
                self._event(
                    pod,
                    "BackOff",
                    f"Back-off restarting failed container {cname} in pod "
                    f"{pod['metadata']['name']}_{pod['metadata']['namespace']}"
                    f"({pod['metadata']['uid']})",
                )
        elif age >= self.ready_after:
            phase, ready = "Running", True
            statuses = [
                {
                    "name": c.get("name"),
                    "image": c.get("image"),
                    "imageID": f"docker.io/{c.get('image')}",
                    "containerID": f"containerd://{_hash([pod['metadata']['uid'], c.get('name')])}",
                    "ready": True,
                    "restartCount": 0,
                    "started": True,
                    "state": {"running": {"startedAt": ts}},
                    "lastState": {},
                }
                for c in containers
            ]
        else:
            phase = "Pending"
            statuses = [
                {
                    "name": c.get("name"),
                    "image": c.get("image"),
                    "imageID": "",
                    "ready": False,
                    "restartCount": 0,
                    "started": False,
                    "state": {"waiting": {"reason": "ContainerCreating"}},
                    "lastState": {},
                }
                for c in containers
            ]
        flag = "True" if ready else "False"
        conds = [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": ts},
            {"type": "Initialized", "status": "True", "lastTransitionTime": ts},
            {"type": "ContainersReady", "status": flag, "lastTransitionTime": ts},
            {"type": "Ready", "status": flag, "lastTransitionTime": ts},
        ]
        if not ready:
            for c in conds[2:]:
                c["reason"] = "ContainersNotReady"
        # keep transition times stable once reached
        for c, oc in zip(conds, old.get("conditions") or [], strict=False):
            if oc.get("type") == c["type"] and oc.get("status") == c["status"]:
                c["lastTransitionTime"] = oc.get("lastTransitionTime", ts)
            elif oc.get("type") == c["type"]:
                c["lastTransitionTime"] = now_ts()
        return dict(base, phase=phase, conditions=conds, containerStatuses=statuses)

    def _event(self, pod: Obj, reason: str, message: str) -> None:
        md = pod["metadata"]
        if (md["uid"], reason) in self.events_done:
            return
        self.events_done.add((md["uid"], reason))
        ts = now_ts()
        containers = (pod.get("spec") or {}).get("containers") or []
        cname = containers[0].get("name", "main") if containers else "main"
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{md['name']}.{secrets.token_hex(8)}", "namespace": md["namespace"]},
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": md["name"],
                "namespace": md["namespace"],
                "uid": md["uid"],
                "resourceVersion": md.get("resourceVersion"),
                "fieldPath": f"spec.containers{{{cname}}}",
            },
            "reason": reason,
            "message": message,
            "type": "Warning",
            "source": {"component": "kubelet", "host": "kubesim-node"},
            "reportingComponent": "kubelet",
            "reportingInstance": "kubesim-node",
            "firstTimestamp": ts,
            "lastTimestamp": ts,
            "count": 1,
        }
        self._create("", "events", md["namespace"], body)

    # -------------------------------------------------------------------- PVCs
    def _pvcs(self) -> None:
        items, _ = self.api.store.list_objects(PVC_KEY, None)
        for pvc in items:
            if pvc["metadata"].get("deletionTimestamp"):
                continue
            if (pvc.get("status") or {}).get("phase") == "Bound":
                self._expand_pvc(pvc)
                continue
            spec = pvc.get("spec") or {}
            size = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
            new = clone(pvc)
            new["spec"] = dict(
                spec,
                volumeName=f"pvc-{pvc['metadata']['uid']}",
                storageClassName=spec.get("storageClassName") or "standard",
            )
            new["status"] = {
                "phase": "Bound",
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "capacity": {"storage": size},
            }
            self._write(pvc, new)

    def _expand_pvc(self, pvc: Obj) -> None:
        """A bound claim whose request grew past its capacity: the volume is expanded at once (a real
        cluster's resizer and kubelet take a while, and report conditions meanwhile)."""
        status = pvc.get("status") or {}
        request = ((pvc.get("spec") or {}).get("resources") or {}).get("requests", {}).get("storage")
        capacity = (status.get("capacity") or {}).get("storage")
        wanted, has = quantity(request), quantity(capacity)
        if wanted is None or (has is not None and wanted <= has):
            return
        new = clone(pvc)
        new["status"] = {**status, "capacity": {**(status.get("capacity") or {}), "storage": request}}
        self._write(pvc, new)

    # ---------------------------------------------------------------- clusters
    def _clusters(self, now: float) -> None:
        items, _ = self.api.store.list_objects(CLUSTER_KEY, None)
        for cl in items:
            md = cl["metadata"]
            if md.get("deletionTimestamp"):
                self._delete_cluster(cl, now)
                continue
            comps = [c for c in (cl.get("spec") or {}).get("componentSpecs") or [] if isinstance(c, dict)]
            if not comps:
                comps = [{"name": "postgresql"}]
            status = cl.get("status") or {}
            fail = ((md.get("annotations") or {}).get(FAIL_ANNOTATION) or "").strip()
            if fail in CLUSTER_FAILURES:
                self._fail_cluster(cl, comps, fail)
                continue
            phase = status.get("phase")
            stopped = all(c.get("stop") for c in comps)
            target = "Stopped" if stopped else "Running"
            if not phase:
                phase = "Creating"
                self._ensure_cluster_objects(cl, comps)
            elif (phase != target and phase not in ("Creating", "Stopping", "Updating")) or (
                phase in ("Stopping", "Updating", "Creating")
                and ((phase == "Stopping") != stopped and phase != "Creating")
            ):
                phase = "Stopping" if stopped else "Updating"
            if phase in ("Creating", "Stopping", "Updating"):
                t0 = self._since(md["uid"], f"{phase}:{md.get('generation')}", now)
                if now - t0 >= self.ready_after:
                    phase = target
            comp_phase = {"Updating": "Starting"}.get(phase, phase)
            new_status: dict[str, Any] = dict(status, phase=phase, observedGeneration=md.get("generation", 1))
            components = {}
            for c in comps:
                cs: dict[str, Any] = {"phase": comp_phase}
                if cl["apiVersion"].endswith("/v1alpha1"):
                    cs["podsReady"] = phase == "Running"
                else:
                    cs["upToDate"] = phase in ("Running", "Stopped")
                components[c.get("name", "postgresql")] = cs
            new_status["components"] = components
            self._set_status(cl, new_status)

    def _fail_cluster(self, cl: Obj, comps: list[dict[str, Any]], phase: str) -> None:
        """The `kubesim.dev/fail: Failed|Abnormal` annotation: the cluster (and its first component) in
        that phase, with a Ready condition False, as KubeBlocks reports a failed component."""
        status = cl.get("status") or {}
        if status.get("phase") == phase:
            return
        first = comps[0].get("name", "postgresql")
        components: dict[str, dict[str, Any]] = {
            c.get("name", "postgresql"): {"phase": "Running"} for c in comps
        }
        components[first] = {"phase": phase, "message": {"Pod/x": "container postgresql is crashing"}}
        condition = dict(
            _cond("Ready", "ComponentsNotReady", f"pods are not ready in Components: [{first}]"),
            status="False",
        )
        self._set_status(cl, dict(status, phase=phase, components=components, conditions=[condition]))

    def _ensure_cluster_objects(self, cl: Obj, comps: list[dict[str, Any]]) -> None:
        md = cl["metadata"]
        ns, name = md["namespace"], md["name"]
        owner = [
            {
                "apiVersion": cl["apiVersion"],
                "kind": "Cluster",
                "name": name,
                "uid": md["uid"],
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
        for c in comps:
            comp = c.get("name", "postgresql")
            labels = {
                "app.kubernetes.io/instance": name,
                "app.kubernetes.io/managed-by": "kubeblocks",
                "apps.kubeblocks.io/component-name": comp,
            }
            password = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(16))
            self._create(
                "",
                "secrets",
                ns,
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {
                        "name": f"{name}-{comp}-account-postgres",
                        "namespace": ns,
                        "labels": dict(labels, **{"apps.kubeblocks.io/system-account": "postgres"}),
                        "ownerReferences": owner,
                    },
                    "type": "Opaque",
                    "data": {"username": _b64("postgres"), "password": _b64(password)},
                },
            )
            self._create(
                "",
                "services",
                ns,
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {
                        "name": f"{name}-{comp}",
                        "namespace": ns,
                        "labels": labels,
                        "ownerReferences": owner,
                    },
                    "spec": {
                        "type": "ClusterIP",
                        "selector": labels,
                        "ports": [
                            {
                                "name": "tcp-postgresql",
                                "port": 5432,
                                "protocol": "TCP",
                                "targetPort": "tcp-postgresql",
                            }
                        ],
                    },
                },
            )

    def _delete_cluster(self, cl: Obj, now: float) -> None:
        md = cl["metadata"]
        status = cl.get("status") or {}
        if status.get("phase") != "Deleting":
            cl = self._set_status(cl, dict(status, phase="Deleting"))
        if CLUSTER_FINALIZER not in (cl["metadata"].get("finalizers") or []):
            return
        if (cl.get("spec") or {}).get("terminationPolicy") == "DoNotTerminate":
            return
        t0 = self._since(md["uid"], "Deleting", now)
        if now - t0 < min(self.ready_after, 0.5):
            return
        ns = md["namespace"]
        for key, dns, dname in self.api.store.dependents_of(md["uid"]):
            self._delete(key[0], key[1], dns, dname)
        new = clone(cl)
        new["metadata"]["finalizers"] = [f for f in new["metadata"]["finalizers"] if f != CLUSTER_FINALIZER]
        self._write(cl, new)
        self.since = {k: v for k, v in self.since.items() if k[0] != md["uid"]}
        del ns

    # ------------------------------------------------------------ opsrequests
    def _opsrequests(self, now: float) -> None:
        for key in OPS_KEYS:
            items, _ = self.api.store.list_objects(key, None)
            for ops in items:
                self._reconcile_ops(ops, now)

    def _reconcile_ops(self, ops: Obj, now: float) -> None:
        md, spec = ops["metadata"], ops.get("spec") or {}
        status = ops.get("status") or {}
        phase = status.get("phase")
        if phase in OPS_DONE or md.get("deletionTimestamp"):
            return
        ns = md["namespace"]
        cname = spec.get("clusterName") or spec.get("clusterRef") or ""
        cl = self.api.store.get(CLUSTER_KEY, ns, cname)
        optype = spec.get("type")
        if cl is None:
            self._set_status(
                ops,
                dict(
                    status,
                    phase="Failed",
                    completionTimestamp=now_ts(),
                    progress="0/1",
                    conditions=[_cond("Failed", "ClusterNotFound", f'cluster "{cname}" not found')],
                ),
            )
            return
        if not phase:
            if optype in ("Stop", "Start"):
                new = clone(cl)
                for c in (new.get("spec") or {}).get("componentSpecs") or []:
                    if optype == "Stop":
                        c["stop"] = True
                    else:
                        c.pop("stop", None)
                self._write(cl, new)
            self._set_status(
                ops,
                dict(
                    status,
                    phase="Running",
                    startTimestamp=now_ts(),
                    progress="0/1",
                    clusterGeneration=cl["metadata"].get("generation", 1),
                    conditions=[
                        _cond(
                            "Progressing",
                            "OpsRequestProgressing",
                            f"Start to process the OpsRequest: {md['name']}",
                        )
                    ],
                ),
            )
            self.since[(md["uid"], "Running")] = now
            return
        cphase = (cl.get("status") or {}).get("phase")
        done = False
        if optype == "Stop":
            done = cphase == "Stopped"
        elif optype == "Start":
            done = cphase == "Running"
        else:
            done = now - self.since.get((md["uid"], "Running"), now) >= self.ready_after
        if done:
            self._set_status(
                ops,
                dict(
                    status,
                    phase="Succeed",
                    completionTimestamp=now_ts(),
                    progress="1/1",
                    conditions=[
                        _cond(
                            "Succeed",
                            "OpsRequestProcessedSuccessfully",
                            f"Successfully processed the OpsRequest: {md['name']}",
                        )
                    ],
                ),
            )


def _cond(ctype: str, reason: str, message: str) -> dict[str, Any]:
    return {
        "type": ctype,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": now_ts(),
    }


def _pod_ready(pod: Obj) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status") == "True"
    return False


def _pod_ip(pod: Obj) -> str:
    h = int(hashlib.sha256(pod["metadata"]["uid"].encode()).hexdigest()[:6], 16)
    return f"10.244.{(h >> 8) % 250}.{h % 250 + 2}"
