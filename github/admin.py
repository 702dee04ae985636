from django.contrib import admin

from github.models import GitHubInstallation, WebhookDelivery


@admin.register(GitHubInstallation)
class GitHubInstallationAdmin(admin.ModelAdmin):
    list_display = [
        "installation_id",
        "account_login",
        "account_type",
        "user",
        "status",
        "repository_selection",
    ]
    list_filter = ["status", "account_type", "repository_selection"]
    search_fields = ["account_login", "user__username", "installation_id"]
    readonly_fields = [f.name for f in GitHubInstallation._meta.fields]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    list_display = ["delivery_id", "event", "action", "installation_id", "outcome", "received_at"]
    list_filter = ["event"]
    search_fields = ["delivery_id"]
    readonly_fields = [f.name for f in WebhookDelivery._meta.fields]

    def has_add_permission(self, request):  # type: ignore[no-untyped-def]
        return False
