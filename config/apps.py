from django.apps import AppConfig
from django.contrib.admin.apps import AdminConfig


class TenterAdminConfig(AdminConfig):
    """The admin app with Tenter's site (config/admin.py) as `admin.site`."""

    default_site = "config.admin.TenterAdminSite"


class AllauthGitHubConfig(AppConfig):
    """allauth's GitHub provider, under another label: Tenter's own `github` app holds that one."""

    name = "allauth.socialaccount.providers.github"
    label = "allauth_github"
    verbose_name = "GitHub sign-in (allauth)"

    def ready(self) -> None:
        # The admin (first in INSTALLED_APPS) has imported every admin module by now. allauth's OAuth apps
        # and tokens are not used (the app comes from GITHUB_CLIENT_ID/SECRET, no token is stored), so
        # they are not offered; linked identities (SocialAccount) and e-mail rows stay visible.
        from allauth.socialaccount.models import SocialApp, SocialToken
        from django.contrib import admin

        for model in (SocialApp, SocialToken):
            if admin.site.is_registered(model):
                admin.site.unregister(model)
