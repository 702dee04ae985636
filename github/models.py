from django.conf import settings
from django.db import models


class InstallationStatus(models.TextChoices):
    ACTIVE = "ACTIVE"
    SUSPENDED = "SUSPENDED"
    DELETED = "DELETED"


class GitHubInstallation(models.Model):
    """An installation of Tenter's GitHub App on a user's or organisation's account, bound to the Tenter
    user who installed it (through the signed install callback). Its tokens are never stored."""

    installation_id = models.BigIntegerField(unique=True, help_text="GitHub's id of the installation.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="github_installations"
    )
    account_id = models.BigIntegerField(default=0)
    account_login = models.CharField(max_length=100)
    account_type = models.CharField(max_length=32, default="User")
    account_avatar_url = models.URLField(max_length=500, blank=True, default="")
    repository_selection = models.CharField(max_length=16, default="all")
    status = models.CharField(
        max_length=16, choices=InstallationStatus.choices, default=InstallationStatus.ACTIVE
    )
    status_reason = models.CharField(max_length=300, blank=True, default="")
    suspended_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["account_login", "installation_id"]
        indexes = [models.Index(fields=["user", "account_login"], name="github_inst_user")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=InstallationStatus.values), name="github_inst_status_allowed"
            )
        ]

    def __str__(self) -> str:
        return f"{self.account_login} ({self.installation_id})"


class WebhookDelivery(models.Model):
    """A webhook delivery GitHub sent (by its X-GitHub-Delivery id): a replay of the id has no effect."""

    delivery_id = models.CharField(max_length=100, unique=True)
    event = models.CharField(max_length=64)
    action = models.CharField(max_length=64, blank=True, default="")
    installation_id = models.BigIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=200, blank=True, default="")
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-received_at"]
        indexes = [models.Index(fields=["received_at"], name="github_delivery_received")]

    def __str__(self) -> str:
        return f"{self.event}.{self.action} {self.delivery_id}"
