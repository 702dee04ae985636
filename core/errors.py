"""Domain errors raised by services. The API and the dashboard turn them into a code and a message."""

from typing import Any


class ServiceError(Exception):
    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details or {}


class ValidationFailed(ServiceError):
    code = "invalid"


class InvalidState(ServiceError):
    status_code = 409
    code = "invalid_state"


class Conflict(ServiceError):
    status_code = 409
    code = "conflict"


class NotFound(ServiceError):
    status_code = 404
    code = "not_found"


class KubeconfigRequired(ServiceError):
    status_code = 400
    code = "kubeconfig_required"


class QuotaExceeded(ServiceError):
    """A per-user limit would be passed. details: {quota, limit, in_use, asked} (CPU in millicores,
    memory in bytes, as `unit` says)."""

    status_code = 409
    code = "quota_exceeded"
