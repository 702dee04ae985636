"""Sign in with GitHub through django-allauth's socialaccount flow (allauth's GitHub provider).

Off unless ``GITHUB_CLIENT_ID`` is set: the views below then answer 404 and no button is shown. Only the
OAuth redirect and callback of allauth are routed (``config/urls.py``); Tenter's own login page, sign-up
setting and attempt limits stay as they are. Everything is read from the settings at request time, so
``GITHUB_WEB_URL`` (authorize, token) and ``GITHUB_API_URL`` (``/user``) follow a GitHub Enterprise Server.

The OAuth ``state`` is allauth's (stashed in the session, checked on the callback); the access token is
used once to read ``/user`` and is not stored (``SOCIALACCOUNT_STORE_TOKENS = False``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialApp, SocialLogin
from allauth.socialaccount.providers.github.provider import GitHubProvider as AllauthGitHubProvider
from allauth.socialaccount.providers.github.views import GitHubOAuth2Adapter
from allauth.socialaccount.providers.oauth2.views import OAuth2CallbackView, OAuth2LoginView
from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.urls import reverse

PROVIDER = "github"
R = TypeVar("R", bound=HttpResponseBase)


def enabled() -> bool:
    return bool(settings.GITHUB_CLIENT_ID and settings.GITHUB_CLIENT_SECRET)


class GitHubAdapter(GitHubOAuth2Adapter):
    """allauth's GitHub adapter with its URLs taken from Tenter's settings when used (allauth computes
    them once at import, from its own ``GITHUB_URL``, and assumes ``/api/v3`` beside it)."""

    @property  # type: ignore[override]
    def access_token_url(self) -> str:
        return settings.GITHUB_WEB_URL.rstrip("/") + "/login/oauth/access_token"

    @property  # type: ignore[override]
    def authorize_url(self) -> str:
        return settings.GITHUB_WEB_URL.rstrip("/") + "/login/oauth/authorize"

    @property  # type: ignore[override]
    def profile_url(self) -> str:
        return settings.GITHUB_API_URL.rstrip("/") + "/user"

    @property  # type: ignore[override]
    def emails_url(self) -> str:
        return settings.GITHUB_API_URL.rstrip("/") + "/user/emails"


class GitHubProvider(AllauthGitHubProvider):
    oauth2_adapter_class = GitHubAdapter


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return bool(settings.SIGNUP_ENABLED)


def _free_username(wanted: str) -> str:
    users = get_user_model().objects
    base = (wanted or "github-user")[:140]
    candidate, n = base, 1
    while users.filter(username__iexact=candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    """The one GitHub app comes from the settings; sign-up follows SIGNUP_ENABLED; a new user gets the
    GitHub login as username (a suffix when it is taken: an identity is never matched to an existing
    user by name or e-mail, only by a link made from Settings)."""

    def list_apps(
        self, request: HttpRequest | None, provider: Any = None, client_id: Any = None
    ) -> list[Any]:
        if not enabled() or provider not in (None, PROVIDER):
            return []
        if client_id is not None and client_id != settings.GITHUB_CLIENT_ID:
            return []
        return [
            SocialApp(
                provider=PROVIDER,
                name="GitHub",
                client_id=settings.GITHUB_CLIENT_ID,
                secret=settings.GITHUB_CLIENT_SECRET,
            )
        ]

    def is_open_for_signup(self, request: HttpRequest, sociallogin: SocialLogin) -> bool:
        return bool(settings.SIGNUP_ENABLED)

    def populate_user(self, request: HttpRequest, sociallogin: SocialLogin, data: dict[str, Any]) -> Any:
        user = super().populate_user(request, sociallogin, data)
        user.username = _free_username(str(data.get("username") or ""))
        return user

    def get_connect_redirect_url(self, request: HttpRequest, socialaccount: Any) -> str:
        return reverse("dashboard:settings") + "#github"


def allow_form_action(response: R) -> R:
    """A page with a "Sign in with GitHub" / "Link GitHub" form posts to Tenter, which redirects to
    GITHUB_WEB_URL: the browser checks CSP form-action along the redirect, so that origin is added."""
    if enabled():
        url = urlsplit(settings.GITHUB_WEB_URL)
        response._csp_update = {"form-action": [f"{url.scheme}://{url.netloc}"]}  # type: ignore[attr-defined]
    return response


def _only_when_enabled(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not enabled():
            raise Http404("Sign in with GitHub is not configured on this server.")
        return allow_form_action(view(request, *args, **kwargs))

    return wrapped


oauth2_login = _only_when_enabled(OAuth2LoginView.adapter_view(GitHubAdapter))
oauth2_callback = _only_when_enabled(OAuth2CallbackView.adapter_view(GitHubAdapter))
