"""The gateway: a client for one user's kubeconfig, working in that kubeconfig's namespace.

- Every call has an explicit (connect, read) timeout and no silent urllib3 retries: the reconcilers
  retry themselves (only a flaky 5xx or a dropped connection is tried again at once, see `_call`).
- Objects go in and come out as plain dicts (JSON as the API server sends it); no model classes.
- Every failure leaves as a `KubeError` subclass (`reconcile.kube.errors`).

Decision logic stays out of here: `apply` creates and, on AlreadyExists, returns what exists so the
caller can check the ownership labels and converge.
"""

from __future__ import annotations

import builtins
import contextlib
import copy
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from reconcile.kube import execstream, kubeconfig
from reconcile.kube.egress import EgressPolicy
from reconcile.kube.errors import (
    NOT_KUBERNETES,
    KubeconfigInvalid,
    KubeConflict,
    KubeError,
    KubeNotFound,
    KubePermanent,
    KubeTransient,
    translate_errors,
)
from reconcile.kube.execstream import ExecResult as ExecResult
from reconcile.kube.execstream import sh as sh
from reconcile.kube.transport import egress_pool_manager

# Defaults of the (connect, read) timeouts in seconds; the reconcilers pass the configured ones.
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 10.0

Manifest = dict[str, Any]
LOG_LIMIT = 256 * 1024  # bytes of a container log kept (the tail)
PatchType = Literal["merge", "json", "strategic"]

_PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
}


# ---------------------------------------------------------------------------------------------
# Kubeconfig parsing (save time, no network)
# ---------------------------------------------------------------------------------------------


def _load_yaml(text: str | bytes) -> tuple[dict[str, Any], kubeconfig.KubeconfigInfo]:
    try:
        # insecure-skip-tls-verify was refused at save unless the operator allowed it then
        return kubeconfig.load(text, allow_insecure_tls=True)
    except kubeconfig.KubeconfigError as exc:
        raise KubeconfigInvalid(str(exc)) from None


# ---------------------------------------------------------------------------------------------
# The gateway
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Builtin:
    api: str  # "core" | "apps" | "networking"
    suffix: str  # method suffix: read_namespaced_<suffix>
    api_version: str


@dataclass(frozen=True)
class _Custom:
    plural: str
    default_api_version: str


KINDS: dict[str, _Builtin | _Custom] = {
    "Secret": _Builtin("core", "secret", "v1"),
    "Service": _Builtin("core", "service", "v1"),
    "PersistentVolumeClaim": _Builtin("core", "persistent_volume_claim", "v1"),
    "Pod": _Builtin("core", "pod", "v1"),
    "Event": _Builtin("core", "event", "v1"),
    "StatefulSet": _Builtin("apps", "stateful_set", "apps/v1"),
    "Ingress": _Builtin("networking", "ingress", "networking.k8s.io/v1"),
    "Cluster": _Custom("clusters", "apps.kubeblocks.io/v1"),
}


def _split_api_version(api_version: str) -> tuple[str, str]:
    if "/" not in api_version:
        raise ValueError(f"custom kinds need a group/version apiVersion, got {api_version!r}")
    group, version = api_version.split("/", 1)
    return group, version


IMMEDIATE_RETRIES = 2
FAST_FAILURE_SECONDS = 1.0  # a failure slower than this is not retried at once


def _retry_at_once(exc: KubeTransient) -> bool:
    if exc.retry_after:
        return False
    return exc.status in (500, 502, 503, 504) or exc.reason == "ConnectionFailed"


