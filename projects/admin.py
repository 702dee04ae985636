"""Operator admin for projects, their tasks, and the audit trail. Read-only rows; actions call services.

Secret environment values are never rendered (the mask from core.secrets stands in for them).
"""

import json
from collections.abc import Callable
from typing import Any

from django.contrib import admin
from django.db import models
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.html import format_html

from core.admin import (
    ReadOnlyInline,
    ReadOnlyRowsMixin,
    YesNoFilter,
    admin_link,
    confirm_first,
    duration,
    report_to,
    short,
)
from core.audit import ActorKind, actor_for
from core.models import AuditEntry
from core.reports import Report
from core.secrets import SECRET_MASK
from projects import operator_services, pools, services, task_services
from projects.models import Environment, PoolPolicy, Project, ProjectTask, ProjectTaskAttempt, Quota, Skill
from reconcile import diagnostics
from sandboxes.admin import timeline_html
from sandboxes.models import Database, ResourceEvent, Sandbox, lease_held_q
from userconfig.admin import (
    KubeconfigFailingFilter,
    kubeconfig_badge,
    kubeconfig_status_subquery,
    owner_kubeconfig_html,
)

SECRET_WORDS = ("password", "secret", "token", "credential", "authorization", "api_key", "apikey", "private")


def redacted(value: Any) -> Any:
    """A JSON value with anything under a secret-looking key replaced by the mask."""
    if isinstance(value, dict):
        return {
            k: SECRET_MASK if any(w in str(k).lower() for w in SECRET_WORDS) else redacted(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


def pretty_json(value: Any) -> str:
    if value in (None, {}, []):
        return "—"
    return format_html("<pre>{}</pre>", json.dumps(redacted(value), indent=2, sort_keys=True, default=str))


class ResourceInline(ReadOnlyInline):
    fields = readonly_fields = (
        "k8s_name",
        "status",
        "status_reason",
        "time_in_state",
        "k8s_namespace",
        "lease",
        "attempts",
        "next_attempt_at",
        "last_error",
    )

    @admin.display(description="time in state")
    def time_in_state(self, obj: Any) -> str:
        return duration(timezone.now() - obj.status_changed_at) if obj.status_changed_at else "—"

    @admin.display(description="lease")
    def lease(self, obj: Any) -> str:
        if obj.locked_until and obj.locked_until > timezone.now():
            return f"held ({str(obj.lease_token)[:8] if obj.lease_token else 'no token'})"
        return "—"


class SandboxInline(ResourceInline):
    model = Sandbox


class DatabaseInline(ResourceInline):
    model = Database
    exclude = ["password"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).defer("password")


class EnvironmentInline(ReadOnlyInline):
    model = Environment
    fields = readonly_fields = ("key", "shown_value", "category", "is_secret", "is_system", "updated_at")
    exclude = ["value"]
    show_change_link = False

    @admin.display(description="value")
    def shown_value(self, obj: Environment) -> str:
        return SECRET_MASK if obj.is_secret else short(obj.value, 120)


class ProjectTaskInline(ReadOnlyInline):
    model = ProjectTask
    fields = readonly_fields = (
        "type",
        "status",
        "attempts",
        "max_attempts",
        "short_error",
        "created_at",
        "finished_at",
    )

    @admin.display(description="error")
    def short_error(self, obj: ProjectTask) -> str:
        return short(obj.error, 80)


def _count(model: Any) -> Coalesce:
    counted = (
        model.objects.filter(project_id=OuterRef("pk"))
        .order_by()
        .values("project_id")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), Value(0))


class ProjectKubeconfigFailingFilter(KubeconfigFailingFilter):
    owner_path = "owner_id"


@admin.register(Project)
class ProjectAdmin(ReadOnlyRowsMixin, admin.ModelAdmin):
    list_display = [
        "name",
        "owner_link",
        "status",
        "time_in_state",
        "sandbox_count",
        "database_count",
        "kubeconfig",
        "created_at",
    ]
    list_filter = ["status", ProjectKubeconfigFailingFilter]
    search_fields = ["name", "owner__username", "owner__email", "sandboxes__k8s_name", "databases__k8s_name"]
    list_select_related = ["owner"]
    list_per_page = 100
    show_full_result_count = False
    readonly_fields = [
        "id",
        "name",
        "owner",
        "description",
        "status",
        "status_changed_at",
        "time_in_state",
        "owner_kubeconfig",
        "github_repo_full_name",
        "github_repo_id",
        "github_default_branch",
        "created_at",
        "updated_at",
        "timeline",
        "diagnostics",
    ]
    fieldsets = [
        (None, {"fields": ["id", "name", "owner", "description"]}),
        (
            "Status (aggregated from the resources)",
            {"fields": ["status", "status_changed_at", "time_in_state"]},
        ),
        ("Owner's kubeconfig", {"fields": ["owner_kubeconfig"]}),
        ("GitHub", {"fields": ["github_repo_full_name", "github_repo_id", "github_default_branch"]}),
        ("Dates", {"fields": ["created_at", "updated_at"]}),
        ("Timeline (newest first)", {"fields": ["timeline"]}),
        ("Diagnostics (fetched by a worker, secrets redacted)", {"fields": ["diagnostics"]}),
    ]
    inlines = [SandboxInline, DatabaseInline, EnvironmentInline, ProjectTaskInline]
    actions = ["reconcile_now", "retry", "stop", "delete", "forget"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return (
            super()
            .get_queryset(request)
            .select_related("owner")
            .annotate(
                sandbox_total=_count(Sandbox),
                database_total=_count(Database),
                owner_kubeconfig_status=kubeconfig_status_subquery("owner_id"),
            )
        )

    @admin.display(description="owner", ordering="owner__username")
    def owner_link(self, obj: Project) -> str:
        return admin_link(obj.owner, obj.owner.username)

    @admin.display(description="time in state", ordering="status_changed_at")
    def time_in_state(self, obj: Project) -> str:
        return duration(timezone.now() - obj.status_changed_at) if obj.status_changed_at else "—"

    @admin.display(description="sandboxes", ordering="sandbox_total")
    def sandbox_count(self, obj: Any) -> int:
        return obj.sandbox_total

    @admin.display(description="databases", ordering="database_total")
    def database_count(self, obj: Any) -> int:
        return obj.database_total

    @admin.display(description="kubeconfig", ordering="owner_kubeconfig_status")
    def kubeconfig(self, obj: Any) -> str:
        return kubeconfig_badge(getattr(obj, "owner_kubeconfig_status", None))

    @admin.display(description="owner's kubeconfig")
    def owner_kubeconfig(self, obj: Any) -> str:
        return owner_kubeconfig_html(obj.owner_id)

    @admin.display(description="diagnostics")
    def diagnostics(self, obj: Project) -> str:
        return render_to_string("projects/_diagnostics.html", {"diag": diagnostics.for_display(obj.pk)})

    @admin.display(description="events")
    def timeline(self, obj: Project) -> str:
        return timeline_html(ResourceEvent.objects.filter(project_id=obj.pk), show_resource=True)

    def _run(self, request: HttpRequest, queryset: QuerySet[Any], service: Callable[..., Report]) -> None:
        report_to(self, request, service(projects=queryset, actor=actor_for(request, kind=ActorKind.ADMIN)))

    @admin.action(description="Reconcile now (all transitional resources)", permissions=["change"])
    def reconcile_now(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._run(request, queryset, operator_services.projects_reconcile_now)

    @admin.action(description="Retry resources in ERROR", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._run(request, queryset, operator_services.projects_retry)

    @admin.action(description="Stop (superusers)", permissions=["destructive"])
    def stop(self, request: HttpRequest, queryset: QuerySet[Any]) -> TemplateResponse | None:
        page = confirm_first(
            self,
            request,
            queryset,
            title="Stop projects",
            consequences=[
                "Every sandbox and database of these projects is stopped in its owner's cluster; "
                "data is kept.",
                "Each owner's timeline says an operator stopped it.",
            ],
        )
        if page is not None:
            return page
        self._run(request, queryset, operator_services.projects_stop)
        return None

    @admin.action(
        description="Delete the project and its resources (superusers)", permissions=["destructive"]
    )
    def delete(self, request: HttpRequest, queryset: QuerySet[Any]) -> TemplateResponse | None:
        page = confirm_first(
            self,
            request,
            queryset,
            title="Delete projects and their resources",
            consequences=[
                "Every sandbox and database of these projects is deleted from its owner's cluster, with its "
                "storage: this cannot be undone.",
                "The projects disappear from their owners' dashboards once the cluster is clean; their "
                "timelines say an operator deleted them.",
            ],
        )
        if page is not None:
            return page
        self._run(request, queryset, operator_services.projects_delete)
        return None

    @admin.action(
        description="Forget (cluster access gone: rows removed, nothing deleted on the cluster; superusers)",
        permissions=["destructive"],
    )
    def forget(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._run(request, queryset, operator_services.projects_forget)


class TaskLeaseHeldFilter(YesNoFilter):
    title = "lease held"
    parameter_name = "lease_held"

    def condition(self) -> Any:
        return lease_held_q()


@admin.register(PoolPolicy)
class PoolPolicyAdmin(admin.ModelAdmin):
    """Warm pools: keep `target` idle sandboxes of this image and size per opted-in user. Saves go through
    the service (audited); deleting a policy drains its idle sandboxes first (their delete is the normal
    one), and is refused while members are still going away."""

    list_display = (
        "image",
        "size",
        "target",
        "enabled",
        "schedule",
        "idle",
        "claims",
        "misses",
        "updated_at",
    )
    list_filter = ("enabled", "size")
    readonly_fields = ("claims", "misses", "created_at", "updated_at")
    actions = ["drain"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[PoolPolicy]:
        return pools.with_idle(super().get_queryset(request))

    @admin.display(description="idle now", ordering="idle_now")
    def idle(self, obj: PoolPolicy) -> int:
        return int(getattr(obj, "idle_now", 0))

    @admin.display(description="schedule (UTC)")
    def schedule(self, obj: PoolPolicy) -> str:
        if obj.start_hour is None or obj.end_hour is None:
            return "always"
        return f"{obj.start_hour:02d}:00-{obj.end_hour:02d}:00"

    def save_model(self, request: HttpRequest, obj: PoolPolicy, form: Any, change: bool) -> None:
        pools.policy_save(policy=obj, actor=actor_for(request))

    @admin.action(description="Delete the idle sandboxes of the selected pools")
    def drain(self, request: HttpRequest, queryset: QuerySet[PoolPolicy]) -> None:
        n = sum(pools.drain_policy(policy=policy, actor=actor_for(request)) for policy in queryset)
        self.message_user(request, f"{n} idle pool sandboxes are being deleted.")


@admin.register(Quota)
class QuotaAdmin(admin.ModelAdmin):
    """A user's own limits; an empty field uses the default in settings (QUOTA_MAX_*). Saves and deletes
    go through the service, so they are audited."""

    list_display = (
        "user",
        "max_projects",
        "max_running_sandboxes",
        "max_databases",
        "max_cpu",
        "max_memory",
        "updated_at",
    )
    search_fields = ("user__username",)
    raw_id_fields = ("user",)

    def save_model(self, request: HttpRequest, obj: Quota, form: Any, change: bool) -> None:
        services.quota_save(quota=obj, actor=actor_for(request))

    def delete_model(self, request: HttpRequest, obj: Quota) -> None:
        services.quota_delete(quota=obj, actor=actor_for(request))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Quota]) -> None:
        for quota in queryset:
            services.quota_delete(quota=quota, actor=actor_for(request))


class ProjectTaskAttemptInline(ReadOnlyInline):
    model = ProjectTaskAttempt
    fields = readonly_fields = ("number", "started_at", "duration", "exit_code", "short_error", "output")

    @admin.display(description="error")
    def short_error(self, obj: ProjectTaskAttempt) -> str:
        return short(obj.error, 120)


@admin.register(ProjectTask)
class ProjectTaskAdmin(ReadOnlyRowsMixin, admin.ModelAdmin):
    list_display = [
        "id",
        "type",
        "status",
        "skill",
        "project_link",
        "owner",
        "tries",
        "lease",
        "next_attempt_at",
        "created_at",
        "started_at",
        "finished_at",
        "short_error",
    ]
    list_filter = ["type", "status", TaskLeaseHeldFilter]
    search_fields = ["project__name", "project__owner__username", "error"]
    list_select_related = ["project", "project__owner", "skill"]
    list_per_page = 100
    show_full_result_count = False
    actions = ["cancel", "retry", "release_lease"]
    inlines = [ProjectTaskAttemptInline]
    fieldsets = [
        (None, {"fields": ["id", "type", "status", "status_reason", "project", "sandbox", "skill"]}),
        ("Work", {"fields": ["payload_json", "result_json", "error", "output"]}),
        (
            "Attempts and lease",
            {"fields": ["attempts", "max_attempts", "locked_until", "lease_token", "next_attempt_at"]},
        ),
        ("Dates", {"fields": ["created_at", "started_at", "finished_at", "updated_at"]}),
    ]
    readonly_fields = (
        *("id", "type", "status", "status_reason", "project", "sandbox", "skill"),
        *("payload_json", "result_json", "error", "output"),
        *("attempts", "max_attempts", "locked_until", "lease_token", "next_attempt_at"),
        *("created_at", "started_at", "finished_at", "updated_at"),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).select_related("project", "project__owner", "sandbox", "skill")

    def _run(self, request: HttpRequest, queryset: QuerySet[Any], service: Callable[..., Report]) -> None:
        report_to(self, request, service(tasks=queryset, actor=actor_for(request, kind=ActorKind.ADMIN)))

    @admin.action(description="Cancel pending or waiting tasks", permissions=["change"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._run(request, queryset, task_services.tasks_cancel)

    @admin.action(description="Retry failed tasks", permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._run(request, queryset, task_services.tasks_retry)

    @admin.action(description="Release the lease (a worker died holding it)", permissions=["change"])
    def release_lease(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        self._run(request, queryset, task_services.tasks_release_lease)

    @admin.display(description="project", ordering="project__name")
    def project_link(self, obj: ProjectTask) -> str:
        return admin_link(obj.project)

    @admin.display(description="owner", ordering="project__owner__username")
    def owner(self, obj: ProjectTask) -> str:
        return obj.project.owner.username

    @admin.display(description="attempts")
    def tries(self, obj: ProjectTask) -> str:
        return f"{obj.attempts}/{obj.max_attempts}"

    @admin.display(description="lease")
    def lease(self, obj: ProjectTask) -> str:
        if obj.locked_until and obj.locked_until > timezone.now():
            token = str(obj.lease_token)[:8] if obj.lease_token else "no token"
            return f"held until {obj.locked_until:%H:%M:%S} ({token})"
        if obj.locked_until:
            return "expired"
        return "—"

    @admin.display(description="error")
    def short_error(self, obj: ProjectTask) -> str:
        return short(obj.error, 60)

    @admin.display(description="payload")
    def payload_json(self, obj: ProjectTask) -> str:
        return pretty_json(obj.payload)

    @admin.display(description="result")
    def result_json(self, obj: ProjectTask) -> str:
        return pretty_json(obj.result)


@admin.register(Skill)
class SkillAdmin(admin.ModelAdmin):
    """The catalog. Editing a command changes what is installed from now on; rollouts under way keep the
    command they were enabled with."""

    list_display = ["name", "slug", "enabled", "users_count", "source_url", "updated_at"]
    list_filter = ["enabled"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ("name",)}
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fields = ["name", "slug", "description", "source_url", "install_command", "uninstall_command", "enabled"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return super().get_queryset(request).annotate(users_n=Count("users"))

    @admin.display(description="users", ordering="users_n")
    def users_count(self, obj: Any) -> int:
        return int(obj.users_n)


class ActionGroupFilter(admin.SimpleListFilter):
    """Action families, without a DISTINCT scan of the whole audit table."""

    title = "action"
    parameter_name = "action_group"
    GROUPS = [
        ("admin.", "admin actions"),
        ("status.", "status transitions"),
        ("reveal.", "secret reveals"),
        ("project.", "project actions"),
        ("env.", "environment changes"),
        ("database.", "database changes"),
        ("kubeconfig.", "kubeconfig"),
        ("agent_settings.", "agent settings"),
    ]

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return self.GROUPS

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value():
            return queryset.filter(action__startswith=self.value())
        return queryset


class ActorKindFilter(admin.SimpleListFilter):
    title = "actor kind"
    parameter_name = "actor_kind"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(k, k) for k in ("user", "admin", "reconciler", "system")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(actor_kind=self.value()) if self.value() else queryset


class TargetTypeFilter(admin.SimpleListFilter):
    title = "target type"
    parameter_name = "target_type"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(t, t) for t in ("project", "sandbox", "database", "user", "userconfig", "environment")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(target_type=self.value()) if self.value() else queryset


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyRowsMixin, admin.ModelAdmin):
    list_display = [
        "created_at",
        "actor",
        "actor_kind",
        "action",
        "target_type",
        "target_repr",
        "ip_address",
        "short_details",
    ]
    list_filter = [ActorKindFilter, ActionGroupFilter, TargetTypeFilter]
    search_fields = ["actor__username", "=target_id", "target_repr", "action", "=ip_address"]
    list_select_related = ["actor"]
    date_hierarchy = "created_at"
    list_per_page = 100
    show_full_result_count = False
    fields = readonly_fields = (
        "created_at",
        "actor",
        "actor_kind",
        "ip_address",
        "action",
        "target_type",
        "target_id",
        "target_repr",
        "details_json",
    )

    @admin.display(description="details")
    def short_details(self, obj: AuditEntry) -> str:
        if not obj.details:
            return "—"
        return short(json.dumps(redacted(obj.details), sort_keys=True, default=str), 80)

    @admin.display(description="details")
    def details_json(self, obj: AuditEntry) -> str:
        return pretty_json(obj.details)
