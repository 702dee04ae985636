"""Wiring-level middleware."""

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from config.views import page_not_found


class FriendlyNotFoundMiddleware:
    """With DEBUG on (`make run`), Django answers a 404 with its technical page (the URL patterns, the
    exception text). Users trying the app locally should see the same friendly page as in production:
    any HTML 404 not rendered by our handler is replaced by it. `?debug404` keeps Django's page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            settings.DEBUG
            and response.status_code == 404
            and "text/html" in response.get("Content-Type", "")
            and not getattr(response, "friendly", False)
            and "debug404" not in request.GET
        ):
            return page_not_found(request)
        return response
