from django.apps import AppConfig


class KubesimConfig(AppConfig):
    name = "kubesim"
    verbose_name = "kubesim (Kubernetes API simulator)"
    default_auto_field = "django.db.models.BigAutoField"
