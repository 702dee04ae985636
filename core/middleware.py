"""Refusals before any view runs, in our usual error shape: a NUL in the URL (no route, query parameter
or database column can hold one) and, on the API, a body larger than DATA_UPLOAD_MAX_MEMORY_SIZE (DRF
reads the body itself, so Django's own check never runs there; core.drf.JSONParser bounds chunked
bodies too)."""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

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
