"""Dashboard pages of the user: sign in, out and up; settings (the kubeconfig with its live cluster check,
and the AI agent settings)."""

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import forms as auth_forms
from django.contrib.auth import get_user_model, login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from core.audit import actor_for
from core.errors import ServiceError
from projects import services as project_services
from userconfig import selectors, services
from userconfig.api import kubeconfig_state as state_dict
from userconfig.auth import current_user
from userconfig.forms import AgentSettingsForm, KubeconfigForm


class LoginView(auth_views.LoginView):
    template_name = "auth/login.html"
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return {**super().get_context_data(**kwargs), "signup_enabled": settings.SIGNUP_ENABLED}


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
    status: int = 200,
) -> HttpResponse:
    context = {
        "kubeconfig": selectors.kubeconfig_state(user=current_user(request)),
        "kubeconfig_form": kubeconfig_form or KubeconfigForm(),
        "agent": selectors.agent_settings(user=current_user(request)),
        "agent_form": agent_form or _agent_form(request),
        "nav": "settings",
    }
    return render(request, "settings/settings.html", context, status=status)


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
        return JsonResponse(state_dict(selectors.kubeconfig_state(user=current_user(request))))
    if not saved:
        return _render(request, kubeconfig_form=form, status=400)
    messages.success(request, "Kubeconfig saved. Checking what it can do on the cluster…")
    return redirect("dashboard:settings")


@login_required
@require_POST
def kubeconfig_remove(request: HttpRequest) -> HttpResponse:
    try:
        services.kubeconfig_remove(user=current_user(request), actor=actor_for(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Kubeconfig removed.")
    return redirect("dashboard:settings")


@login_required
@require_GET
@never_cache
def kubeconfig_state(request: HttpRequest) -> JsonResponse:
    """Polled by the settings page while the background check is PENDING. Never the content."""
    return JsonResponse(state_dict(selectors.kubeconfig_state(user=current_user(request))))


@login_required
@require_POST
def agent_save(request: HttpRequest) -> HttpResponse:
    form = AgentSettingsForm(request.POST)
    if not form.is_valid():
        return _render(request, agent_form=form, status=400)
    try:
        services.agent_settings_update(user=current_user(request), actor=actor_for(request), **form.values())
    except ServiceError as exc:
        form.add_error(None, exc.message)
        return _render(request, agent_form=form, status=400)
    messages.success(request, "Agent settings saved. New and restarted sandboxes use them.")
    return redirect("dashboard:settings")
