"""REST API of the GitHub integration: the caller's installations and their repositories. The import
itself is `POST /api/v1/projects/import` (projects/api.py)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.drf import OutputSerializer
from core.errors import ValidationFailed
from github import connect, selectors
from github.models import GitHubInstallation
from userconfig.auth import current_user

REPOSITORY_PAGE_SIZE = 100


class InstallationOutput(OutputSerializer):
    id = serializers.IntegerField(source="installation_id", help_text="GitHub's id of the installation.")
    usable = serializers.SerializerMethodField()

    class Meta:
        model = GitHubInstallation
        fields = [
            "id",
            "account_login",
            "account_type",
            "repository_selection",
            "status",
            "status_reason",
            "usable",
            "created_at",
        ]

    def get_usable(self, row: GitHubInstallation) -> bool:
        return row.status == "ACTIVE"


class InstallationListOutput(serializers.Serializer):
    configured = serializers.BooleanField(help_text="Whether this server has a GitHub App configured.")
    connect_url = serializers.CharField(help_text="Tenter's page that opens GitHub's install page.")
    results = InstallationOutput(many=True)


class RepositoryOutput(serializers.Serializer):
    id = serializers.IntegerField(allow_null=True)
    full_name = serializers.CharField()
    name = serializers.CharField()
    owner = serializers.CharField()
    private = serializers.BooleanField()
    default_branch = serializers.CharField()
    description = serializers.CharField()


class RepositoryPageOutput(serializers.Serializer):
    count = serializers.IntegerField()
    page = serializers.IntegerField()
    pages = serializers.IntegerField()
    results = RepositoryOutput(many=True)


class InstallationListApi(APIView):
    error_codes_extra = ()

    @extend_schema(responses=InstallationListOutput)
    def get(self, request: Request) -> Response:
        rows = selectors.installations_for(user=current_user(request))
        return Response(
            {
                "configured": connect.configured(),
                "connect_url": "/github/connect",
                "results": InstallationOutput(rows, many=True).data,
            }
        )


class RepositoryListApi(APIView):
    error_codes_extra = ("502",)  # core.schema: GitHub unavailable

    @extend_schema(
        responses=RepositoryPageOutput,
        parameters=[
            OpenApiParameter("search", description="Text in owner/name (case-insensitive)."),
            OpenApiParameter("page", int, description=f"Page of {REPOSITORY_PAGE_SIZE}, from 1."),
        ],
    )
    def get(self, request: Request, installation_id: str) -> Response:
        installation = selectors.installation_get(user=current_user(request), installation_id=installation_id)
        search = request.query_params.get("search", "")[:200]
        try:
            page = int(request.query_params.get("page", "1"))
        except ValueError:
            raise ValidationFailed("page must be a number.", code="invalid_page") from None
        repos: list[dict[str, Any]] = selectors.repositories(installation=installation, search=search)
        pages = max(1, -(-len(repos) // REPOSITORY_PAGE_SIZE))
        if page < 1 or page > pages:
            raise ValidationFailed(f"page must be between 1 and {pages}.", code="invalid_page")
        chunk = repos[(page - 1) * REPOSITORY_PAGE_SIZE : page * REPOSITORY_PAGE_SIZE]
        return Response({"count": len(repos), "page": page, "pages": pages, "results": chunk})
