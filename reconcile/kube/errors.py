"""The gateway's errors, and the translation of everything a Kubernetes call can raise into them.

Every failure leaves the gateway as a `KubeError` subclass (see `translate_errors`), so callers
decide "retry later" (`KubeTransient`), "give up" (`KubePermanent`, `KubeCredentials`,
`KubeconfigInvalid`), "done" (`KubeNotFound` on delete) or "read and converge" (`KubeConflict`).
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import urllib3
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

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

    def __init__(self, message: str) -> None:
        super().__init__(message, status=None, reason="KubeconfigInvalid")


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


def from_api_exception(exc: ApiException) -> KubeError:
    """Map an ApiException (HTTP error, or status 0 for client-side TLS/request errors) to a KubeError."""
    status = int(exc.status or 0)
    body = _status_body(getattr(exc, "body", None))
    message = str((body or {}).get("message") or "")
    reason = str((body or {}).get("reason") or exc.reason or "")
    details = (body or {}).get("details") or {}
    if not isinstance(details, dict):
        details = {}

    if status == 0:  # raised by the client itself: TLS failures, unusable request
        text = str(exc.reason or "")
        lowered = text.lower()
        if (
            "certificate verify failed" in lowered
            or "certificate_verify_failed" in lowered
            or ("hostname" in lowered and "match" in lowered)
        ):
            return KubeCredentials(
                f"TLS verification of the API server failed (check the kubeconfig's CA): {text}",
                status=None,
                reason="TLSVerifyFailed",
            )
        if text.startswith("SSLError"):
            return KubeTransient(f"TLS error talking to the API server: {text}", reason="SSLError")
        return KubePermanent(text or "the request could not be prepared", reason="ClientError")

    if status in (401, 403):
        default = "Unauthorized: the kubeconfig's credentials were rejected" if status == 401 else "Forbidden"
        return KubeCredentials(message or default, status=status, reason=reason or exc.reason or "")
    if status == 404:
        if body is None or body.get("kind") != "Status" or not details.get("name"):
            # The resource type itself is missing (e.g. a CRD not installed), not one object.
            what = message or "the server could not find the requested resource"
            return KubePermanent(
                f"{what} (is the resource type installed in the cluster?)",
                status=404,
                reason=reason or "NotFound",
                kind_missing=True,
            )
        return KubeNotFound(message or "not found", status=404, reason=reason or "NotFound")
    if status == 409:
        return KubeConflict(message or "conflict", status=409, reason=reason or "Conflict")
    if status == 429 or status >= 500 or status == 408:
        retry_after = parse_retry_after(_header(getattr(exc, "headers", None), "Retry-After"))
        if retry_after is None and details.get("retryAfterSeconds") is not None:
            with contextlib.suppress(TypeError, ValueError):
                retry_after = max(0.0, float(details["retryAfterSeconds"]))
        default = "too many requests" if status == 429 else f"API server error {status}"
        return KubeTransient(message or default, status=status, reason=reason, retry_after=retry_after)
    return KubePermanent(
        message or f"request rejected ({status} {reason})".strip(), status=status, reason=reason
    )


def from_transport_error(exc: BaseException) -> KubeError:
    """Map a urllib3/socket/ssl error (no HTTP response) to a KubeError."""
    inner: BaseException = exc
    if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason is not None:
        inner = exc.reason
    if isinstance(inner, ssl.SSLCertVerificationError) or (
        isinstance(inner, urllib3.exceptions.SSLError) and "certificate verify failed" in str(inner).lower()
    ):
        return KubeCredentials(
            f"TLS verification of the API server failed (check the kubeconfig's CA): {inner}",
            reason="TLSVerifyFailed",
        )
    if isinstance(inner, urllib3.exceptions.LocationValueError):
        return KubePermanent(f"the API server URL is unusable: {inner}", reason="BadURL")
    if isinstance(inner, urllib3.exceptions.ReadTimeoutError | socket.timeout | TimeoutError):
        return KubeTransient(f"the API server did not answer in time: {inner}", reason="Timeout")
    if isinstance(inner, urllib3.exceptions.NewConnectionError):
        return KubeTransient(f"cannot connect to the API server: {inner}", reason="ConnectionFailed")
    if isinstance(inner, urllib3.exceptions.ConnectTimeoutError):
        return KubeTransient(f"connecting to the API server timed out: {inner}", reason="Timeout")
    if isinstance(inner, urllib3.exceptions.SSLError | ssl.SSLError):
        return KubeTransient(f"TLS error talking to the API server: {inner}", reason="SSLError")
    if isinstance(inner, urllib3.exceptions.ProtocolError | ConnectionError):
        return KubeTransient(f"the connection to the API server failed: {inner}", reason="ConnectionFailed")
    if isinstance(inner, urllib3.exceptions.HTTPError | OSError):
        return KubeTransient(f"talking to the API server failed: {inner}", reason=type(inner).__name__)
    return KubeTransient(f"talking to the API server failed: {inner}", reason=type(inner).__name__)


_TRANSPORT_ERRORS = (urllib3.exceptions.HTTPError, OSError, ssl.SSLError, socket.timeout, TimeoutError)


def translate(exc: BaseException) -> KubeError:
    """The KubeError for any exception a Kubernetes call can raise (KubeErrors pass through)."""
    if isinstance(exc, KubeError):
        return exc
    if isinstance(exc, ApiException):
        return from_api_exception(exc)
    if isinstance(exc, k8s_config.ConfigException):
        return KubeconfigInvalid(f"unusable kubeconfig: {exc}")
    return from_transport_error(exc)


@contextlib.contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise ApiException and urllib3/socket/ssl errors as KubeError subclasses (with the cause)."""
    try:
        yield
    except KubeError:
        raise
    except (ApiException, k8s_config.ConfigException, *_TRANSPORT_ERRORS) as exc:
        raise translate(exc) from exc
