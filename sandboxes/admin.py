"""Operator admin for sandboxes and databases, and the event timeline.

Rows are read-only here: status, lease and observed fields only change through the actions, which call
the support-staff services in `projects/operator_services.py`. Database passwords are never loaded,
let alone rendered.
"""

from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.db.models import Case, Q, QuerySet, Value, When
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from core.admin import (
    ReadOnlyRowsMixin,
    YesNoFilter,
    admin_link,
    confirm_first,
    duration,
    past_deadline,
    report_to,
    short,
)
from core.audit import ActorKind, actor_for
from core.reports import Report
from projects import operator_services
from sandboxes.models import (
    TRANSITIONAL,
    Database,
    OrphanObject,
    Resource,
    ResourceEvent,
    ResourceStatus,
    Sandbox,
    lease_held_q,
    past_deadline_q,
)
from userconfig.admin import (
    KubeconfigFailingFilter,
    kubeconfig_badge,
    kubeconfig_status_subquery,
    owner_kubeconfig_html,
)

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


# --- filters --------------------------------------------------------------------------------------


class PastDeadlineFilter(YesNoFilter):
    title = "past its deadline"
    parameter_name = "past_deadline"

    def condition(self) -> Q:
        return past_deadline_q()


class LeaseHeldFilter(YesNoFilter):
    title = "lease held"
    parameter_name = "lease_held"

    def condition(self) -> Q:
        return lease_held_q()


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


class WarmPoolFilter(admin.SimpleListFilter):
    """Sandboxes of warm pools: idle members (no project yet) or bound ones (started in a pool)."""

    title = "warm pool"
    parameter_name = "pool"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("idle", "Idle in a pool"), ("bound", "Bound from a pool"), ("no", "Not from a pool")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "idle":
            return queryset.filter(project__pool__isnull=False)
        if self.value() == "bound":
            return queryset.filter(project__pool__isnull=True).exclude(pool_label="")
        if self.value() == "no":
            return queryset.filter(pool_label="")
        return queryset


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
        if getattr(obj.project, "pool_id", None):  # a warm pool's hidden project: not a project yet
            return f"warm pool {obj.project.pool_id} (idle)"
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

    def _run(self, request: HttpRequest, queryset: QuerySet[Any], service: Callable[..., Report]) -> None:
        report = service(resources=queryset, actor=actor_for(request, kind=ActorKind.ADMIN), model=self.model)
        report_to(self, request, report)

    @admin.action(description="Reconcile now (transitional rows)", permissions=["change"])
    def reconcile_now(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._run(request, queryset, operator_services.reconcile_now)

    @admin.action(description="Release the lease", permissions=["change"])
    def release_lease(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._run(request, queryset, operator_services.release_lease)

    @admin.action(description="Retry from ERROR", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._run(request, queryset, operator_services.retry)

    @admin.action(description="Re-check the owner's kubeconfig", permissions=["change"])
    def recheck_kubeconfig(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._run(request, queryset, operator_services.recheck_owner_kubeconfigs)

    @admin.action(description="Stop (superusers)", permissions=["destructive"])
    def stop(self, request: HttpRequest, queryset: QuerySet[Any]) -> TemplateResponse | None:
        page = confirm_first(
            self,
            request,
            queryset,
            title=f"Stop {self.model._meta.verbose_name_plural}",
            consequences=[
                "Each running, starting or failed one is scaled to zero in its owner's cluster; "
                "its data is kept.",
                "Its owner's project shows it stopped, and their timeline says an operator stopped it.",
                "Rows in other states are skipped and listed in the report.",
            ],
        )
        if page is not None:
            return page
        self._run(request, queryset, operator_services.stop)
        return None

    @admin.action(description="Delete from the cluster (superusers)", permissions=["destructive"])
    def delete(self, request: HttpRequest, queryset: QuerySet[Any]) -> TemplateResponse | None:
        page = confirm_first(
            self,
            request,
            queryset,
            title=f"Delete {self.model._meta.verbose_name_plural} from the cluster",
            consequences=[
                "Its Kubernetes objects are deleted from the owner's namespace, its storage (files, "
                "data) too: "
                "this cannot be undone.",
                "Its owner's project loses it; their timeline says an operator deleted it.",
            ],
        )
        if page is not None:
            return page
        self._run(request, queryset, operator_services.delete)
        return None


@admin.register(Sandbox)
class SandboxAdmin(ResourceAdmin):
    kind_fieldset = (
        "Sandbox",
        [
            "image",
            "size",
            "public_url",
            "ttyd_url",
            "filebrowser_url",
            "ingress_domain",
            "last_activity_at",
            "pool_policy",
            "pool_label",
            "binding",
        ],
    )
    list_filter = [*ResourceAdmin.list_filter, WarmPoolFilter]


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


@admin.register(OrphanObject)
class OrphanObjectAdmin(ReadOnlyRowsMixin, admin.ModelAdmin):
    """What the orphan sweep found: objects of a user whose row is gone. Reported first; deleted by the
    sweep once reported for ORPHAN_DELETE_AFTER_MINUTES (0 = report only)."""

    list_display = ["kind", "namespace", "name", "owner", "first_seen_at", "last_seen_at", "state"]
    list_filter = ["kind", ("deleted_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "namespace", "=resource_id", "owner__username"]
    list_select_related = ["owner"]
    show_full_result_count = False
    readonly_fields = [f.name for f in OrphanObject._meta.fields]

    @admin.display(description="state")
    def state(self, obj: OrphanObject) -> str:
        return f"deleted or gone {obj.deleted_at:%Y-%m-%d %H:%M}" if obj.deleted_at else "reported"
