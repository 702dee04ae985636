"""API rate limits per user (the cache, shared by every process): reads, and the lifecycle writes of the
views that declare `lifecycle_writes = True`. Rates come from settings.API_THROTTLE_RATES at call time,
so a test can override them; a refusal is a 429 with Retry-After and the usual error body."""

import math
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from rest_framework.request import Request
from rest_framework.throttling import SimpleRateThrottle

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
LIFECYCLE_METHODS = {"POST", "DELETE"}


class _UserThrottle(SimpleRateThrottle):
    def __init__(self) -> None:  # the rate is read per request (see get_rate)
        pass

    def get_rate(self) -> str | None:
        return settings.API_THROTTLE_RATES.get(self.scope or "")

    def applies(self, request: Request, view: Any) -> bool:
        raise NotImplementedError

    def allow_request(self, request: Request, view: Any) -> bool:
        if not self.applies(request, view):
            return True
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        return super().allow_request(request, view)

    def get_cache_key(self, request: Request, view: Any) -> str | None:
        user = request.user
        ident = user.pk if user is not None and user.is_authenticated else self.get_ident(request)
        return f"throttle:{self.scope}:{ident}"


class ReadThrottle(_UserThrottle):
    scope = "read"

    def applies(self, request: Request, view: Any) -> bool:
        return request.method in SAFE_METHODS


class LifecycleWriteThrottle(_UserThrottle):
    scope = "lifecycle_write"

    def applies(self, request: Request, view: Any) -> bool:
        return request.method in LIFECYCLE_METHODS and getattr(view, "lifecycle_writes", False)


class DashboardLifecycleThrottle(LifecycleWriteThrottle):
    """The dashboard's lifecycle actions (create, start, stop, delete, env saves...) draw on the same
    per-user bucket as the API's lifecycle writes, so switching surfaces gives no extra room."""

    def applies(self, request: Request, view: Any) -> bool:
        return True


def lifecycle_wait(request: HttpRequest) -> int | None:
    """None when the signed-in user may make one more lifecycle change now (and counts it), else the
    seconds to wait. For dashboard views; the API's views declare `lifecycle_writes = True` instead."""
    throttle = DashboardLifecycleThrottle()
    if throttle.allow_request(request, None):  # type: ignore[arg-type]
        return None
    wait = throttle.wait()
    return max(1, math.ceil(wait)) if wait is not None else 1
