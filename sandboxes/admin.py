"""Operator admin for sandboxes and databases, the event timeline and the operations overview.

Rows are read-only here: status, lease and observed fields only change through the actions, which call
the services in `sandboxes/operator.py`. Database passwords are never loaded, let alone rendered.
"""

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Case, Exists, OuterRef, Q, QuerySet, Subquery, Value, When
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe
from django.utils.text import Truncator

from sandboxes import operator
from sandboxes.models import TRANSITIONAL, Database, Resource, ResourceEvent, ResourceStatus, Sandbox
from userconfig.models import ConfigKey, UserConfig

TIMELINE_LIMIT = 50


def timeline_html(events_qs: QuerySet[ResourceEvent], *, show_resource: bool) -> str:
    """The newest TIMELINE_LIMIT events as an HTML table (and how many older ones are not shown)."""
    events = list(events_qs.select_related("actor_user").order_by("-created_at", "-id")[:TIMELINE_LIMIT])
    if not events:
        return "No events."
    resource_cell = "<td>{} {}</td>" if show_resource else ""
    rows = format_html_join(
        "",
        "<tr><td>{}</td>"
        + resource_cell
        + "<td>{} → <strong>{}</strong></td><td>{}</td><td>{}</td><td>{}</td></tr>",
        (
            (
                timezone.localtime(e.created_at).strftime("%Y-%m-%d %H:%M:%S"),
                *((e.resource_kind, e.resource_name) if show_resource else ()),
                e.from_status or "∅",
                e.to_status,
                e.reason,
                e.actor + (f" ({e.actor_user.username})" if e.actor_user else ""),
                e.message,
            )
            for e in events
        ),
    )
    footer = ""
    if len(events) == TIMELINE_LIMIT:
        more = events_qs.count() - len(events)
        footer = format_html("<p>{} older events not shown.</p>", more) if more > 0 else ""
    header = "<th>when</th>" + ("<th>resource</th>" if show_resource else "")
    return format_html(
        "<table><thead><tr>" + header + "<th>transition</th><th>reason</th><th>actor</th>"
        "<th>message</th></tr></thead><tbody>{}</tbody></table>{}",
        rows,
        footer,
    )


# --- shared display helpers (also used by projects/admin.py) ------------------------------------


def duration(delta: timedelta | None) -> str:
    if delta is None:
        return "—"
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {secs}s"
    return f"{secs}s"


def short(text: str, length: int = 80) -> str:
    return Truncator(text or "").chars(length) or "—"


def past_deadline(status: str, changed_at: datetime | None, now: datetime | None = None) -> timedelta | None:
    limit = settings.STATUS_DEADLINES.get(status)
    if limit is None or changed_at is None:
        return None
    age = (now or timezone.now()) - changed_at
    return age - limit if age > limit else None


def admin_link(obj: Any, text: Any = None) -> str:
    if obj is None:
        return "—"
    meta = obj._meta
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, text if text is not None else str(obj))


