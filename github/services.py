"""Writes of the GitHub integration: the install callback, webhook deliveries, import checks."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.utils import timezone

from core import audit
from core.audit import Actor
from core.errors import Conflict, InvalidState, NotFound, ServiceError, ValidationFailed
from github import connect
from github.client import GitHubError
from github.models import GitHubInstallation, InstallationStatus, WebhookDelivery
from github.selectors import as_service_error
from userconfig.models import User

logger = logging.getLogger(__name__)

STATE_SALT = "tenter.github.install"


class WebhookRejected(ServiceError):
    status_code = 401
    code = "invalid_signature"


def connect_url(*, user: User) -> str:
    """GitHub's install page for the App, with a signed `state` bound to `user`."""
    if not connect.configured():
        raise ServiceError("The GitHub App is not configured on this server.", code="github_not_configured")
    state = signing.dumps({"u": user.pk}, salt=STATE_SALT)
    web = settings.GITHUB_WEB_URL.rstrip("/")
    return f"{web}/apps/{settings.GITHUB_APP_SLUG}/installations/new?{urlencode({'state': state})}"


def _check_state(user: User, state: str) -> None:
    try:
        data = signing.loads(state, salt=STATE_SALT, max_age=settings.GITHUB_STATE_MAX_AGE_SECONDS)
    except signing.SignatureExpired:
        raise ValidationFailed(
            "This GitHub link has expired: connect GitHub again.", code="invalid_state"
        ) from None
    except signing.BadSignature:
        raise ValidationFailed(
            "This GitHub link is not valid: connect GitHub again.", code="invalid_state"
        ) from None
    if not isinstance(data, dict) or data.get("u") != user.pk:
        raise ValidationFailed("This GitHub link was made for another account.", code="invalid_state")


def _fields(data: dict[str, Any]) -> dict[str, Any]:
    account = data.get("account") if isinstance(data.get("account"), dict) else {}
    account = account or {}
    avatar = str(account.get("avatar_url") or "")
    return {
        "account_id": account.get("id") if isinstance(account.get("id"), int) else 0,
        "account_login": str(account.get("login") or account.get("slug") or account.get("name") or "unknown")[
            :100
        ],
        "account_type": str(data.get("target_type") or account.get("type") or "Unknown")[:32],
        "account_avatar_url": avatar[:500] if avatar.startswith(("https://", "http://")) else "",
        "repository_selection": str(data.get("repository_selection") or "all")[:16],
    }


def install_callback(
    *, user: User, installation_id: Any, state: Any, code: Any = "", actor: Actor
) -> GitHubInstallation:
    """GitHub sent the user back after installing the App: check the signed state (this user started it),
    that GitHub knows the installation and (when OAuth is configured) that the user who came back can
    access it; then record it for `user`."""
    _check_state(user, str(state or ""))
    try:
        number = int(str(installation_id))
    except ValueError:
        raise ValidationFailed("The installation id is missing or not a number.", code="invalid") from None
    try:
        app = connect.app()
        if settings.GITHUB_CLIENT_ID and settings.GITHUB_CLIENT_SECRET:
            if not code:
                raise ValidationFailed(
                    "GitHub did not say who installed the App (no code): connect GitHub again.",
                    code="github_unverified",
                )
            if number not in app.user_installation_ids(app.exchange_code(str(code))):
                raise ValidationFailed(
                    "The GitHub account you signed in with cannot access this installation.",
                    code="github_unverified",
                )
        data = app.installation(number)
    except GitHubError as exc:
        if exc.status == 404:
            raise NotFound("GitHub does not know this installation of the App.") from None
        raise as_service_error(exc) from None
    values = _fields(data)
    suspended = bool(data.get("suspended_at"))
    values["status"] = InstallationStatus.SUSPENDED if suspended else InstallationStatus.ACTIVE
    values["status_reason"] = "The installation is suspended on GitHub." if suspended else ""
    values["suspended_at"] = timezone.now() if suspended else None
    with transaction.atomic():
        row = GitHubInstallation.objects.select_for_update().filter(installation_id=number).first()
        if row is not None and row.user_id != user.pk:
            raise Conflict(
                "This GitHub installation is connected to another Tenter account.", code="installation_taken"
            )
        if row is None:
            try:
                with transaction.atomic():
                    row = GitHubInstallation.objects.create(installation_id=number, user=user, **values)
            except IntegrityError:
                raise Conflict(
                    "This GitHub installation was just connected elsewhere.", code="installation_taken"
                ) from None
        else:
            for key, value in values.items():
                setattr(row, key, value)
            row.save()
        audit.record(actor, "github.install", row, account=row.account_login)
    return row


