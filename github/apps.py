from django.apps import AppConfig


class GitHubConfig(AppConfig):
    name = "github"
    label = "github"
    verbose_name = "GitHub"
    default_auto_field = "django.db.models.BigAutoField"