class Kube:
    """A client for one kubeconfig, working in its current context's namespace.

    Every connection goes through `egress` (default: public addresses only), checked at connect
    time on the address actually connected to (`reconcile.kube.transport`).
    """

    def __init__(
        self,
        kubeconfig_text: str,
        *,
        connect_timeout: float = CONNECT_TIMEOUT,
        read_timeout: float = READ_TIMEOUT,
        egress: EgressPolicy | None = None,
    ) -> None:
        data, info = _load_yaml(kubeconfig_text)
        self.info = info
        self.namespace = info.namespace
        self.timeouts = (float(connect_timeout), float(read_timeout))
        self.deadline: float | None = None  # time.monotonic() by which a step's requests must be done
        self.egress = egress if egress is not None else EgressPolicy()
        configuration = k8s_client.Configuration()
        configuration.retries = False  # urllib3 must not retry behind our back (read when the pool is built)
        try:
            self.api_client = k8s_config.new_client_from_config_dict(
                data, context=info.context, persist_config=False, client_configuration=configuration
            )
        except KubeError:
            raise
        except Exception as exc:  # the loader raises ConfigException, ValueError, binascii.Error...
            # (its text may quote the kubeconfig's secrets: name the kind of failure only)
            raise KubeconfigInvalid(
                f"cannot build a client from the kubeconfig ({type(exc).__name__})"
            ) from exc
        self.api_client.configuration.retries = False
        rest = self.api_client.rest_client
        built, rest.pool_manager = rest.pool_manager, egress_pool_manager(rest.pool_manager, self.egress)
        built.clear()
        self.core = k8s_client.CoreV1Api(self.api_client)
        self.apps = k8s_client.AppsV1Api(self.api_client)
        self.networking = k8s_client.NetworkingV1Api(self.api_client)
        self.custom = k8s_client.CustomObjectsApi(self.api_client)
        self.authorization = k8s_client.AuthorizationV1Api(self.api_client)
        self.version_api = k8s_client.VersionApi(self.api_client)
        self.storage = k8s_client.StorageV1Api(self.api_client)
        self._endpoint: execstream.Endpoint | None = None  # built at the first exec
        self.closed = False

    def __repr__(self) -> str:
        return f"Kube(server={self.info.server_host!r}, namespace={self.namespace!r})"

    def for_step(self, namespace: str, budget: float | None = None) -> Kube:
        """The same connection for one reconcile step: working in `namespace` (the one recorded on the
        resource row, so objects are always operated where they were created) and, with `budget`,
        sharing that many seconds across all of the step's requests (each request's timeouts shrink to
        what is left; past it, a request fails at once with a transient error)."""
        other = copy.copy(self)
        other.namespace = namespace or self.namespace
        other.deadline = time.monotonic() + budget if budget else None
        return other

    # -- plumbing ---------------------------------------------------------------------------

    def timeout(self) -> tuple[float, float]:
        """(connect, read) seconds for the next request: the client's, or what is left of the step's
        budget when that is less."""
        if self.deadline is None:
            return self.timeouts
        left = self.deadline - time.monotonic()
        if left <= 0.05:
            raise KubeTransient(
                "the API server did not answer within the step's time budget", reason="Budget"
            )
        return (min(self.timeouts[0], left), min(self.timeouts[1], left))

    def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call a generated API method; return the decoded JSON body (None when empty).

        A 500/502/503/504 without Retry-After, or a dropped connection, that came back quickly is tried
        again at once (IMMEDIATE_RETRIES times): one flaky response should not cost a whole step and its
        backoff. Slow failures, timeouts and 429s are not: they go back to the reconciler, which backs
        off, so a slow server never holds a worker for long.
        """
        for attempt in range(IMMEDIATE_RETRIES + 1):
            started = time.monotonic()
            try:
                return self._call_once(fn, *args, **kwargs)
            except KubeTransient as exc:
                fast = time.monotonic() - started < FAST_FAILURE_SECONDS
                if attempt == IMMEDIATE_RETRIES or not fast or not _retry_at_once(exc):
                    raise
        raise AssertionError("unreachable")

    def _call_once(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs["_preload_content"] = False
        kwargs["_request_timeout"] = self.timeout()
        with translate_errors():
            response = fn(*args, **kwargs)
            try:
                raw = response.data
            finally:
                with contextlib.suppress(Exception):
                    response.release_conn()
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise KubePermanent(NOT_KUBERNETES, reason="NotKubernetes") from None

    def _kind(self, kind: str) -> _Builtin | _Custom:
        try:
            return KINDS[kind]
        except KeyError:
            raise ValueError(f"unsupported kind {kind!r}; expected one of {', '.join(KINDS)}") from None

    def _custom_args(self, spec: _Custom, api_version: str | None) -> tuple[str, str, str, str]:
        """(group, version, namespace, plural): the leading arguments of CustomObjectsApi methods."""
        group, version = _split_api_version(api_version or spec.default_api_version)
        return group, version, self.namespace, spec.plural

    def _builtin_method(self, spec: _Builtin, verb: str) -> Callable[..., Any]:
        return getattr(getattr(self, spec.api), f"{verb}_namespaced_{spec.suffix}")

    def _prepare(self, manifest: Mapping[str, Any]) -> tuple[str, str, Manifest]:
        kind = manifest.get("kind")
        meta = manifest.get("metadata") or {}
        name = meta.get("name")
        if not isinstance(kind, str) or not isinstance(name, str) or not name:
            raise ValueError("a manifest needs kind and metadata.name")
        namespace = meta.get("namespace")
        if namespace and namespace != self.namespace:
            raise KubePermanent(
                f"{kind} {name} belongs to namespace '{namespace}', but the kubeconfig's namespace is "
                f"'{self.namespace}'",
                reason="NamespaceMismatch",
            )
        body = dict(manifest)
        body["metadata"] = dict(meta, namespace=self.namespace)
        return kind, name, body

    # -- generic verbs --------------------------------------------------------------------------

    def get(self, kind: str, name: str, *, api_version: str | None = None) -> Manifest:
        spec = self._kind(kind)
        if isinstance(spec, _Custom):
            return self._call(
                self.custom.get_namespaced_custom_object, *self._custom_args(spec, api_version), name
            )
        return self._call(self._builtin_method(spec, "read"), name, self.namespace)

    def create(self, manifest: Mapping[str, Any]) -> Manifest:
        """POST a new object. 409 AlreadyExists raises KubeConflict(already_exists=True)."""
        kind, _name, body = self._prepare(manifest)
        spec = self._kind(kind)
        try:
            if isinstance(spec, _Custom):
                args = self._custom_args(spec, body.get("apiVersion"))
                return self._call(self.custom.create_namespaced_custom_object, *args, body)
            return self._call(self._builtin_method(spec, "create"), self.namespace, body)
        except KubeNotFound as exc:
            # On create, 404 can only be about the container: the namespace is gone.
            raise KubePermanent(exc.message, status=404, reason=exc.reason) from exc

    def replace(self, manifest: Mapping[str, Any]) -> Manifest:
        """PUT the whole object (set metadata.resourceVersion for optimistic concurrency: 409 if stale)."""
        kind, name, body = self._prepare(manifest)
        spec = self._kind(kind)
        if isinstance(spec, _Custom):
            args = self._custom_args(spec, body.get("apiVersion"))
            return self._call(self.custom.replace_namespaced_custom_object, *args, name, body)
        return self._call(self._builtin_method(spec, "replace"), name, self.namespace, body)

    def patch(
        self,
        kind: str,
        name: str,
        body: Any,
        patch_type: PatchType = "merge",
        *,
        api_version: str | None = None,
    ) -> Manifest:
        """PATCH with a merge patch (dict), a JSON patch (list of ops) or a strategic merge patch."""
        if patch_type not in _PATCH_CONTENT_TYPES:
            raise ValueError(f"unknown patch type {patch_type!r}")
        if patch_type == "json" and not isinstance(body, list):
            raise ValueError("a JSON patch is a list of operations")
        if patch_type != "json" and not isinstance(body, dict):
            raise ValueError(f"a {patch_type} patch is an object")
        content_type = _PATCH_CONTENT_TYPES[patch_type]
        spec = self._kind(kind)
        if isinstance(spec, _Custom):
            if patch_type == "strategic":
                raise ValueError("custom resources do not support strategic merge patches")
            args = self._custom_args(spec, api_version)
            return self._call(
                self.custom.patch_namespaced_custom_object, *args, name, body, _content_type=content_type
            )
        return self._call(
            self._builtin_method(spec, "patch"), name, self.namespace, body, _content_type=content_type
        )

    def delete(self, kind: str, name: str, *, api_version: str | None = None, uid: str | None = None) -> None:
        """Delete in the background. Raises KubeNotFound when already gone (callers treat it as done).
        With `uid`, the delete only applies to that very object (409 if the name was re-used)."""
        spec = self._kind(kind)
        extra: dict[str, Any] = {"propagation_policy": "Background"}
        if uid:
            extra["body"] = {
                "apiVersion": "v1",
                "kind": "DeleteOptions",
                "propagationPolicy": "Background",
                "preconditions": {"uid": uid},
            }
        if isinstance(spec, _Custom):
            self._call(
                self.custom.delete_namespaced_custom_object,
                *self._custom_args(spec, api_version),
                name,
                **extra,
            )
            return
        self._call(self._builtin_method(spec, "delete"), name, self.namespace, **extra)

    def list(
        self,
        kind: str,
        label_selector: str = "",
        *,
        field_selector: str = "",
        api_version: str | None = None,
    ) -> builtins.list[Manifest]:
        """Objects of a kind in the namespace (each with apiVersion and kind filled in)."""
        spec = self._kind(kind)
        query: dict[str, Any] = {}
        if label_selector:
            query["label_selector"] = label_selector
        if field_selector:
            query["field_selector"] = field_selector
        if isinstance(spec, _Custom):
            args = self._custom_args(spec, api_version)
            result = self._call(self.custom.list_namespaced_custom_object, *args, **query)
            item_version = f"{args[0]}/{args[1]}"
        else:
            result = self._call(self._builtin_method(spec, "list"), self.namespace, **query)
            item_version = spec.api_version
        items = list((result or {}).get("items") or [])
        for item in items:
            item.setdefault("apiVersion", item_version)
            item.setdefault("kind", kind)
        return items

    def apply(self, manifest: Mapping[str, Any]) -> tuple[Manifest, str]:
        """Create; on AlreadyExists return the existing object instead.

        Returns (object, "created") or (existing object, "exists"). The caller checks the existing
        object's ownership labels before converging it (replace with its resourceVersion).
        """
        try:
            return self.create(manifest), "created"
        except KubeConflict as exc:
            if not exc.already_exists:
                raise
        kind = str(manifest["kind"])
        name = str(manifest["metadata"]["name"])
        api_version = manifest.get("apiVersion") if isinstance(self._kind(kind), _Custom) else None
        try:
            return self.get(kind, name, api_version=api_version), "exists"
        except KubeNotFound:
            raise KubeTransient(
                f"{kind} {name} disappeared between create and read; try again", reason="Vanished"
            ) from None

    # -- specific reads ---------------------------------------------------------------------------

    # -- cluster-scoped reads (for `manage.py doctor`) -------------------------------------------------

    def ingress_class(self, name: str) -> Manifest | None:
        """The IngressClass `name`, or None when the cluster has none by that name."""
        try:
            return self._call(self.networking.read_ingress_class, name)
        except KubeNotFound:
            return None

    def storage_classes(self) -> builtins.list[Manifest]:
        result = self._call(self.storage.list_storage_class)
        return list((result or {}).get("items") or [])

    def serves(self, kind: str, api_version: str) -> bool:
        """Does the cluster serve this custom kind at this version (e.g. KubeBlocks' Cluster)?"""
        try:
            self.list(kind, api_version=api_version)
        except KubeNotFound:
            return False
        return True

    def version(self) -> str:
        """The API server's gitVersion (e.g. "v1.33.1"): the cheapest reachability check."""
        data = self._call(self.version_api.get_code) or {}
        return str(data.get("gitVersion") or "")

    def can_i(self, verb: str, resource: str, group: str = "") -> tuple[bool, str]:
        """SelfSubjectAccessReview in our namespace: (allowed, the authorizer's reason)."""
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectAccessReview",
            "spec": {
                "resourceAttributes": {
                    "namespace": self.namespace,
                    "verb": verb,
                    "group": group,
                    "resource": resource,
                }
            },
        }
        data = self._call(self.authorization.create_self_subject_access_review, body) or {}
        status = data.get("status") or {}
        reason = str(status.get("reason") or status.get("evaluationError") or "")
        return bool(status.get("allowed")) and not status.get("denied"), reason

    # -- inside pods ------------------------------------------------------------------------------

    def exec(
        self,
        pod: str,
        command: builtins.list[str],
        *,
        stdin: bytes | str | None = None,
        timeout: float = 60.0,
        container: str | None = None,
        redact: Iterable[str] = (),
    ) -> ExecResult:
        """Run `command` (argv; see `execstream.sh`) in a container of `pod`, without a terminal.

        A non-zero exit is a result (`ExecResult.ok` False, `failure()` the stderr tail), not an error.
        Raises KubeTransient (reason "ExecTimeout") when it does not finish within `timeout` (or the
        step's budget), KubeTransient on connection failures and 5xx, KubeCredentials on 401/403,
        KubeNotFound when the pod is gone, KubePermanent on 400/422 (e.g. the container is not
        running, or unknown). `redact`: secret values to hide in the returned output and the log line.
        A pod with several containers needs `container` (the API server's rule). With `stdin`, the
        end of the input reaches the command only when the server speaks v5.channel.k8s.io (v4 has no
        way to close stdin alone): on a v4-only server, a command that reads stdin to its end waits
        until `timeout`.
        """
        if self._endpoint is None:
            try:
                self._endpoint = execstream.Endpoint.from_configuration(self.api_client.configuration)
            except (OSError, ValueError) as exc:
                raise KubeconfigInvalid(
                    f"cannot build the exec connection from the kubeconfig ({type(exc).__name__})"
                ) from exc
        return execstream.run(
            self._endpoint,
            self.egress,
            self.namespace,
            pod,
            command,
            stdin=stdin,
            container=container,
            timeout=timeout,
            connect_timeout=self.timeouts[0],
            deadline=self.deadline,
            redact=redact,
        )

    def logs(
        self, pod: str, *, container: str | None = None, tail: int = 100, since_seconds: int | None = None
    ) -> str:
        """The last `tail` lines the container printed (at most LOG_LIMIT bytes, the tail), decoded."""
        kwargs: dict[str, Any] = {"tail_lines": int(tail)}
        if container:
            kwargs["container"] = container
        if since_seconds:
            kwargs["since_seconds"] = int(since_seconds)
        kept = bytearray()
        with translate_errors():
            response = self.core.read_namespaced_pod_log(
                pod, self.namespace, _preload_content=False, _request_timeout=self.timeout(), **kwargs
            )
            try:
                for chunk in response.stream(65536):
                    kept += chunk
                    if len(kept) > LOG_LIMIT:
                        del kept[: len(kept) - LOG_LIMIT]
            finally:
                with contextlib.suppress(Exception):
                    response.release_conn()
        return bytes(kept).decode("utf-8", errors="replace")

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            self.api_client.close()