def installation_link(*, user: User, installation_id: int, actor: Actor) -> GitHubInstallation:
    """Bind an installation to a user without the browser flow (operators; `make run`'s demo): GitHub
    must know it (checked through the API); one already bound to another user is refused."""
    try:
        data = connect.app().installation(int(installation_id))
    except GitHubError as exc:
        raise as_service_error(exc) from None
    values = {**_fields(data), "status": InstallationStatus.ACTIVE, "status_reason": "", "suspended_at": None}
    with transaction.atomic():
        row = GitHubInstallation.objects.select_for_update().filter(installation_id=installation_id).first()
        if row is not None and row.user_id != user.pk:
            raise Conflict(
                "This GitHub installation is connected to another Tenter account.", code="installation_taken"
            )
        row, _ = GitHubInstallation.objects.update_or_create(
            installation_id=installation_id, defaults={"user": user, **values}
        )
        audit.record(actor, "github.link", row, account=row.account_login)
    return row


# --- webhooks -------------------------------------------------------------------------------------------


def verify_signature(body: bytes, signature: str) -> None:
    secret = settings.GITHUB_WEBHOOK_SECRET
    if not secret:
        raise WebhookRejected("Webhooks are not configured on this server.")
    expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), (signature or "").encode()):
        raise WebhookRejected("The webhook signature does not match.")


def _set_status(row: GitHubInstallation, status: str, reason: str, *, suspended: bool | None = None) -> None:
    row.status, row.status_reason = status, reason
    if suspended is not None:
        row.suspended_at = timezone.now() if suspended else None
    row.save(update_fields=["status", "status_reason", "suspended_at", "updated_at"])


def webhook_receive(*, body: bytes, signature: str, event: str, delivery: str) -> str:
    """Handle one delivery: verified, once per delivery id. Returns what was done (for the response)."""
    verify_signature(body, signature)
    if not delivery or len(delivery) > 100:
        raise ValidationFailed("X-GitHub-Delivery is missing.", code="invalid")
    try:
        payload = json.loads(body)
    except ValueError:
        raise ValidationFailed("The webhook body is not JSON.", code="malformed_json") from None
    if not isinstance(payload, dict):
        raise ValidationFailed("The webhook body is not a JSON object.", code="malformed_json")
    action = str(payload.get("action") or "")[:64]
    inst = payload.get("installation") if isinstance(payload.get("installation"), dict) else {}
    number = inst.get("id") if isinstance(inst, dict) and isinstance(inst.get("id"), int) else None
    with transaction.atomic():
        try:
            with transaction.atomic():
                record = WebhookDelivery.objects.create(
                    delivery_id=delivery, event=str(event)[:64], action=action, installation_id=number
                )
        except IntegrityError:
            return "duplicate delivery: ignored"
        outcome = _handle(str(event), action, payload, number)
        record.outcome = outcome[:200]
        record.save(update_fields=["outcome"])
    logger.info("github webhook %s.%s (%s): %s", event, action, delivery, outcome)
    return outcome


def _handle(event: str, action: str, payload: dict[str, Any], number: int | None) -> str:
    if event not in ("installation", "installation_repositories") or number is None:
        return "not handled"
    row = GitHubInstallation.objects.select_for_update().filter(installation_id=number).first()
    if row is None:
        return "unknown installation: nothing to do (the install callback records new ones)"
    account = row.account_login
    if event == "installation":
        if action == "deleted":
            _set_status(
                row,
                InstallationStatus.DELETED,
                f"The GitHub App was uninstalled from {account}.",
                suspended=False,
            )
            connect_forget(number)
        elif action == "suspend":
            _set_status(
                row,
                InstallationStatus.SUSPENDED,
                f"The installation on {account} is suspended on GitHub.",
                suspended=True,
            )
            connect_forget(number)
        elif action == "unsuspend":
            _set_status(row, InstallationStatus.ACTIVE, "", suspended=False)
        elif action in ("created", "new_permissions_accepted"):
            for key, value in _fields(payload["installation"]).items():
                setattr(row, key, value)
            row.save()
        else:
            return f"installation.{action}: not handled"
        audit.record(audit.SYSTEM, f"github.installation.{action}", row, account=account)
        return f"installation {action}"
    added = payload.get("repositories_added") or []
    removed = payload.get("repositories_removed") or []
    selection = payload.get("repository_selection")
    if isinstance(selection, str) and selection:
        row.repository_selection = selection[:16]
        row.save(update_fields=["repository_selection", "updated_at"])
    audit.record(
        audit.SYSTEM,
        f"github.repositories.{action}",
        row,
        added=len(added) if isinstance(added, list) else 0,
        removed=len(removed) if isinstance(removed, list) else 0,
    )
    return f"repositories {action}"


def connect_forget(number: int) -> None:
    if connect.configured():
        connect.app().forget_token(number)


def require_usable(installation: GitHubInstallation) -> None:
    """Refuse a new import from an installation that is suspended or uninstalled, with the reason."""
    if installation.status == InstallationStatus.ACTIVE:
        return
    reason = installation.status_reason or f"The installation is {installation.status.lower()}."
    raise InvalidState(
        f"{reason} Imports from it are refused until it is installed again.",
        code="installation_unavailable",
        details={"status": installation.status},
    )
