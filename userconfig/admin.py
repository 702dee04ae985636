"""Users and their per-user settings. Settings values (kubeconfig, API key, ...) are encrypted and never
loaded, rendered or put in a form here: the kubeconfig's derived state is all the admin shows."""

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from core.admin import ReadOnlyInline, ReadOnlyRowsMixin, YesNoFilter, admin_link, duration, report_to, short
from core.audit import ActorKind, actor_for
from userconfig import services
from userconfig.models import KUBECONFIG_FAILING, ApiToken, ConfigKey, User, UserConfig

NEVER_SHOWN = "•••••••• (encrypted; never shown)"
STATE_FIELDS = (
    "user",
    "key",
    "category",
    "is_secret",
    "masked_value",
    "namespace",
    "server",
    "server_host",
    "check_status",
    "check_message",
    "checked_at",
    "created_at",
    "updated_at",
)


# --- the owner's kubeconfig, as other apps' admin pages show it -------------------------------------


def kubeconfig_failing_q(owner_path: str) -> Exists:
    return Exists(
        UserConfig.objects.filter(
            user_id=OuterRef(owner_path),
            key=ConfigKey.KUBECONFIG,
            check_status__in=KUBECONFIG_FAILING,
        )
    )


def kubeconfig_status_subquery(owner_path: str) -> Subquery:
    return Subquery(
        UserConfig.objects.filter(user_id=OuterRef(owner_path), key=ConfigKey.KUBECONFIG).values(
            "check_status"
        )[:1]
    )


def kubeconfig_badge(status: str | None) -> str:
    if not status:
        return mark_safe('<span title="no kubeconfig stored">none</span>')
    if status in KUBECONFIG_FAILING:
        return format_html('<strong style="color:#ba2121">{}</strong>', status)
    return status


def owner_kubeconfig_html(owner_id: int) -> str:
    """The owner's kubeconfig state for a detail page: never its content."""
    config = (
        UserConfig.objects.filter(user_id=owner_id, key=ConfigKey.KUBECONFIG)
        .only("id", "namespace", "server_host", "check_status", "check_message", "checked_at")
        .first()
    )
    if config is None:
        return "No kubeconfig stored."
    checked = (
        f"checked {duration(timezone.now() - config.checked_at)} ago"
        if config.checked_at
        else "never checked"
    )
    return format_html(
        "{} — namespace <code>{}</code> on <code>{}</code>, {}<br>{}",
        admin_link(config, config.get_check_status_display()),
        config.namespace,
        config.server_host,
        checked,
        config.check_message or "",
    )


class KubeconfigFailingFilter(YesNoFilter):
    title = "owner's kubeconfig failing"
    parameter_name = "kubeconfig_failing"
    owner_path = "project__owner_id"

    def condition(self) -> Q:
        return Q(kubeconfig_failing_q(self.owner_path))


class UserConfigInline(ReadOnlyInline):
    model = UserConfig
    fields = readonly_fields = (
        "key",
        "masked_value",
        "namespace",
        "server_host",
        "check_status",
        "checked",
        "check_message",
    )
    exclude = ["value"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).defer("value")

    @admin.display(description="value")
    def masked_value(self, obj: UserConfig) -> str:
        return NEVER_SHOWN

    @admin.display(description="last check")
    def checked(self, obj: UserConfig) -> str:
        return f"{duration(timezone.now() - obj.checked_at)} ago" if obj.checked_at else "never"