def kubeconfig_failing_q(owner_path: str) -> Exists:
    return Exists(
        UserConfig.objects.filter(
            user_id=OuterRef(owner_path),
            key=ConfigKey.KUBECONFIG,
            check_status__in=operator.KUBECONFIG_FAILING,
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
    if status in operator.KUBECONFIG_FAILING:
        return format_html('<strong style="color:#ba2121">{}</strong>', status)
    return status


def report_to(modeladmin: admin.ModelAdmin, request: HttpRequest, report: operator.Report) -> None:
    level = messages.WARNING if report.skipped or not report.done else messages.SUCCESS
    modeladmin.message_user(request, report.message, level)


class ReadOnlyRowsMixin:
    """Rows can be viewed and acted on (actions need the model's change permission), never edited,
    added or deleted through a form."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        if obj is not None:
            return False  # the change page is a view page: no form can write a row
        return super().has_change_permission(request)  # type: ignore[misc]

    def has_destructive_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.is_active and request.user.is_superuser)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "show_delete": False}
        return super().change_view(request, object_id, form_url, extra_context)  # type: ignore[misc]


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


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


# --- filters --------------------------------------------------------------------------------------


class YesNoFilter(admin.SimpleListFilter):
    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def condition(self) -> Q:
        raise NotImplementedError

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(self.condition())
        if self.value() == "no":
            return queryset.exclude(self.condition())
        return queryset


class PastDeadlineFilter(YesNoFilter):
    title = "past its deadline"
    parameter_name = "past_deadline"

    def condition(self) -> Q:
        return operator.deadline_q()


class LeaseHeldFilter(YesNoFilter):
    title = "lease held"
    parameter_name = "lease_held"

    def condition(self) -> Q:
        return operator.lease_held_q()


class InErrorFilter(YesNoFilter):
    title = "in ERROR"
    parameter_name = "in_error"

    def condition(self) -> Q:
        return Q(status=ResourceStatus.ERROR)


class TransitionalFilter(YesNoFilter):
    title = "transitional (work to do)"
    parameter_name = "transitional"

    def condition(self) -> Q:
        return Q(status__in=TRANSITIONAL)


class KubeconfigFailingFilter(YesNoFilter):
    title = "owner's kubeconfig failing"
    parameter_name = "kubeconfig_failing"
    owner_path = "project__owner_id"

    def condition(self) -> Q:
        return Q(kubeconfig_failing_q(self.owner_path))


# --- sandboxes and databases ----------------------------------------------------------------------


OBSERVED_FIELDSETS: list[tuple[str, list[str]]] = [
    ("Identity", ["id", "project", "owner", "name", "k8s_namespace", "k8s_name", "created_at", "updated_at"]),
    (
        "Status",
        ["status", "status_reason", "status_changed_at", "time_in_state", "failed_status", "last_error"],
    ),
    (
        "Reconcile",
        [
            "lease",
            "locked_until",
            "lease_token",
            "attempts",
            "next_attempt_at",
            "generation",
            "observed_generation",
            "last_observed_at",
        ],
    ),
    ("Owner's kubeconfig", ["owner_kubeconfig"]),
    ("Resources", ["cpu_request", "cpu_limit", "memory_request", "memory_limit", "storage_size"]),
]


class ResourceAdmin(ReadOnlyRowsMixin, admin.ModelAdmin):
    kind_fieldset: tuple[str, list[str]] = ("", [])
    list_display = [
        "k8s_name",
        "status",
        "reason",
        "time_in_state",
        "owner",
        "project_link",
        "k8s_namespace",
        "lease",
        "attempts",
        "next_attempt_at",
        "error",
        "kubeconfig",
    ]
    list_display_links = ["k8s_name"]
    list_filter = [
        "status",
        PastDeadlineFilter,
        LeaseHeldFilter,
        InErrorFilter,
        TransitionalFilter,
        KubeconfigFailingFilter,
    ]
    search_fields = [
        "k8s_name",
        "=k8s_namespace",
        "name",
        "project__name",
        "project__owner__username",
        "project__owner__email",
    ]
    list_select_related = ["project", "project__owner"]
    list_per_page = 100
    ordering = ["-status_changed_at"]
    show_full_result_count = False  # one count query, not two, on big filtered lists
    actions = [
        "reconcile_now",
        "release_lease",
        "retry",
        "recheck_kubeconfig",
        "stop",
        "delete",
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        qs = super().get_queryset(request).select_related("project", "project__owner")
        return qs.annotate(owner_kubeconfig_status=kubeconfig_status_subquery("project__owner_id"))

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        sets = [(title, {"fields": fields}) for title, fields in OBSERVED_FIELDSETS]
        sets.insert(4, (self.kind_fieldset[0], {"fields": self.kind_fieldset[1]}))
        sets.append(("Timeline (newest first)", {"fields": ["timeline"]}))
        return sets

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return [f for _, fields in self.get_fieldsets(request, obj) for f in fields["fields"]]

    # columns

    @admin.display(description="reason")
    def reason(self, obj: Resource) -> str:
        return short(obj.status_reason, 60)

    @admin.display(description="time in state", ordering="status_changed_at")
    def time_in_state(self, obj: Resource) -> str:
        now = timezone.now()
        age = duration(now - obj.status_changed_at) if obj.status_changed_at else "—"
        late = past_deadline(obj.status, obj.status_changed_at, now)
        if late is not None:
            return format_html(
                '<strong style="color:#ba2121" title="past its {} deadline by {}">{} ⚠</strong>',
                obj.status,
                duration(late),
                age,
            )
        return age

    @admin.display(description="owner", ordering="project__owner__username")
    def owner(self, obj: Any) -> str:
        return admin_link(obj.project.owner, obj.project.owner.username)

    @admin.display(description="project", ordering="project__name")
    def project_link(self, obj: Any) -> str:
        return admin_link(obj.project)

    @admin.display(description="lease")
    def lease(self, obj: Resource) -> str:
        if obj.locked_until is None and obj.lease_token is None:
            return "—"
        token = str(obj.lease_token)[:8] if obj.lease_token else "no token"
        until = timezone.localtime(obj.locked_until).strftime("%H:%M:%S") if obj.locked_until else "?"
        if obj.locked_until and obj.locked_until > timezone.now():
            return format_html('<strong title="held right now">held</strong> until {} ({}…)', until, token)
        return format_html("expired {} ({})", until, token)

    @admin.display(description="last error")
    def error(self, obj: Resource) -> str:
        if not obj.last_error:
            return "—"
        return format_html('<span title="{}">{}</span>', obj.last_error, short(obj.last_error, 60))

    @admin.display(description="kubeconfig", ordering="owner_kubeconfig_status")
    def kubeconfig(self, obj: Any) -> str:
        return kubeconfig_badge(getattr(obj, "owner_kubeconfig_status", None))

    # detail-only fields

    @admin.display(description="owner's kubeconfig")
    def owner_kubeconfig(self, obj: Any) -> str:
        return owner_kubeconfig_html(obj.project.owner_id)

    @admin.display(description="events")
    def timeline(self, obj: Resource) -> str:
        return timeline_html(ResourceEvent.objects.filter(resource_id=obj.pk), show_resource=False)

    # actions

    def _run(
        self, request: HttpRequest, queryset: QuerySet[Any], service: Callable[..., operator.Report]
    ) -> None:
        report = service(resources=queryset, actor=operator.admin_actor(request), model=self.model)
        report_to(self, request, report)

    @admin.action(description="Reconcile now (transitional rows)", permissions=["change"])
    def reconcile_now(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._run(request, queryset, operator.reconcile_now)

    @admin.action(description="Release the lease", permissions=["change"])
    def release_lease(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._run(request, queryset, operator.release_lease)

    @admin.action(description="Retry from ERROR", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._run(request, queryset, operator.retry)

    @admin.action(description="Re-check the owner's kubeconfig", permissions=["change"])
    def recheck_kubeconfig(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._run(request, queryset, operator.recheck_owner_kubeconfigs)

    @admin.action(description="Stop (superusers)", permissions=["destructive"])
    def stop(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._run(request, queryset, operator.stop)

    @admin.action(description="Delete from the cluster (superusers)", permissions=["destructive"])
    def delete(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._run(request, queryset, operator.delete)


@admin.register(Sandbox)
class SandboxAdmin(ResourceAdmin):
    kind_fieldset = (
        "Sandbox",
        ["image", "public_url", "ttyd_url", "filebrowser_url", "ingress_domain", "last_activity_at"],
    )


@admin.register(Database)
class DatabaseAdmin(ResourceAdmin):
    kind_fieldset = ("Database", ["api_version", "host", "port", "database_name", "username", "password_set"])
    exclude = ["password"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        # The password is never loaded (nor decrypted) by the admin.
        return (
            super()
            .get_queryset(request)
            .defer("password")
            .annotate(has_password=Case(When(password="", then=Value(False)), default=Value(True)))
        )

    @admin.display(description="password")
    def password_set(self, obj: Any) -> str:
        return "set (encrypted; revealed only to the owner, audited)" if obj.has_password else "not set yet"


@admin.register(ResourceEvent)
class ResourceEventAdmin(ReadOnlyRowsMixin, admin.ModelAdmin):
    list_display = [
        "created_at",
        "resource_kind",
        "resource_name",
        "project_name",
        "from_status",
        "to_status",
        "reason",
        "actor",
        "actor_user",
        "short_message",
    ]
    list_filter = ["resource_kind", "actor", "to_status", "reason"]
    search_fields = ["resource_name", "project_name", "message", "=resource_id"]
    list_select_related = ["actor_user"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    readonly_fields = [f.name for f in ResourceEvent._meta.fields]

    @admin.display(description="message")
    def short_message(self, obj: ResourceEvent) -> str:
        return short(obj.message, 80)


# --- the operations overview ----------------------------------------------------------------------


def overview_view(request: HttpRequest) -> HttpResponse:
    data = operator.overview()
    for kind in data["kinds"]:
        model = kind["model"]
        changelist = reverse(f"admin:sandboxes_{model._meta.model_name}_changelist")
        kind["changelist"] = changelist
        kind["label"] = operator.plural(2, kind["kind"]).split(" ", 1)[1]  # "sandboxes", not "sandboxs"
        kind["stuck_rows"] = [
            {
                "link": admin_link(row, row.k8s_name),
                "project": admin_link(row.project),
                "owner": row.project.owner.username,
                "status": row.status,
                "age": duration(row.age),
                "deadline": duration(row.deadline),
                "reason": short(row.status_reason or row.last_error, 100),
                "lease": bool(row.locked_until and row.locked_until > data["now"]),
            }
            for row in kind["stuck"]
        ]
        kind["oldest_age_text"] = duration(kind["oldest_age"])
        kind["oldest_due_age_text"] = duration(kind["oldest_due_age"])
        for error in kind["errors"]:
            error["latest_ago"] = duration(data["now"] - error["latest"])
    context = {
        **admin.site.each_context(request),
        "title": "Operations overview",
        "data": data,
        "project_changelist": reverse("admin:projects_project_changelist"),
        "userconfig_changelist": reverse("admin:userconfig_userconfig_changelist"),
        "deadlines": [(s, duration(d)) for s, d in settings.STATUS_DEADLINES.items()],
    }
    return TemplateResponse(request, "admin/overview.html", context)


def _install_overview_url() -> None:
    """Serve the overview at /admin/overview/ on the default admin site (named `admin:overview`)."""
    site = admin.site
    if getattr(site, "_tenter_overview", False):
        return
    original = site.get_urls

    def get_urls() -> list[Any]:
        return [path("overview/", site.admin_view(overview_view), name="overview"), *original()]

    site.get_urls = get_urls  # type: ignore[method-assign]
    site._tenter_overview = True  # type: ignore[attr-defined]


_install_overview_url()
