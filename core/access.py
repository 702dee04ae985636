"""Who may read the OpenAPI schema and docs (SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"]). Kept apart from
core.drf: DRF's permissions module reads api_settings, which imports core.drf."""

from typing import Any

from django.conf import settings
from rest_framework.permissions import BasePermission


class SchemaAccess(BasePermission):
    """Anyone when API_SCHEMA_PUBLIC, otherwise signed-in staff only."""

    def has_permission(self, request: Any, view: Any) -> bool:
        if settings.API_SCHEMA_PUBLIC:
            return True
        user = request.user
        return bool(user is not None and user.is_authenticated and user.is_staff)
