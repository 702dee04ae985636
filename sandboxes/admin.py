from django.contrib import admin

from sandboxes.models import Database, ResourceEvent, Sandbox

RESOURCE_READONLY = [
    "id",
    "project",
    "name",
    "k8s_namespace",
    "k8s_name",
    "status",
    "status_reason",
    "status_changed_at",
    "failed_status",
    "locked_until",
    "lease_token",
    "attempts",
    "next_attempt_at",
    "last_error",
    "generation",
    "observed_generation",
    "last_observed_at",
    "created_at",
    "updated_at",
]


class ResourceAdmin(admin.ModelAdmin):
    list_display = [
        "k8s_name",
        "project",
        "status",
        "status_changed_at",
        "attempts",
        "next_attempt_at",
        "locked_until",
    ]
    list_filter = ["status"]
    search_fields = ["k8s_name", "project__name", "project__owner__username"]
    list_select_related = ["project"]
    readonly_fields = RESOURCE_READONLY

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(Sandbox)
class SandboxAdmin(ResourceAdmin):
    pass


@admin.register(Database)
class DatabaseAdmin(ResourceAdmin):
    exclude = ["password"]
    readonly_fields = [*RESOURCE_READONLY, "api_version", "host", "port", "database_name", "username"]


@admin.register(ResourceEvent)
class ResourceEventAdmin(admin.ModelAdmin):
    list_display = [
        "created_at",
        "resource_kind",
        "resource_name",
        "from_status",
        "to_status",
        "reason",
        "actor",
    ]
    list_filter = ["resource_kind", "actor", "to_status"]
    search_fields = ["resource_name", "project_name", "message"]
    readonly_fields = [f.name for f in ResourceEvent._meta.fields]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False
