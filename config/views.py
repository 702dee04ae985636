"""Site-wide dashboard views: sign in/out/up and the error pages."""

import logging

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, HttpResponseServerError
from django.shortcuts import render
from django.template import loader
from django.views.decorators.csrf import requires_csrf_token

from core.middleware import refusal

logger = logging.getLogger(__name__)


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's own refusals (a form body over DATA_UPLOAD_MAX_MEMORY_SIZE, too many fields, a bad
    Host): JSON in the usual shape on the API, a page on the dashboard."""
    if isinstance(exception, RequestDataTooBig):
        return refusal(request, 413, "request_too_large", "The request is too large.")
    return refusal(request, 400, "bad_request", "The request could not be read.")


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    response = render(request, "404.html", status=404)
    response.friendly = True  # type: ignore[attr-defined]  # seen by FriendlyNotFoundMiddleware
    return response


@requires_csrf_token
def server_error(request: HttpRequest) -> HttpResponse:
    # No context processors: whatever broke the request may break them too.
    return HttpResponseServerError(loader.get_template("500.html").render({}))


def dashboard_links(request: HttpRequest) -> dict[str, bool]:
    """Context processor: whether this user may open the API docs (the same rule as SchemaAccess)."""
    user = getattr(request, "user", None)
    staff = bool(user is not None and user.is_authenticated and user.is_staff)
    return {"api_docs_link": bool(settings.API_SCHEMA_PUBLIC or staff)}
