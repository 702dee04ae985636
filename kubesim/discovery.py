"""Discovery documents, SelfSubjectAccessReview and the /_kubesim admin endpoints (mixed into Api)."""

from __future__ import annotations

import json
from typing import Any

from kubesim.control import Auth, Faults, Stats, TokenInfo
from kubesim.errors import ApiError, bad_request
from kubesim.messages import Request, Response, decode_body
from kubesim.resources import SPECIAL_GROUPS, Registry
from kubesim.store import Store


class EndpointsMixin:
    registry: Registry
    store: Store
    auth: Auth
    faults: Faults
    stats: Stats
    k8s_version: str
    server_address: str

    # -------------------------------------------------------------- discovery
    def _version(self) -> dict[str, Any]:
        major, minor = self.k8s_version.split(".")[:2]
        return {
            "major": major,
            "minor": minor,
            "gitVersion": f"v{major}.{minor}.0",
            "gitCommit": "kubesim",
            "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z",
            "goVersion": "go1.24",
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    def _group_versions(self) -> dict[str, list[str]]:
        with self.registry.lock:
            groups = {g: list(v) for g, v in self.registry.groups.items()}
        for g, vs in SPECIAL_GROUPS.items():
            groups.setdefault(g, list(vs))
        return groups

    def _group(self, group: str) -> dict[str, Any]:
        versions = self._group_versions().get(group)
        if not versions:
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        gvs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {
            "kind": "APIGroup",
            "apiVersion": "v1",
            "name": group,
            "versions": gvs,
            "preferredVersion": gvs[0],
        }

    def _group_list(self) -> dict[str, Any]:
        groups = [self._group(g) for g in self._group_versions() if g]
        for g in groups:
            g.pop("kind")
            g.pop("apiVersion")
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        gv = f"{group}/{version}" if group else version
        resources: list[dict[str, Any]] = []
        if group == "authorization.k8s.io" and version == "v1":
            for n, k in (
                ("selfsubjectaccessreviews", "SelfSubjectAccessReview"),
                ("subjectaccessreviews", "SubjectAccessReview"),
            ):
                resources.append(
                    {
                        "name": n,
                        "singularName": k.lower(),
                        "namespaced": False,
                        "kind": k,
                        "verbs": ["create"],
                    }
                )
        types = self.registry.in_group_version(group, version)
        if not types and not resources:
            raise ApiError(404, "the server could not find the requested resource", "NotFound", {})
        for rt in sorted(types, key=lambda t: t.plural):
            entry: dict[str, Any] = {
                "name": rt.plural,
                "singularName": rt.singular,
                "namespaced": rt.namespaced,
                "kind": rt.kind,
                "verbs": rt.verbs(),
            }
            if rt.short_names:
                entry["shortNames"] = rt.short_names
            if rt.categories:
                entry["categories"] = rt.categories
            resources.append(entry)
            if rt.status_subresource:
                resources.append(
                    {
                        "name": f"{rt.plural}/status",
                        "singularName": "",
                        "namespaced": rt.namespaced,
                        "kind": rt.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}

    # ------------------------------------------------------------------- SSAR
    def _ssar(self, info: TokenInfo, req: Request) -> Response:
        if req.method != "POST":
            raise ApiError(
                405, "the server does not allow this method on the requested resource", "MethodNotAllowed"
            )
        body = decode_body(req)
        if not isinstance(body, dict):
            raise bad_request("body must be an object")
        spec = body.get("spec") or {}
        ra = spec.get("resourceAttributes")
        if ra:
            res = ra.get("resource", "") + (f"/{ra['subresource']}" if ra.get("subresource") else "")
            ok = self.auth.allowed(
                info,
                ra.get("verb", ""),
                ra.get("group", ""),
                res,
                ra.get("namespace", ""),
                ra.get("name", ""),
            )
        else:
            ok = info.admin or info.allow_all
        status: dict[str, Any] = {"allowed": ok}
        if not ok:
            status["denied"] = True
            status["reason"] = "denied by kubesim token permission table"
        else:
            status["reason"] = "allowed by kubesim"
        out = dict(body, status=status)
        out.setdefault("apiVersion", "authorization.k8s.io/v1")
        out.setdefault("kind", "SelfSubjectAccessReview")
        out["metadata"] = dict(out.get("metadata") or {}, creationTimestamp=None)
        self.stats.count("create", "selfsubjectaccessreviews", "", "")
        return Response(201, out)

    # ----------------------------------------------------------------- admin
    def _admin(self, req: Request, path: str) -> Response:
        if req.token != self.auth.admin_token:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        sub = path[len("/_kubesim") :]
        m = req.method
        try:
            body = json.loads(req.body) if req.body.strip() else {}
        except ValueError as e:
            raise bad_request(f"invalid JSON: {e}") from e
        if sub == "/faults":
            if m == "POST":
                try:
                    f = self.faults.set(body)
                except (TypeError, ValueError) as e:
                    raise bad_request(str(e)) from e
                return Response(200, {"fault": dict(f.__dict__)})
            if m == "DELETE":
                self.faults.clear()
                return Response(200, {"fault": None})
            if m == "GET":
                return Response(200, {"fault": self.faults.describe()})
        elif sub == "/stats":
            if m == "GET":
                return Response(200, self.stats.snapshot())
            if m == "DELETE":
                self.stats.reset()
                return Response(200, self.stats.snapshot())
        elif sub == "/tokens" and m == "POST":
            if not body.get("token"):
                raise bad_request("token is required")
            info = self.auth.add(body)
            return Response(
                200,
                {
                    "token": body["token"],
                    "user": info.user,
                    "allow_all": info.allow_all,
                    "deny": info.deny,
                    "allow": info.allow,
                },
            )
        elif sub == "/health":
            return Response(200, {"ok": True, "resourceVersion": self.store.rv})
        raise ApiError(404, "unknown kubesim admin endpoint", "NotFound")
