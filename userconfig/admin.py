from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin

from userconfig.models import User, UserConfig


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    pass


@admin.register(UserConfig)
class UserConfigAdmin(admin.ModelAdmin):
    """Never shows a value: the kubeconfig's derived state only."""

    list_display = ["user", "key", "namespace", "server_host", "check_status", "checked_at", "updated_at"]
    list_filter = ["key", "check_status"]
    search_fields = ["user__username", "namespace", "server_host"]
    list_select_related = ["user"]
    exclude = ["value"]
    readonly_fields = [
        "user",
        "key",
        "category",
        "is_secret",
        "namespace",
        "server",
        "server_host",
        "check_status",
        "check_message",
        "checked_at",
        "created_at",
        "updated_at",
        "masked_value",
    ]

    @admin.display(description="value")
    def masked_value(self, obj: UserConfig) -> str:
        return "•••••••• (encrypted; never shown)"

    def get_queryset(self, request):  # type: ignore[no-untyped-def]
        return super().get_queryset(request).defer("value")

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False
