from django.apps import AppConfig


class CoreConfig(AppConfig):
    """The foundation every app builds on: errors, crypto, DRF glue, the audit trail, the kick."""

    name = "core"
    verbose_name = "Audit trail"
    default_auto_field = "django.db.models.BigAutoField"
