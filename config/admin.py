"""Tenter's admin site: the operator's home, titled for Tenter, with the operations overview at
/admin/overview/ (named `admin:overview`)."""

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path, reverse

from core.admin import admin_link, duration, short
from core.reports import plural
from projects.selectors import operations_overview


class TenterAdminSite(admin.AdminSite):
    site_header = "Tenter operations"
    site_title = "Tenter admin"
    index_title = "Sandboxes, databases, projects and users"

    def get_urls(self) -> list[Any]:
        return [path("overview/", self.admin_view(self.overview_view), name="overview"), *super().get_urls()]

    def overview_view(self, request: HttpRequest) -> HttpResponse:
        data = operations_overview()
        for kind in data["kinds"]:
            model = kind["model"]
            changelist = reverse(f"admin:sandboxes_{model._meta.model_name}_changelist")
            kind["changelist"] = changelist
            kind["label"] = plural(2, kind["kind"]).split(" ", 1)[1]  # "sandboxes", not "sandboxs"
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
            **self.each_context(request),
            "title": "Operations overview",
            "data": data,
            "project_changelist": reverse("admin:projects_project_changelist"),
            "userconfig_changelist": reverse("admin:userconfig_userconfig_changelist"),
            "deadlines": [(s, duration(d)) for s, d in settings.STATUS_DEADLINES.items()],
        }
        return TemplateResponse(request, "admin/overview.html", context)