def _kubeconfig(field: str) -> Subquery:
    return Subquery(
        UserConfig.objects.filter(user_id=OuterRef("pk"), key=ConfigKey.KUBECONFIG).values(field)[:1]
    )


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    list_display = [
        "username",
        "email",
        "is_staff",
        "is_superuser",
        "is_active",
        "kubeconfig_namespace",
        "kubeconfig",
        "idle_stop",
        "last_login",
    ]
    actions = ["recheck_kubeconfig", "revoke_api_tokens"]
    # The user's own default idle timeout: operators can see and override it here.
    fieldsets = (*BaseUserAdmin.fieldsets, ("Policies", {"fields": ("idle_stop_minutes",)}))  # type: ignore[misc]

    @admin.display(description="idle stop", ordering="idle_stop_minutes")
    def idle_stop(self, obj: Any) -> str:
        if obj.idle_stop_minutes is None:
            return "default"
        return "never" if obj.idle_stop_minutes == 0 else f"{obj.idle_stop_minutes} min"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return (
            super()
            .get_queryset(request)
            .annotate(kc_namespace=_kubeconfig("namespace"), kc_status=_kubeconfig("check_status"))
        )

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        return [UserConfigInline] if obj is not None else []

    @admin.display(description="namespace", ordering="kc_namespace")
    def kubeconfig_namespace(self, obj: Any) -> str:
        return obj.kc_namespace or "—"

    @admin.display(description="kubeconfig", ordering="kc_status")
    def kubeconfig(self, obj: Any) -> str:
        return kubeconfig_badge(obj.kc_status)

    @admin.action(description="Re-check the kubeconfig", permissions=["change"])
    def recheck_kubeconfig(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        user_ids = list(queryset.values_list("pk", flat=True))
        report = services.recheck_kubeconfigs(
            user_ids=user_ids, actor=actor_for(request, kind=ActorKind.ADMIN)
        )
        report_to(self, request, report)

    @admin.action(description="Revoke API tokens", permissions=["change"])
    def revoke_api_tokens(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        user_ids = list(queryset.values_list("pk", flat=True))
        report = services.revoke_api_tokens(user_ids=user_ids, actor=actor_for(request, kind=ActorKind.ADMIN))
        report_to(self, request, report)


class ApiTokenStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("active", "active"), ("expired", "expired"), ("revoked", "revoked")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True).filter(
                Q(expires_at__isnull=True) | Q(expires_at__gt=now)
            )
        if self.value() == "expired":
            return queryset.filter(revoked_at__isnull=True, expires_at__lte=now)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyRowsMixin, admin.ModelAdmin):
    """Read-only: the prefix identifies a token; its hash is never loaded or shown. Tokens are revoked
    from the user list ("Revoke API tokens") and created by their owner or with `create_api_token`."""

    list_display = ["prefix_shown", "name", "user", "created_at", "last_used_at", "expires_at", "revoked_at"]
    list_filter = [ApiTokenStateFilter]
    search_fields = ["user__username", "name", "prefix"]
    list_select_related = ["user"]
    exclude = ["token_hash"]
    fields = readonly_fields = (
        "user",
        "name",
        "prefix_shown",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).defer("token_hash")

    @admin.display(description="token", ordering="prefix")
    def prefix_shown(self, obj: ApiToken) -> str:
        return f"{obj.prefix}…"


class FailingFilter(YesNoFilter):
    title = "check failing"
    parameter_name = "failing"

    def condition(self) -> Q:
        return Q(key=ConfigKey.KUBECONFIG, check_status__in=KUBECONFIG_FAILING)


@admin.register(UserConfig)
class UserConfigAdmin(ReadOnlyRowsMixin, admin.ModelAdmin):
    """Never shows a value: the kubeconfig's derived state only."""

    list_display = [
        "user",
        "key",
        "namespace",
        "server_host",
        "validity",
        "checked",
        "short_message",
        "updated_at",
    ]
    list_filter = ["key", "check_status", FailingFilter]
    search_fields = ["user__username", "user__email", "namespace", "server_host"]
    list_select_related = ["user"]
    list_per_page = 100
    exclude = ["value"]
    fields = readonly_fields = STATE_FIELDS
    actions = ["recheck_kubeconfig"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).defer("value")

    @admin.display(description="value")
    def masked_value(self, obj: UserConfig) -> str:
        return NEVER_SHOWN

    @admin.display(description="validity", ordering="check_status")
    def validity(self, obj: UserConfig) -> str:
        if obj.key != ConfigKey.KUBECONFIG:
            return "—"
        return kubeconfig_badge(obj.check_status)

    @admin.display(description="last check", ordering="checked_at")
    def checked(self, obj: UserConfig) -> str:
        if obj.key != ConfigKey.KUBECONFIG:
            return "—"
        return f"{duration(timezone.now() - obj.checked_at)} ago" if obj.checked_at else "never"

    @admin.display(description="check message")
    def short_message(self, obj: UserConfig) -> str:
        return short(obj.check_message, 80)

    @admin.action(description="Re-check the kubeconfig", permissions=["change"])
    def recheck_kubeconfig(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        user_ids = queryset.filter(key=ConfigKey.KUBECONFIG).values_list("user_id", flat=True)
        report = services.recheck_kubeconfigs(
            user_ids=list(user_ids), actor=actor_for(request, kind=ActorKind.ADMIN)
        )
        skipped_rows = queryset.exclude(key=ConfigKey.KUBECONFIG).count()
        if skipped_rows:
            report.skipped["not a kubeconfig"] += skipped_rows
        report_to(self, request, report)
