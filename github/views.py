"""GitHub's side of the browser flow: "Connect GitHub" (to the App's install page, with a signed state),
the install callback, and the webhook endpoint."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from core.audit import actor_for
from core.drf import error_body
from core.errors import ServiceError
from github import services
from userconfig.auth import current_user


@login_required
@require_GET
@never_cache
def connect(request: HttpRequest) -> HttpResponse:
    try:
        return HttpResponseRedirect(services.connect_url(user=current_user(request)))
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect("dashboard:list")


@login_required
@require_GET
@never_cache
def callback(request: HttpRequest) -> HttpResponse:
    try:
        row = services.install_callback(
            user=current_user(request),
            installation_id=request.GET.get("installation_id", ""),
            state=request.GET.get("state", ""),
            code=request.GET.get("code", ""),
            actor=actor_for(request),
        )
    except ServiceError as exc:
        messages.error(request, f"GitHub was not connected: {exc.message}")
        return redirect("dashboard:list")
    messages.success(request, f"GitHub connected: {row.account_login}. You can import its repositories now.")
    return redirect("/?import=github")


@csrf_exempt
@require_POST
def webhook(request: HttpRequest) -> JsonResponse:
    try:
        outcome = services.webhook_receive(
            body=request.body,
            signature=request.headers.get("X-Hub-Signature-256", ""),
            event=request.headers.get("X-GitHub-Event", ""),
            delivery=request.headers.get("X-GitHub-Delivery", ""),
        )
    except ServiceError as exc:
        return JsonResponse(error_body(exc.code, exc.message, exc.details), status=exc.status_code)
    return JsonResponse({"ok": True, "outcome": outcome})
