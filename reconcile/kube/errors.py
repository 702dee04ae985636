"""The gateway's errors, and the translation of everything a Kubernetes call can raise into them.

Every failure leaves the gateway as a `KubeError` subclass (see `translate_errors`), so callers
decide "retry later" (`KubeTransient`), "give up" (`KubePermanent`, `KubeCredentials`,
`KubeconfigInvalid`), "done" (`KubeNotFound` on delete) or "read and converge" (`KubeConflict`).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import re
import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import urllib3
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from reconcile.kube.egress import REFUSED_MESSAGE, EgressRefused

logger = logging.getLogger(__name__)

MAX_MESSAGE = 600


class KubeError(Exception):
    """A Kubernetes call failed. `status` is the HTTP status (None: no response), `reason` the
    Status reason (or a short tag), `message` a human sentence safe to show to the resource owner."""

    retryable = False

    def __init__(self, message: str, *, status: int | None = None, reason: str = "") -> None:
        self.message = shorten(message) or reason or "Kubernetes request failed"
        self.status = status
        self.reason = reason
        super().__init__(self.message)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, reason={self.reason!r}, message={self.message!r})"
        )


class KubeNotFound(KubeError):
    """404 for an object (the kind exists). Callers deleting something treat it as done."""


class KubeConflict(KubeError):
    """409: AlreadyExists on create (`already_exists`), or a stale resourceVersion on replace."""

    def __init__(self, message: str, *, status: int | None = 409, reason: str = "Conflict") -> None:
        super().__init__(message, status=status, reason=reason)
        self.already_exists = reason == "AlreadyExists"


class KubeTransient(KubeError):
    """Worth retrying later: 5xx, 429, timeouts, refused/reset connections, TLS EOF.
    `retry_after` (seconds) when the server said how long to wait."""

    retryable = True

    def __init__(
        self, message: str, *, status: int | None = None, reason: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status, reason=reason)
        self.retry_after = retry_after


class KubePermanent(KubeError):
    """Retrying the same request cannot help: 400, 405, 415, 422, or a kind the cluster does not
    serve (404 for the resource type itself, e.g. KubeBlocks not installed: `kind_missing`)."""

    def __init__(
        self, message: str, *, status: int | None = None, reason: str = "", kind_missing: bool = False
    ) -> None:
        super().__init__(message, status=status, reason=reason)
        self.kind_missing = kind_missing


class KubeCredentials(KubeError):
    """401/403, or the API server's certificate does not match the kubeconfig's CA."""


class KubeconfigInvalid(KubeError):
    """The kubeconfig text cannot be used to build a client (the message says why)."""

    def __init__(self, message: str, reason: str = "KubeconfigInvalid") -> None:
        super().__init__(message, status=None, reason=reason)


class KubeEgressRefused(KubeconfigInvalid):
    """The kubeconfig's server is an address the egress policy refuses: nothing was sent there."""

    def __init__(self, message: str = REFUSED_MESSAGE) -> None:
        super().__init__(message, reason="EgressRefused")


