"""Routing and verb semantics of the simulated Kubernetes API."""

from __future__ import annotations

import base64
import contextlib
import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from kubesim import crd as crdmod
from kubesim import patch as patchmod
from kubesim import podexec
from kubesim.control import Auth, Faults, Stats
from kubesim.defaults import apply_defaults
from kubesim.discovery import EndpointsMixin
from kubesim.errors import (
    ApiError,
    already_exists,
    bad_request,
    conflict,
    forbidden,
    invalid,
    not_found,
)
from kubesim.matching import combine, field_selector, label_selector
from kubesim.messages import Request, Response, clone, decode_body, dumps, now_ts
from kubesim.resources import Registry, ResourceType
from kubesim.store import Obj, Store, TooOld
from kubesim.validation import BuiltinValidators, check_immutable, validate_object

K8S_VERSION = "1.33"
NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"
NS_KEY = ("", "namespaces")
CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")


@dataclass
class Route:
    verb: str
    rt: ResourceType
    ns: str  # "" for cluster scope or all namespaces
    name: str
    sub: str

    @property
    def resource(self) -> str:
        return self.rt.plural + (f"/{self.sub}" if self.sub else "")


Hook = Callable[[ResourceType, Obj], None]


class Api(EndpointsMixin):
    def __init__(
        self,
        admin_token: str,
        k8s_version: str = K8S_VERSION,
        watch_window: int = 10000,
        crd_docs: list[dict[str, Any]] | None = None,
    ) -> None:
        self.store = Store(window=watch_window)
        self.registry = Registry()
        self.validators = BuiltinValidators(k8s_version)
        self.validators.warm(
            [
                ("v1", "ConfigMap"),
                ("v1", "Secret"),
                ("apps/v1", "StatefulSet"),
                ("v1", "Namespace"),
                ("v1", "Service"),
            ]
        )
        self.k8s_version = k8s_version
        self.auth = Auth(admin_token)
        self.faults = Faults()
        self.stats = Stats()
        self.server_address = "127.0.0.1:6443"
        self.runtime: Any = None  # kubesim.runtime.Runtime under --simulate (pods/exec, pods/log)
        self.create_hooks: list[Hook] = []  # mutate objects being created (simulator admission)
        self.write_lock = threading.RLock()
        for doc in crd_docs or []:
            self._preload_crd(doc)
        self._preload_cluster_defaults()

    # ------------------------------------------------------------------ setup
    def _preload_crd(self, doc: dict[str, Any]) -> None:
        obj = dict(doc)
        md = dict(obj.get("metadata") or {})
        md.update(uid=str(uuid.uuid4()), creationTimestamp=now_ts(), generation=1)
        obj["metadata"] = md
        obj["status"] = crdmod.crd_status(obj)
        existing = self.store.get(CRD_KEY, "", md["name"])
        if existing is not None:  # merge served versions of the same CRD from several files
            have = {v["name"] for v in existing["spec"]["versions"]}
            extra = [v for v in obj["spec"]["versions"] if v["name"] not in have]
            if not extra:
                return
            spec = dict(existing["spec"], versions=existing["spec"]["versions"] + extra)
            obj = dict(existing, spec=spec)
        crdmod.register_crd(self.registry, obj)
        self.store.put(CRD_KEY, "", obj, "ADDED" if existing is None else "MODIFIED")

    def _preload_cluster_defaults(self) -> None:
        """What a stock cluster with ingress-nginx has: IngressClass `nginx` and a default StorageClass
        `standard` (delete them through the API to simulate a cluster without)."""
        seeds: list[tuple[tuple[str, str], dict[str, Any]]] = [
            (
                ("networking.k8s.io", "ingressclasses"),
                {
                    "apiVersion": "networking.k8s.io/v1",
                    "kind": "IngressClass",
                    "metadata": {"name": "nginx"},
                    "spec": {"controller": "k8s.io/ingress-nginx"},
                },
            ),
            (
                ("storage.k8s.io", "storageclasses"),
                {
                    "apiVersion": "storage.k8s.io/v1",
                    "kind": "StorageClass",
                    "metadata": {
                        "name": "standard",
                        "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                    },
                    "provisioner": "kubesim.dev/hostpath",
                    "reclaimPolicy": "Delete",
                    "volumeBindingMode": "WaitForFirstConsumer",
                },
            ),
        ]
        for key, obj in seeds:
            obj["metadata"].update(uid=str(uuid.uuid4()), creationTimestamp=now_ts())
            self.store.put(key, "", obj, "ADDED")

    # ---------------------------------------------------------------- dispatch
    def handle(self, req: Request) -> Response:
        try:
            return self._handle(req)
        except ApiError as e:
            return Response(e.code, e.status(), dict(e.headers))

    def _handle(self, req: Request) -> Response:
        path = req.path.rstrip("/") or "/"
        if path.startswith("/_kubesim"):
            return self._admin(req, path)
        if path in ("/healthz", "/livez", "/readyz"):
            return Response(200, b"ok", {"Content-Type": "text/plain"})
        info = self.auth.lookup(req.token)
        if info is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        parts = [p for p in path.split("/") if p]
        if path == "/version":
            return self._faulted(req, "get", "", "", "") or Response(200, self._version())
        if not parts or parts[0] not in ("api", "apis"):
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        if parts[0] == "api":
            group, rest = "", parts[1:]
        else:
            group, rest = (parts[1] if len(parts) > 1 else ""), parts[2:]
            if group == "":
                return Response(200, self._group_list())
        if not rest:
            fault = self._faulted(req, "get", "", "", "")
            if fault:
                return fault
            if group == "":
                return Response(
                    200,
                    {
                        "kind": "APIVersions",
                        "versions": ["v1"],
                        "serverAddressByClientCIDRs": [
                            {"clientCIDR": "0.0.0.0/0", "serverAddress": self.server_address}
                        ],
                    },
                )
            return Response(200, self._group(group))
        version, rest = rest[0], rest[1:]
        if not rest:
            fault = self._faulted(req, "get", "", "", "")
            if fault:
                return fault
            return Response(200, self._resource_list(group, version))
        if group == "authorization.k8s.io" and rest in (
            ["selfsubjectaccessreviews"],
            ["subjectaccessreviews"],
        ):
            fault = self._faulted(req, "create", rest[0], "", "")
            if fault:
                return fault
            return self._ssar(info, req)
        if (
            group == ""
            and len(rest) == 5
            and rest[0] == "namespaces"
            and rest[2] == "pods"
            and rest[4] in ("exec", "log")
        ):
            return self._pod_subresource(info, req, rest[1], rest[3], rest[4])
        route = self._route(req, group, version, rest)
        obj_name = route.name
        if route.verb == "create" and not obj_name:
            obj_name = self._peek_name(req)
        self.stats.count(route.verb, route.resource, route.ns, obj_name)
        fault = self._faulted(req, route.verb, route.resource, route.ns, obj_name)
        if fault:
            return fault
        authz_ns = (
            route.ns if route.rt.namespaced else (route.name if route.rt.plural == "namespaces" else "")
        )
        if not self.auth.allowed(info, route.verb, group, route.resource, authz_ns, route.name):
            raise forbidden(info.user, route.verb, group, route.resource, authz_ns, route.name)
        resp = self._dispatch(route, req)
        self.stats.code(resp.code)
        if route.verb == "create" and obj_name and resp.code < 300:
            self.stats.created(route.resource, route.ns, obj_name)
        return resp

    def _pod_subresource(self, info: Any, req: Request, ns: str, name: str, sub: str) -> Response:
        # exec is authorized as `create pods/exec` whatever the method (the API server checks create
        # for WebSocket GETs too); log as `get pods/log`
        if sub == "exec" and req.method not in ("GET", "POST"):
            raise ApiError(
                405, "the server does not allow this method on the requested resource", "MethodNotAllowed"
            )
        if sub == "log" and req.method != "GET":
            raise ApiError(
                405, "the server does not allow this method on the requested resource", "MethodNotAllowed"
            )
        verb = "create" if sub == "exec" else "get"
        resource = f"pods/{sub}"
        self.stats.count(verb, resource, ns, name)
        fault = self._faulted(req, verb, resource, ns, name)
        if fault:
            return fault
        if not self.auth.allowed(info, verb, "", resource, ns, name):
            raise forbidden(info.user, verb, "", resource, ns, name)
        resp = (
            podexec.exec_response(self, req, ns, name)
            if sub == "exec"
            else podexec.log_response(self, req, ns, name)
        )
        self.stats.code(resp.code)
        return resp

    def _peek_name(self, req: Request) -> str:
        try:
            body = json.loads(req.body or b"{}")
            return str((body.get("metadata") or {}).get("name") or "")
        except (ValueError, AttributeError):
            return ""

    def _faulted(self, req: Request, verb: str, resource: str, ns: str, name: str) -> Response | None:
        f = self.faults.pick(verb, resource)
        if f is None:
            return None
        if f.latency_ms:
            time.sleep(f.latency_ms / 1000.0)
        if f.drop:
            return Response(0, drop=True)
        if f.status:
            code = int(f.status)
            err = ApiError(code, f.message)
            headers = {}
            if code in (429, 503):
                headers["Retry-After"] = str(f.retry_after)
                if code == 429:
                    err.details = {"retryAfterSeconds": f.retry_after}
            self.stats.code(code)
            return Response(code, err.status(), headers)
        return None

    def _route(self, req: Request, group: str, version: str, rest: list[str]) -> Route:
        ns = ""
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            ns, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        plural = rest[0]
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        rt = self.registry.get(group, version, plural)
        if rt is None:
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        if sub and not (sub == "status" and rt.status_subresource):
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        if ns and not rt.namespaced:
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        m = req.method
        if m == "GET":
            watching = req.query.get("watch") in ("true", "1", "True")
            verb = "get" if name else ("watch" if watching else "list")
        elif m == "POST":
            if name:
                raise ApiError(
                    405, "the server does not allow this method on the requested resource", "MethodNotAllowed"
                )
            verb = "create"
        elif m in ("PUT", "PATCH"):
            if not name:
                raise ApiError(
                    405, "the server does not allow this method on the requested resource", "MethodNotAllowed"
                )
            verb = "update" if m == "PUT" else "patch"
        elif m == "DELETE":
            verb = "delete" if name else "deletecollection"
        else:
            raise ApiError(
                405, "the server does not allow this method on the requested resource", "MethodNotAllowed"
            )
        if rt.namespaced and not ns and verb not in ("list", "watch"):
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        return Route(verb, rt, ns, name, sub)

    def _dispatch(self, r: Route, req: Request) -> Response:
        dry = req.query.get("dryRun") == "All"
        if r.verb == "get":
            return Response(200, self._present(r.rt, self._must_get(r.rt, r.ns, r.name)))
        if r.verb == "list":
            return Response(200, self._list(r, req))
        if r.verb == "watch":
            return self._watch(r, req)
        if r.verb == "create":
            return Response(201, self._present(r.rt, self.create(r.rt, r.ns, self._body(req), dry)))
        if r.verb == "update":
            return Response(
                200, self._present(r.rt, self.update(r.rt, r.ns, r.name, self._body(req), r.sub, dry))
            )
        if r.verb == "patch":
            return Response(200, self._present(r.rt, self.patch(r, req, dry)))
        if r.verb == "delete":
            opts = self._body(req) if req.body.strip() else {}
            code, obj = self.delete(r.rt, r.ns, r.name, opts, req.query, dry)
            return Response(code, self._present(r.rt, obj) if obj.get("kind") != "Status" else obj)
        if r.verb == "deletecollection":
            return Response(200, self._delete_collection(r, req, dry))
        raise ApiError(405, "method not allowed", "MethodNotAllowed")

    # ------------------------------------------------------------ helpers
    def _body(self, req: Request) -> Any:
        return decode_body(req)

    def _present(self, rt: ResourceType, obj: Obj) -> Obj:
        """Objects of a custom resource are served in the requested version."""
        if rt.custom and obj.get("apiVersion") != rt.api_version:
            obj = dict(obj, apiVersion=rt.api_version)
        return obj

    def _must_get(self, rt: ResourceType, ns: str, name: str) -> Obj:
        obj = self.store.get(rt.key, ns, name)
        if obj is None:
            raise not_found(rt.group, rt.plural, name)
        return obj

    def _check_namespace(self, rt: ResourceType, ns: str, creating: bool, name: str = "") -> None:
        if not rt.namespaced:
            return
        nso = self.store.get(NS_KEY, "", ns)
        if nso is None:
            raise not_found("", "namespaces", ns)
        if creating and nso["metadata"].get("deletionTimestamp"):
            raise ApiError(
                403,
                f'{rt.gr} "{name}" is forbidden: unable to create new content in namespace '
                f"{ns} because it is being terminated",
                "Forbidden",
                {
                    "name": name,
                    "group": rt.group,
                    "kind": rt.plural,
                    "causes": [
                        {
                            "reason": "NamespaceTerminating",
                            "message": f"namespace {ns} is being terminated",
                            "field": "metadata.namespace",
                        }
                    ],
                },
            )

    @staticmethod
    def _spec_part(obj: Obj) -> dict[str, Any]:
        return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}

    # -------------------------------------------------------------- verbs
    def create(self, rt: ResourceType, ns: str, body: Any, dry: bool = False, validate: bool = True) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be an object")
        obj = clone(body)
        kind = obj.get("kind")
        if kind and kind != rt.kind:
            raise bad_request(
                f"the API version in the data ({obj.get('apiVersion')}) does not match the "
                f"expected API version ({rt.api_version}) or kind {kind} != {rt.kind}"
            )
        obj["apiVersion"] = rt.api_version
        obj["kind"] = rt.kind
        md = obj.get("metadata")
        if not isinstance(md, dict):
            md = obj["metadata"] = {}
        if rt.namespaced:
            if md.get("namespace") and md["namespace"] != ns:
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            md["namespace"] = ns
        else:
            md.pop("namespace", None)
        with self.write_lock:
            if not md.get("name"):
                gen = md.get("generateName")
                if not gen:
                    raise invalid(
                        rt.group,
                        rt.kind,
                        "",
                        [("metadata.name", "Required value: name or generateName is required")],
                    )
                for _ in range(20):
                    cand = gen + "".join(random.choice(NAME_CHARS) for _ in range(5))
                    if self.store.get(rt.key, ns, cand) is None:
                        break
                md["name"] = cand
            name = md["name"]
            self._check_namespace(rt, ns, creating=True, name=name)
            for f in (
                "resourceVersion",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "generation",
                "deletionGracePeriodSeconds",
                "selfLink",
            ):
                md.pop(f, None)
            if rt.status_subresource and rt.plural not in (
                "pods",
                "namespaces",
                "services",
                "persistentvolumeclaims",
            ):
                obj.pop("status", None)
            apply_defaults(rt, obj, creating=True)
            for hook in self.create_hooks:
                hook(rt, obj)
            if validate:
                validate_object(self.validators, rt, obj, None)
            if rt.key == CRD_KEY:
                self._validate_crd(obj)
            if self.store.get(rt.key, ns, name) is not None:
                raise already_exists(rt.group, rt.plural, name)
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = now_ts()
            if rt.has_generation:
                md["generation"] = 1
            if rt.key == CRD_KEY:
                obj["status"] = crdmod.crd_status(obj)
            if dry:
                md["resourceVersion"] = ""
                return obj
            if rt.key == CRD_KEY:
                crdmod.register_crd(self.registry, obj)
            return self.store.put(rt.key, ns, obj, "ADDED")

    def _validate_crd(self, obj: Obj) -> None:
        spec = obj.get("spec") or {}
        names = spec.get("names") or {}
        want = f"{names.get('plural')}.{spec.get('group')}"
        if obj["metadata"]["name"] != want:
            raise invalid(
                "apiextensions.k8s.io",
                "CustomResourceDefinition",
                obj["metadata"]["name"],
                [
                    (
                        "metadata.name",
                        f'Invalid value: "{obj["metadata"]["name"]}": must be spec.names.plural'
                        f'+"."+spec.group',
                    )
                ],
            )

    def update(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        body: Any,
        sub: str = "",
        dry: bool = False,
        validate: bool = True,
    ) -> Obj:
        if not isinstance(body, dict):
            raise bad_request("the body of the request must be an object")
        with self.write_lock:
            old = self._must_get(rt, ns, name)
            bmd = body.get("metadata") or {}
            if bmd.get("name") not in (None, name):
                raise bad_request(
                    f"the name of the object ({bmd.get('name')}) does not match the name on the URL ({name})"
                )
            if rt.namespaced and bmd.get("namespace") not in (None, "", ns):
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            rv = bmd.get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise conflict(rt.group, rt.plural, name)
            if sub == "status":
                new = clone(old)
                if "status" in body:
                    new["status"] = clone(body["status"])
                else:
                    new.pop("status", None)
            else:
                new = clone(body)
                new["apiVersion"] = rt.api_version
                new["kind"] = rt.kind
                md = new.setdefault("metadata", {})
                if not isinstance(md, dict):
                    raise bad_request("metadata must be an object")
                for f in (
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                    "name",
                    "namespace",
                ):
                    if f in old["metadata"]:
                        md[f] = old["metadata"][f]
                    else:
                        md.pop(f, None)
                if rt.status_subresource:
                    if "status" in old:
                        new["status"] = old["status"]
                    else:
                        new.pop("status", None)
                apply_defaults(rt, new, creating=False)
                if validate:
                    validate_object(self.validators, rt, new, old)
                    check_immutable(rt, new, old)
            if validate and sub == "status" and rt.custom:
                validate_object(self.validators, rt, new, old)
            return self._commit_update(rt, ns, old, new, dry)

    def _commit_update(self, rt: ResourceType, ns: str, old: Obj, new: Obj, dry: bool) -> Obj:
        md = new["metadata"]
        md["resourceVersion"] = old["metadata"]["resourceVersion"]
        if rt.custom and rt.api_version != old.get("apiVersion"):
            cmp_old = dict(old, apiVersion=rt.api_version)
        else:
            cmp_old = old
        if new == cmp_old:
            return old  # no-op update: nothing written, resourceVersion unchanged
        if rt.has_generation and self._spec_part(new) != self._spec_part(old):
            md["generation"] = int(old["metadata"].get("generation") or 1) + 1
        if dry:
            return new
        if md.get("deletionTimestamp") and not md.get("finalizers"):
            gone = self.store.remove(rt.key, ns, md["name"])
            self._after_removal(rt, ns, gone or new)
            return gone or new
        if rt.key == CRD_KEY:
            crdmod.register_crd(self.registry, new)
        return self.store.put(rt.key, ns, new, "MODIFIED")

    def patch(self, r: Route, req: Request, dry: bool) -> Obj:
        ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype == patchmod.STRATEGIC_PATCH and r.rt.custom:
            raise ApiError(
                415,
                f"the body of the request was in an unknown format - accepted media types "
                f"include: {patchmod.JSON_PATCH}, {patchmod.MERGE_PATCH}, {patchmod.APPLY_PATCH}",
                "UnsupportedMediaType",
            )
        if ctype not in (patchmod.JSON_PATCH, patchmod.MERGE_PATCH, patchmod.STRATEGIC_PATCH):
            raise ApiError(
                415,
                f"the body of the request was in an unknown format - accepted media types "
                f"include: {patchmod.JSON_PATCH}, {patchmod.MERGE_PATCH}, "
                f"{patchmod.STRATEGIC_PATCH}",
                "UnsupportedMediaType",
            )
        rt = r.rt
        with self.write_lock:
            old = self._must_get(rt, r.ns, r.name)
            base = clone(self._present(rt, old))
            try:
                new = patchmod.apply_patch(ctype, base, req.body)
            except patchmod.PatchError as e:
                raise ApiError(
                    422, str(e), "Invalid", {"name": r.name, "group": rt.group, "kind": rt.kind}
                ) from e
            if not isinstance(new, dict):
                raise bad_request("patch result is not an object")
            md: dict[str, Any] = new["metadata"] if isinstance(new.get("metadata"), dict) else {}
            if md.get("resourceVersion") in (None, "", old["metadata"]["resourceVersion"]):
                new.setdefault("metadata", {})["resourceVersion"] = None
            else:
                raise conflict(rt.group, rt.plural, r.name)
            new["metadata"].pop("resourceVersion", None)
            return self.update(rt, r.ns, r.name, new, r.sub, dry)

    def delete(
        self,
        rt: ResourceType,
        ns: str,
        name: str,
        opts: Any,
        query: dict[str, str] | None = None,
        dry: bool = False,
    ) -> tuple[int, Obj]:
        query = query or {}
        opts = opts if isinstance(opts, dict) else {}
        if (opts.get("dryRun") or []) == ["All"]:
            dry = True
        policy = opts.get("propagationPolicy") or query.get("propagationPolicy") or "Background"
        with self.write_lock:
            old = self._must_get(rt, ns, name)
            pre = opts.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != old["metadata"].get("uid"):
                raise conflict(
                    rt.group,
                    rt.plural,
                    name,
                    f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: "
                    f"{old['metadata'].get('uid')}",
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"]["resourceVersion"]:
                raise conflict(rt.group, rt.plural, name)
            if dry:
                return 200, old
            md = old["metadata"]
            finalizers = list(md.get("finalizers") or [])
            if (
                policy == "Foreground"
                and "foregroundDeletion" not in finalizers
                and self.store.dependents_of(md.get("uid", ""))
            ):
                finalizers.append("foregroundDeletion")
            if rt.key == NS_KEY:
                return 200, self._delete_namespace(old)
            if finalizers:
                if md.get("deletionTimestamp") and finalizers == md.get("finalizers"):
                    return 200, old
                new = clone(old)
                new["metadata"]["finalizers"] = finalizers
                new["metadata"].setdefault("deletionTimestamp", now_ts())
                new["metadata"].setdefault("deletionGracePeriodSeconds", 0)
                stored = self.store.put(rt.key, ns, new, "MODIFIED")
                if "foregroundDeletion" in finalizers:
                    self._cascade(stored, "Foreground")
                return 202, stored
            gone = self.store.remove(rt.key, ns, name) or old
            self._after_removal(rt, ns, gone, policy)
            return 200, gone

    def _after_removal(self, rt: ResourceType, ns: str, gone: Obj, policy: str = "Background") -> None:
        if rt.key == CRD_KEY:
            self._drop_crd(gone)
        self._cascade(gone, policy)
        if ns:
            self._maybe_finish_namespace(ns)
        # owners waiting in foreground deletion
        for ref in gone["metadata"].get("ownerReferences") or []:
            loc = self.store.locate_uid(ref.get("uid", ""))
            if loc:
                self._maybe_finish_foreground(*loc)

    def _cascade(self, owner: Obj, policy: str) -> None:
        uid = owner["metadata"].get("uid", "")
        for key, dns, dname in self.store.dependents_of(uid):
            dep = self.store.get(key, dns, dname)
            drt = self.registry.any_version(*key)
            if dep is None or drt is None:
                continue
            if policy == "Orphan":
                new = clone(dep)
                new["metadata"]["ownerReferences"] = [
                    r for r in dep["metadata"].get("ownerReferences") or [] if r.get("uid") != uid
                ]
                if not new["metadata"]["ownerReferences"]:
                    new["metadata"].pop("ownerReferences")
                self.store.put(key, dns, new, "MODIFIED")
                continue
            others = [
                r
                for r in dep["metadata"].get("ownerReferences") or []
                if r.get("uid") != uid and self.store.locate_uid(r.get("uid", ""))
            ]
            if not others:
                with contextlib.suppress(ApiError):
                    self.delete(drt, dns, dname, {"propagationPolicy": "Background"})

    def _maybe_finish_foreground(self, key: tuple[str, str], ns: str, name: str) -> None:
        obj = self.store.get(key, ns, name)
        if obj is None or "foregroundDeletion" not in (obj["metadata"].get("finalizers") or []):
            return
        if self.store.dependents_of(obj["metadata"].get("uid", "")):
            return
        new = clone(obj)
        new["metadata"]["finalizers"] = [
            f for f in new["metadata"]["finalizers"] if f != "foregroundDeletion"
        ]
        rt = self.registry.any_version(*key)
        if rt is not None:
            self._commit_update(rt, ns, obj, new, False)

    def _drop_crd(self, crd: Obj) -> None:
        types = self.registry.remove_crd(crd["metadata"]["name"])
        keys = {rt.key for rt in types}
        with self.store.lock:
            for key, ns in [k for k in self.store.buckets if k[0] in keys]:
                for name in list(self.store.buckets.get((key, ns), {})):
                    self.store.remove(key, ns, name)

    def _delete_namespace(self, nso: Obj) -> Obj:
        ns = nso["metadata"]["name"]
        if not nso["metadata"].get("deletionTimestamp"):
            new = clone(nso)
            new["metadata"]["deletionTimestamp"] = now_ts()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new["status"] = {"phase": "Terminating"}
            nso = self.store.put(NS_KEY, "", new, "MODIFIED")
        for key in self.store.namespaced_keys(ns):
            rt = self.registry.any_version(*key)
            for name in list((self.store.buckets.get((key, ns)) or {}).keys()):
                obj = self.store.get(key, ns, name)
                if obj is None:
                    continue
                if rt is None:
                    self.store.remove(key, ns, name)
                    continue
                with contextlib.suppress(ApiError):
                    self.delete(rt, ns, name, {})
        self._maybe_finish_namespace(ns)
        return self.store.get(NS_KEY, "", ns) or nso

    def _maybe_finish_namespace(self, ns: str) -> None:
        nso = self.store.get(NS_KEY, "", ns)
        if nso is None or not nso["metadata"].get("deletionTimestamp"):
            return
        if self.store.namespaced_keys(ns):
            return
        self.store.remove(NS_KEY, "", ns)

    def _delete_collection(self, r: Route, req: Request, dry: bool) -> Obj:
        items = self._list(r, req)["items"]
        out = []
        for item in items:
            md = item["metadata"]
            try:
                _, obj = self.delete(r.rt, md.get("namespace", ""), md["name"], {}, req.query, dry)
                out.append(obj)
            except ApiError:
                pass
        return {
            "kind": f"{r.rt.kind}List",
            "apiVersion": r.rt.api_version,
            "metadata": {"resourceVersion": str(self.store.rv)},
            "items": out,
        }

    # ------------------------------------------------------------- list/watch
    def _predicate(self, req: Request) -> Callable[[Obj], bool] | None:
        return combine(
            label_selector(req.query.get("labelSelector")), field_selector(req.query.get("fieldSelector"))
        )

    def _list(self, r: Route, req: Request) -> Obj:
        items, rv = self.store.list_objects(r.rt.key, r.ns or None)
        pred = self._predicate(req)
        if pred is not None:
            items = [o for o in items if pred(o)]
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        cont = req.query.get("continue")
        if cont:
            try:
                state = json.loads(base64.urlsafe_b64decode(cont.encode()).decode())
                start_key, rv = state["k"], state["rv"]
            except (ValueError, KeyError) as e:
                raise bad_request("invalid continue token") from e
            items = [o for o in items if self._sort_key(o) > start_key]
            meta["resourceVersion"] = str(rv)
        limit = int(req.query.get("limit") or 0)
        if limit > 0 and len(items) > limit:
            last = items[limit - 1]
            meta["continue"] = base64.urlsafe_b64encode(
                json.dumps({"k": self._sort_key(last), "rv": int(meta["resourceVersion"])}).encode()
            ).decode()
            meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
        if r.rt.custom:
            items = [self._present(r.rt, o) for o in items]
        return {"kind": f"{r.rt.kind}List", "apiVersion": r.rt.api_version, "metadata": meta, "items": items}

    @staticmethod
    def _sort_key(o: Obj) -> str:
        md = o["metadata"]
        return f"{md.get('namespace', '')}/{md['name']}"

    def _watch(self, r: Route, req: Request) -> Response:
        rv_param = req.query.get("resourceVersion") or ""
        timeout = float(req.query.get("timeoutSeconds") or 1800)
        pred = self._predicate(req)
        bookmarks = req.query.get("allowWatchBookmarks") in ("true", "1")
        key, ns, rt = r.rt.key, r.ns, r.rt
        with self.store.lock:
            if rv_param in ("", "0"):
                items, start = self.store.list_objects(key, ns or None)
                initial = [o for o in items if pred is None or pred(o)]
            else:
                try:
                    start = int(rv_param)
                except ValueError as e:
                    raise bad_request(f"invalid resourceVersion {rv_param!r}") from e
                try:
                    self.store.events_after(start)
                except TooOld as e:
                    raise ApiError(
                        410, f"too old resource version: {start} ({self.store.rv})", "Expired"
                    ) from e
                initial = []

        store = self.store
        present = self._present

        def line(etype: str, obj: Obj) -> bytes:
            return dumps({"type": etype, "object": present(rt, obj)}) + b"\n"

        def gen() -> Iterator[bytes]:
            for o in initial:
                yield line("ADDED", o)
            last = start
            deadline = time.monotonic() + timeout
            last_bookmark = time.monotonic()
            while not store.closed:
                try:
                    events = store.events_after(last)
                except TooOld:
                    err = ApiError(410, f"too old resource version: {last} ({store.rv})", "Expired")
                    yield dumps({"type": "ERROR", "object": err.status()}) + b"\n"
                    return
                chunk = []
                for ev in events:
                    last = ev.rv
                    if ev.key != key or (ns and ev.namespace != ns):
                        continue
                    if pred is not None and not pred(ev.obj):
                        continue
                    chunk.append(line(ev.type, ev.obj))
                if chunk:
                    yield b"".join(chunk)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                if bookmarks and time.monotonic() - last_bookmark > 10:
                    last_bookmark = time.monotonic()
                    yield (
                        dumps(
                            {
                                "type": "BOOKMARK",
                                "object": {
                                    "kind": rt.kind,
                                    "apiVersion": rt.api_version,
                                    "metadata": {"resourceVersion": str(last)},
                                },
                            }
                        )
                        + b"\n"
                    )
                store.wait(last, min(remaining, 1.0))

        return Response(200, None, {"Content-Type": "application/json"}, stream=gen())
