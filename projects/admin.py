from django.contrib import admin

from projects.models import AuditEntry, Environment, Project, ProjectTask
from projects.selectors import SECRET_MASK


class EnvironmentInline(admin.TabularInline):
    model = Environment
    fields = ["key", "shown_value", "category", "is_secret", "is_system", "updated_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    @admin.display(description="value")
    def shown_value(self, obj: Environment) -> str:
        return SECRET_MASK if obj.is_secret else obj.value

    def has_add_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "status", "status_changed_at", "created_at"]
    list_filter = ["status"]
    search_fields = ["name", "owner__username"]
    list_select_related = ["owner"]
    readonly_fields = ["id", "owner", "status", "status_changed_at", "created_at", "updated_at"]
    inlines = [EnvironmentInline]


@admin.register(ProjectTask)
class ProjectTaskAdmin(admin.ModelAdmin):
    list_display = ["type", "status", "project", "attempts", "max_attempts", "created_at", "finished_at"]
    list_filter = ["type", "status"]
    search_fields = ["project__name"]
    list_select_related = ["project"]
    raw_id_fields = ["project", "sandbox"]


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    list_display = ["created_at", "actor", "actor_kind", "action", "target_type", "target_repr", "ip_address"]
    list_filter = ["actor_kind", "action", "target_type"]
    search_fields = ["actor__username", "target_id", "target_repr", "action"]
    list_select_related = ["actor"]
    readonly_fields = [f.name for f in AuditEntry._meta.fields]

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False
