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
