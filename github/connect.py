"""The GitHub App client built from settings, one per process (rebuilt when the settings change, as in
tests). Its token cache lives as long as it does."""

from __future__ import annotations

import threading

from django.conf import settings

from github.client import AppSettings, GitHubApp, NotConfigured

_lock = threading.Lock()
_current: dict[AppSettings, GitHubApp] = {}


def app_settings() -> AppSettings:
    return AppSettings(
        app_id=str(settings.GITHUB_APP_ID),
        slug=settings.GITHUB_APP_SLUG,
        private_key=settings.GITHUB_APP_PRIVATE_KEY,
        api_url=settings.GITHUB_API_URL,
        web_url=settings.GITHUB_WEB_URL,
        client_id=settings.GITHUB_CLIENT_ID,
        client_secret=settings.GITHUB_CLIENT_SECRET,
        egress_allow=tuple(settings.GITHUB_EGRESS_ALLOW_CIDRS),
        connect_timeout=settings.GITHUB_CONNECT_TIMEOUT,
        read_timeout=settings.GITHUB_READ_TIMEOUT,
    )


def configured() -> bool:
    return bool(settings.GITHUB_APP_ID and settings.GITHUB_APP_SLUG and settings.GITHUB_APP_PRIVATE_KEY)


def app() -> GitHubApp:
    """The App client (NotConfigured when the App's settings are missing)."""
    if not configured():
        raise NotConfigured()
    config = app_settings()
    with _lock:
        client = _current.get(config)
        if client is None:
            _current.clear()
            client = _current[config] = GitHubApp(config)
        return client
