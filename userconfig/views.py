"""Dashboard pages of the user: sign in (with attempt limits), out and up; settings (the kubeconfig with its
live cluster check, the AI agent settings and personal API tokens)."""

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import forms as auth_forms
from django.contrib.auth import get_user_model, login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from core.audit import actor_for, client_ip
from core.errors import ServiceError
from projects import pools
from projects import services as project_services
from userconfig import github_signin, selectors, services
from userconfig.api import user_kubeconfig_state
from userconfig.auth import current_user
from userconfig.forms import AgentSettingsForm, ApiTokenForm, KubeconfigForm


class LoginView(auth_views.LoginView):
    template_name = "auth/login.html"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {
            **super().get_context_data(**kwargs),
            "signup_enabled": settings.SIGNUP_ENABLED,
            "github_signin": github_signin.enabled(),
        }

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        return github_signin.allow_form_action(super().dispatch(request, *args, **kwargs))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        wait = services.login_retry_after(username=request.POST.get("username", ""), ip=client_ip(request))
        if wait is not None:
            message = f"Too many failed sign-in attempts. Try again in {(wait + 59) // 60} minute(s)."
            if _wants_json(request):
                response: HttpResponse = JsonResponse(
                    {"code": "throttled", "message": message, "details": {"retry_after": wait}}, status=429
                )
            else:
                context = self.get_context_data(form=self.get_form_class()(request), locked=message)
                response = render(request, self.template_name, context, status=429)
            response["Retry-After"] = str(wait)
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form: auth_forms.AuthenticationForm) -> HttpResponse:
        services.login_failed(username=self.request.POST.get("username", ""), ip=client_ip(self.request))
        return super().form_invalid(form)

    def form_valid(self, form: auth_forms.AuthenticationForm) -> HttpResponse:
        services.login_succeeded(username=self.request.POST.get("username", ""))
        return super().form_valid(form)


class LogoutView(auth_views.LogoutView):
    pass


class SignupForm(auth_forms.UserCreationForm):
    class Meta(auth_forms.UserCreationForm.Meta):
        model = get_user_model()
        fields = ("username",)


def signup(request: HttpRequest) -> HttpResponse:
    if not settings.SIGNUP_ENABLED:
        raise Http404("Sign-up is disabled on this server.")
    if request.user.is_authenticated:
        return redirect("dashboard:list")
    form = SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("dashboard:settings")
    return render(request, "auth/signup.html", {"form": form}, status=400 if form.errors else 200)


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _agent_form(request: HttpRequest) -> AgentSettingsForm:
    agent = selectors.agent_settings(user=current_user(request))
    return AgentSettingsForm(
        initial={"base_url": agent.base_url, "model": agent.model, "small_fast_model": agent.small_fast_model}
    )


def _render(
    request: HttpRequest,
    kubeconfig_form: KubeconfigForm | None = None,
    agent_form: AgentSettingsForm | None = None,
    token_form: ApiTokenForm | None = None,
    new_token: tuple[Any, str] | None = None,
    status: int = 200,
) -> HttpResponse:
    context = {
        "tokens": selectors.api_tokens(user=current_user(request)),
        "now": timezone.now(),
        "token_form": token_form or ApiTokenForm(),
        "new_token": new_token and {"token": new_token[0], "secret": new_token[1]},
        "kubeconfig": selectors.kubeconfig_state(user=current_user(request)),
        "kubeconfig_pending": selectors.kubeconfig_pending_state(user=current_user(request)),
        "kubeconfig_form": kubeconfig_form or KubeconfigForm(),
        "agent": selectors.agent_settings(user=current_user(request)),
        "agent_form": agent_form or _agent_form(request),
        "idle": _idle_context(request),
        "warm": {"on": current_user(request).warm_pool, "offered": pools.offered()},
        "github_signin": github_signin.enabled(),
        "github_identity": selectors.github_identity(user=current_user(request)),
        "has_password": current_user(request).has_usable_password(),
        "nav": "settings",
    }
    return github_signin.allow_form_action(render(request, "settings/settings.html", context, status=status))


IDLE_CHOICES = (15, 30, 60, 120, 240, 480, 1440)


def _idle_context(request: HttpRequest) -> dict[str, Any]:
    own = current_user(request).idle_stop_minutes
    return {
        "own": own,
        "server": round(settings.IDLE_STOP_MINUTES),
        "choices": sorted({*IDLE_CHOICES, *([own] if own else [])}),
    }


@login_required
@require_GET
def settings_page(request: HttpRequest) -> HttpResponse:
    return _render(request)


@login_required
@require_POST
def kubeconfig_save(request: HttpRequest) -> HttpResponse:
    form = KubeconfigForm(request.POST)
    saved = False
    if form.is_valid():
        try:
            project_services.kubeconfig_change(
                user=current_user(request), text=form.cleaned_data["kubeconfig"], actor=actor_for(request)
            )
            saved = True
        except ServiceError as exc:
            form.add_error("kubeconfig", exc.message)
    if _wants_json(request):
        if not saved:
            return JsonResponse({"errors": {f: list(e) for f, e in form.errors.items()}}, status=400)
        return JsonResponse(user_kubeconfig_state(current_user(request)))
    if not saved:
        return _render(request, kubeconfig_form=form, status=400)
    if selectors.kubeconfig_pending_state(user=current_user(request)) is not None:
        messages.success(
            request,
            "New kubeconfig saved. Checking it on its cluster; the current one stays in use until it passes.",
        )
    else:
        messages.success(request, "Kubeconfig saved. Checking what it can do on the cluster…")
    return redirect("dashboard:settings")


