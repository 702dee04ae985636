from django.apps import AppConfig


class UserconfigConfig(AppConfig):
    name = "userconfig"
    verbose_name = "Users and settings"
