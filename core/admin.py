"""The admin toolkit every app's admin uses: display helpers, read-only rows and inlines, yes/no
filters, and how a bulk action's Report reaches the operator."""

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from core.reports import Report


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


def report_to(modeladmin: admin.ModelAdmin, request: HttpRequest, report: Report) -> None:
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


def confirm_first(
    modeladmin: admin.ModelAdmin,
    request: HttpRequest,
    queryset: QuerySet[Any],
    *,
    title: str,
    consequences: list[str],
) -> TemplateResponse | None:
    """Django admin's intermediate page for a destructive action: None once the operator confirmed
    (the action then runs), otherwise the page that lists the rows and what will happen to them."""
    if request.POST.get("confirmed") == "yes":
        return None
    opts = modeladmin.model._meta
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "opts": opts,
        "objects": list(queryset[:100]),
        "count": queryset.count(),
        "consequences": consequences,
        "action": request.POST.get("action", ""),
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "select_across": request.POST.get("select_across", "0"),
        "action_index": request.POST.get("index", "0"),
    }
    return TemplateResponse(request, "admin/confirm_action.html", context)
