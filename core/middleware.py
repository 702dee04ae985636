"""Refusals before any view runs, in our usual error shape: a NUL in the URL (no route, query parameter
or database column can hold one) and, on the API, a body larger than DATA_UPLOAD_MAX_MEMORY_SIZE (DRF
reads the body itself, so Django's own check never runs there; core.drf.JSONParser bounds chunked
bodies too)."""

import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from core import observability

API_PREFIX = "/api/"


def refusal(request: HttpRequest, status: int, code: str, message: str, **details: object) -> HttpResponse:
    if request.path_info.startswith(API_PREFIX):
        return JsonResponse({"code": code, "message": message, "details": details}, status=status)
    return render(request, "400.html", {"status": status, "message": message}, status=status)


class InputGuardMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in request.path_info or "%00" in query or "\x00" in query:
            return refusal(request, 400, "invalid_characters", "The URL contains a NUL character.")
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is not None and request.path_info.startswith(API_PREFIX):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if length > limit:
                return refusal(
                    request,
                    413,
                    "request_too_large",
                    f"The request body is larger than {limit} bytes.",
                    max_bytes=limit,
                )
        return self.get_response(request)


class RequestIdMiddleware:
    """Every request gets an id (the caller's X-Request-ID when it is a plain token, else a fresh one):
    in the response header, on every log line it causes and in the Celery tasks it kicks. It also times
    the request for /metrics (by route pattern, never the raw path)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        rid = observability.clean_request_id(request.headers.get("X-Request-ID"))
        token = observability.request_id.set(rid)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
        finally:
            observability.request_id.reset(token)
        match = getattr(request, "resolver_match", None)
        route = (match.route or match.view_name) if match is not None else "unmatched"
        observability.HTTP_SECONDS.labels(request.method or "", route, str(response.status_code)).observe(
            time.perf_counter() - started
        )
        response["X-Request-ID"] = rid
        return response
