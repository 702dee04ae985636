import hashlib
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models

from core.crypto import EncryptedTextField


class User(AbstractUser):
    """Password login today; other identities can hang off this model later."""

    # The user's own idle timeout for their projects (a project's own one wins): None = the default
    # (settings.IDLE_STOP_MINUTES), 0 = never.
    idle_stop_minutes = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Idle timeout of this user's projects, in minutes: empty = the default, 0 = never. "
        "A project's own timeout wins.",
    )
    # Keep warm sandboxes ready for this user where an operator defined a pool policy (opted in unless
    # they opt out in Settings).
    warm_pool = models.BooleanField(
        default=True, help_text="Keep warm pool sandboxes ready (where a pool policy exists)."
    )


class ConfigKey(models.TextChoices):
    KUBECONFIG = "KUBECONFIG"
    # A new kubeconfig waiting for its cluster check while the working one stays in use.
    KUBECONFIG_PENDING = "KUBECONFIG_PENDING"
    ANTHROPIC_API_KEY = "ANTHROPIC_API_KEY"
    ANTHROPIC_BASE_URL = "ANTHROPIC_BASE_URL"
    ANTHROPIC_MODEL = "ANTHROPIC_MODEL"
    ANTHROPIC_SMALL_FAST_MODEL = "ANTHROPIC_SMALL_FAST_MODEL"


class CheckStatus(models.TextChoices):
    PENDING = "PENDING", "Not checked yet"
    OK = "OK", "Valid"
    FAILED = "FAILED", "Failed"
    UNREACHABLE = "UNREACHABLE", "Cluster unreachable"


# Checks that say the kubeconfig cannot be used right now.
KUBECONFIG_FAILING = (CheckStatus.FAILED, CheckStatus.UNREACHABLE)


class UserConfig(models.Model):
    """One per-user setting. Values are encrypted at rest whatever their kind.

    The kubeconfig row also keeps what was derived from it (namespace, server) and the result of
    the background cluster check, so nobody has to decrypt it to show "namespace X, valid".
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="configs")
    key = models.CharField(max_length=64, choices=ConfigKey.choices)
    value = EncryptedTextField()
    category = models.CharField(max_length=32, blank=True, default="")
    is_secret = models.BooleanField(default=False)
    # Kubeconfig only: derived at save time, kept in clear.
    namespace = models.CharField(max_length=63, blank=True, default="")
    server = models.CharField(max_length=512, blank=True, default="")
    server_host = models.CharField(max_length=255, blank=True, default="")
    check_status = models.CharField(
        max_length=16, choices=CheckStatus.choices, blank=True, default=CheckStatus.PENDING
    )
    check_message = models.TextField(blank=True, default="")
    checked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "key"], name="userconfig_unique_user_key"),
            models.CheckConstraint(
                condition=models.Q(key__in=ConfigKey.values), name="userconfig_key_allowed"
            ),
            models.CheckConstraint(
                condition=models.Q(check_status__in=CheckStatus.values),
                name="userconfig_check_status_allowed",
            ),
        ]
        indexes = [
            # Periodic kubeconfig check: the oldest-checked kubeconfigs first.
            models.Index(
                fields=["checked_at"],
                name="userconfig_kubeconfig_checks",
                condition=models.Q(key="KUBECONFIG"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}:{self.key}"

    @property
    def server_address(self) -> str:
        """The API server as host:port (the port is shown too: two clusters may share a host)."""
        parts = urlsplit(self.server)
        if not parts.hostname:
            return self.server_host
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            return host
        return f"{host}:{port}"

    @property
    def is_failing(self) -> bool:
        """The last check says this kubeconfig cannot be used now (failed or unreachable)."""
        return self.check_status in KUBECONFIG_FAILING


# Personal API tokens: the secret is shown once, at creation; only its SHA-256 and its first characters
# (the prefix, to tell tokens apart) are stored. Random secrets of 256 bits need no slow hash.
API_TOKEN_PREFIX_LENGTH = 8


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiTokenQuerySet(models.QuerySet["ApiToken"]):
    def usable(self, now: Any) -> "ApiTokenQuerySet":
        return self.filter(revoked_at__isnull=True).filter(
            models.Q(expires_at__isnull=True) | models.Q(expires_at__gt=now)
        )


class ApiToken(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=API_TOKEN_PREFIX_LENGTH)
    token_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiTokenQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "revoked_at"], name="userconfig_apitoken_user")]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    def is_usable(self, now: Any) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class Notice(models.Model):
    """A one-time message to a user about something done to their things by someone else (an operator
    deleting a project's sandbox, for example: the project may be gone, so its timeline cannot say it).
    Shown once, on their project list, then kept as read."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notices")
    message = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        indexes = [
            models.Index(
                fields=["user", "created_at"], name="notice_unseen", condition=models.Q(seen_at__isnull=True)
            )
        ]

    def __str__(self) -> str:
        return f"{self.user_id}: {self.message[:40]}"
