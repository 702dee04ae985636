from django.apps import AppConfig


class FakeGitHubConfig(AppConfig):
    name = "fakegithub"
    verbose_name = "fakegithub (GitHub simulator)"
    default_auto_field = "django.db.models.BigAutoField"