def shorten(text: object, limit: int = MAX_MESSAGE) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _status_body(body: object) -> dict[str, Any] | None:
    """The apiserver's Status object from an error body, if it is one."""
    if isinstance(body, bytes | bytearray):
        body = body.decode("utf-8", errors="replace")
    if not isinstance(body, str) or not body.strip():
        return None
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _header(headers: object, name: str) -> str | None:
    if headers is None:
        return None
    items = headers.items() if hasattr(headers, "items") else headers
    try:
        for key, value in items:  # type: ignore[union-attr]
            if str(key).lower() == name.lower():
                return str(value)
    except (TypeError, ValueError):
        return None
    return None


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date (never negative)."""
    if value is None or not str(value).strip():
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


# What users are told: one of these classes, never bytes from the remote end (which may be any HTTP
# server on the worker's network, not a Kubernetes API server).
CONNECTION_REFUSED = "connection refused"
CONNECTION_FAILED = "connection failed"
TIMED_OUT = "connection timed out"
NAME_NOT_RESOLVED = "the server's host name does not resolve"
TLS_FAILED = "TLS verification failed"
TLS_ERROR = "TLS error"
NOT_KUBERNETES = "not a Kubernetes API server"
UNAUTHORIZED = "unauthorized"
FORBIDDEN = "forbidden"
EGRESS_REFUSED = "refused by the egress policy"

# The Status reasons Kubernetes defines (metav1.StatusReason): the only ones ever repeated.
_REASONS = frozenset(
    {
        "Unauthorized",
        "Forbidden",
        "NotFound",
        "AlreadyExists",
        "Conflict",
        "Gone",
        "Invalid",
        "ServerTimeout",
        "StoreReadError",
        "Timeout",
        "TooManyRequests",
        "BadRequest",
        "MethodNotAllowed",
        "NotAcceptable",
        "RequestEntityTooLarge",
        "UnsupportedMediaType",
        "InternalError",
        "Expired",
        "ServiceUnavailable",
    }
)
_VERBS = frozenset({"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"})
_FORBIDDEN = re.compile(
    r'cannot ([a-z]{1,20}) resource "([a-z0-9][a-z0-9.-]{0,120})"'
    r'(?: in API group "[a-z0-9.-]{0,120}")?(?: in the namespace "([a-z0-9][a-z0-9-]{0,62})")?'
)


def _safe_reason(*candidates: object) -> str:
    """The first candidate that is a known Status reason, else ""."""
    for candidate in candidates:
        if isinstance(candidate, str) and candidate in _REASONS:
            return candidate
    return ""


def forbidden_summary(text: str) -> str:
    """ "forbidden: cannot create statefulsets in namespace ns-x" from the apiserver's sentence; only
    a known verb and strictly shaped names are repeated, anything else gives plain "forbidden"."""
    match = _FORBIDDEN.search(text or "")
    if not match or match.group(1) not in _VERBS:
        return FORBIDDEN
    verb, resource, namespace = match.groups()
    return f"{FORBIDDEN}: cannot {verb} {resource}" + (f" in namespace {namespace}" if namespace else "")


def _is_verify_failure(text: str) -> bool:
    lowered = text.lower()
    return (
        "certificate verify failed" in lowered
        or "certificate_verify_failed" in lowered
        or ("hostname" in lowered and "match" in lowered)
        or "wrong_version_number" in lowered  # https to a plain-HTTP port
        or "record layer failure" in lowered
    )


def from_api_exception(exc: ApiException) -> KubeError:
    """Map an ApiException (HTTP error, or status 0 for client-side TLS/request errors) to a KubeError."""
    status = int(getattr(exc, "status", None) or 0)
    body = _status_body(getattr(exc, "body", None))
    is_status = body is not None and body.get("kind") == "Status"
    reason = _safe_reason((body or {}).get("reason"), getattr(exc, "reason", None))
    details = (body or {}).get("details") or {}
    if not isinstance(details, dict):
        details = {}

    if status == 0:  # raised by the client itself: TLS failures, unusable request
        text = str(getattr(exc, "reason", "") or "")
        if _is_verify_failure(text):
            return KubeCredentials(TLS_FAILED, reason="TLSVerifyFailed")
        if text.startswith("SSLError"):
            return KubeTransient(TLS_ERROR, reason="SSLError")
        return KubePermanent("the request could not be prepared", reason="ClientError")

    if status == 401:
        return KubeCredentials(UNAUTHORIZED, status=401, reason="Unauthorized")
    if status == 403:
        message = str((body or {}).get("message") or "") if is_status else ""
        return KubeCredentials(forbidden_summary(message), status=403, reason="Forbidden")
    if status == 404:
        if not is_status or not details.get("name"):
            # The resource type itself is missing (e.g. a CRD not installed), not one object.
            return KubePermanent(
                "the cluster does not serve this resource type (is it installed?)",
                status=404,
                reason=reason or "NotFound",
                kind_missing=True,
            )
        return KubeNotFound("not found", status=404, reason=reason or "NotFound")
    if status == 409:
        reason = reason or "Conflict"
        message = "already exists" if reason == "AlreadyExists" else "conflict: the object was changed"
        return KubeConflict(message, status=409, reason=reason)
    if status == 429 or status >= 500 or status == 408:
        retry_after = parse_retry_after(_header(getattr(exc, "headers", None), "Retry-After"))
        if retry_after is None and details.get("retryAfterSeconds") is not None:
            with contextlib.suppress(TypeError, ValueError):
                retry_after = max(0.0, float(details["retryAfterSeconds"]))
        message = "too many requests" if status == 429 else f"API server error {status}"
        return KubeTransient(message, status=status, reason=reason, retry_after=retry_after)
    if status < 400 or not is_status:  # a redirect, or an error page that is not a Status
        return KubePermanent(NOT_KUBERNETES, status=status, reason="NotKubernetes")
    return KubePermanent(
        f"the API server rejected the request ({status}{' ' + reason if reason else ''})",
        status=status,
        reason=reason,
    )


def from_transport_error(exc: BaseException) -> KubeError:
    """Map a urllib3/socket/ssl error (no HTTP response) to a KubeError."""
    inner: BaseException = exc
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        inner = exc.reason
    if (
        isinstance(inner, urllib3.exceptions.SSLError)
        and inner.args
        and isinstance(inner.args[0], BaseException)
    ):
        inner = inner.args[0]
    if isinstance(inner, EgressRefused):
        return KubeEgressRefused(str(inner))
    if isinstance(inner, ssl.SSLCertVerificationError | ssl.CertificateError) or (
        isinstance(inner, urllib3.exceptions.SSLError | ssl.SSLError) and _is_verify_failure(str(inner))
    ):
        return KubeCredentials(TLS_FAILED, reason="TLSVerifyFailed")
    if isinstance(inner, urllib3.exceptions.LocationValueError):
        return KubePermanent("the server URL is unusable", reason="BadURL")
    if isinstance(inner, urllib3.exceptions.NameResolutionError | socket.gaierror):
        return KubeTransient(NAME_NOT_RESOLVED, reason="NameResolution")
    if isinstance(inner, urllib3.exceptions.ReadTimeoutError | socket.timeout | TimeoutError):
        return KubeTransient(TIMED_OUT, reason="Timeout")
    if isinstance(inner, urllib3.exceptions.ConnectTimeoutError) and not isinstance(
        inner, urllib3.exceptions.NewConnectionError
    ):
        return KubeTransient(TIMED_OUT, reason="Timeout")
    if isinstance(inner, urllib3.exceptions.NewConnectionError | ConnectionRefusedError):
        cause = inner.__cause__ or inner.__context__
        if isinstance(cause, TimeoutError):
            return KubeTransient(TIMED_OUT, reason="Timeout")
        refused = isinstance(inner, ConnectionRefusedError) or isinstance(cause, ConnectionRefusedError)
        return KubeTransient(CONNECTION_REFUSED if refused else CONNECTION_FAILED, reason="ConnectionFailed")
    if isinstance(inner, urllib3.exceptions.SSLError | ssl.SSLError):
        return KubeTransient(TLS_ERROR, reason="SSLError")
    if isinstance(inner, urllib3.exceptions.ProtocolError | ConnectionError | http.client.HTTPException):
        return KubeTransient(CONNECTION_FAILED, reason="ConnectionFailed")
    if isinstance(inner, urllib3.exceptions.HTTPError | OSError):
        return KubeTransient(CONNECTION_FAILED, reason=type(inner).__name__)
    return KubeTransient(CONNECTION_FAILED, reason=type(inner).__name__)


_TRANSPORT_ERRORS = (
    urllib3.exceptions.HTTPError,
    OSError,
    ssl.SSLError,
    socket.timeout,
    TimeoutError,
    http.client.HTTPException,
    EgressRefused,
)


def translate(exc: BaseException) -> KubeError:
    """The KubeError for any exception a Kubernetes call can raise (KubeErrors pass through)."""
    if isinstance(exc, KubeError):
        return exc
    if isinstance(exc, ApiException):
        return from_api_exception(exc)
    if isinstance(exc, k8s_config.ConfigException):
        return KubeconfigInvalid("the kubeconfig cannot be loaded")
    if isinstance(exc, _TRANSPORT_ERRORS):
        return from_transport_error(exc)
    # ValueError/AttributeError from inside the client on input it cannot handle (e.g. a
    # URL or header it cannot build, or its own failure paths): the request cannot be made.
    return KubePermanent("the request to the API server could not be made", reason=type(exc).__name__)


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise ApiException and urllib3/socket/ssl errors as KubeError subclasses (with the cause)."""
    try:
        yield
    except KubeError:
        raise
    except (ApiException, k8s_config.ConfigException, *_TRANSPORT_ERRORS) as exc:
        raise translate(exc) from exc
    except (ValueError, AttributeError) as exc:
        # The client's own failure paths end up here: on a TLS failure it raises ApiException(status=0)
        # and then fails on it (`e.body.decode()` on None): translate the error it was handling.
        context = exc.__context__
        if isinstance(context, (ApiException, k8s_config.ConfigException, *_TRANSPORT_ERRORS)):
            raise translate(context) from context
        logger.warning("Kubernetes client failed: %s", type(exc).__name__, exc_info=True)
        raise translate(exc) from exc