def _settings_action(
    request: HttpRequest, call: Callable[..., object], success: str, anchor: str = ""
) -> HttpResponse:
    """One service call for the signed-in user, back on Settings with its refusal or `success`."""
    try:
        call(user=current_user(request), actor=actor_for(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, success)
    return redirect(reverse("dashboard:settings") + anchor)


@login_required
@require_POST
def kubeconfig_pending_discard(request: HttpRequest) -> HttpResponse:
    return _settings_action(
        request,
        services.kubeconfig_pending_discard,
        "New kubeconfig discarded. The current one stays in use.",
    )


@login_required
@require_POST
def kubeconfig_pending_accept(request: HttpRequest) -> HttpResponse:
    return _settings_action(
        request,
        project_services.kubeconfig_pending_accept,
        "The new kubeconfig is now in use. Checking it again…",
    )


@login_required
@require_POST
def kubeconfig_remove(request: HttpRequest) -> HttpResponse:
    return _settings_action(request, services.kubeconfig_remove, "Kubeconfig removed.")


@login_required
@require_GET
@never_cache
def kubeconfig_state(request: HttpRequest) -> JsonResponse:
    """Polled by the settings page while the background check is PENDING. Never the content."""
    return JsonResponse(user_kubeconfig_state(current_user(request)))


@login_required
@require_POST
def agent_save(request: HttpRequest) -> HttpResponse:
    form = AgentSettingsForm(request.POST)
    if not form.is_valid():
        return _render(request, agent_form=form, status=400)
    try:
        project_services.agent_settings_change(
            user=current_user(request), actor=actor_for(request), **form.values()
        )
    except ServiceError as exc:
        form.add_error(None, exc.message)
        return _render(request, agent_form=form, status=400)
    messages.success(request, "Agent settings saved. New and restarted sandboxes use them.")
    return redirect("dashboard:settings")


@login_required
@require_POST
@never_cache
def token_create(request: HttpRequest) -> HttpResponse:
    """The new secret is rendered in this response only (never stored in the session or a message)."""
    form = ApiTokenForm(request.POST)
    if not form.is_valid():
        return _render(request, token_form=form, status=400)
    try:
        created = services.api_token_create(
            user=current_user(request),
            actor=actor_for(request),
            name=form.cleaned_data["name"],
            expires_in_days=form.cleaned_data["expires_in_days"],
        )
    except ServiceError as exc:
        form.add_error(None, exc.message)
        return _render(request, token_form=form, status=400)
    return _render(request, new_token=created)


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    try:
        token = services.api_token_revoke(
            user=current_user(request), token_id=token_id, actor=actor_for(request)
        )
    except ServiceError as exc:
        raise Http404(exc.message) from None
    messages.success(request, f"Token “{token.name}” revoked.")
    return redirect("dashboard:settings")


@login_required
@require_POST
def idle_stop_save(request: HttpRequest) -> HttpResponse:
    raw = request.POST.get("minutes", "default")
    try:
        minutes = None if raw == "default" else int(raw)
        services.idle_stop_default_set(user=current_user(request), minutes=minutes, actor=actor_for(request))
    except (ValueError, ServiceError) as exc:
        messages.error(request, getattr(exc, "message", "Choose a number of minutes."))
    else:
        messages.success(
            request, "Idle stop saved. It applies to your projects that have no setting of their own."
        )
    return redirect(reverse("dashboard:settings") + "#idle-stop")


@login_required
@require_POST
def warm_pool_save(request: HttpRequest) -> HttpResponse:
    raw = request.POST.get("warm_pool", "")
    if raw not in ("on", "off"):
        messages.error(request, "Choose on or off.")
        return redirect(reverse("dashboard:settings") + "#warm-pool")
    pools.set_warm_pool(user=current_user(request), enabled=raw == "on", actor=actor_for(request))
    if raw == "on":
        messages.success(request, "Warm sandboxes on: new projects start from one when one is ready.")
    else:
        messages.success(request, "Warm sandboxes off: your idle warm sandboxes are being deleted.")
    return redirect(reverse("dashboard:settings") + "#warm-pool")


@login_required
@require_POST
def github_unlink(request: HttpRequest) -> HttpResponse:
    return _settings_action(
        request,
        services.github_unlink,
        "GitHub account unlinked. Sign in with your password from now on.",
        anchor="#github",
    )


GITHUB_PROBLEMS = {
    "cancelled": (400, "Sign-in with GitHub was cancelled."),
    "signup": (403, "This GitHub account could not be turned into a Tenter account. Ask an operator."),
    "inactive": (403, "This account is disabled. Ask an operator."),
}


def github_problem(request: HttpRequest, problem: str) -> HttpResponse:
    """Where allauth sends a GitHub sign-in that could not finish (its own pages are not routed)."""
    if not github_signin.enabled():
        raise Http404("Sign in with GitHub is not configured on this server.")
    status, message = GITHUB_PROBLEMS[problem]
    return render(request, "socialaccount/authentication_error.html", {"message": message}, status=status)
