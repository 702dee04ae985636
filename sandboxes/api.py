"""Sandbox state and the owner-only reveals (terminal URL, database connection). Reveals are audited."""

from typing import Any

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core import audit
from core.audit import actor_for
from core.drf import StrictSerializer
from core.errors import InvalidState
from projects import selectors, services
from projects.api import SandboxOutput
from userconfig.auth import current_user


class SandboxDetailApi(APIView):
    @extend_schema(responses=SandboxOutput)
    def get(self, request: Request, sandbox_id: str) -> Response:
        return Response(
            SandboxOutput(selectors.sandbox_get(user=current_user(request), sandbox_id=sandbox_id)).data
        )


class SandboxHeartbeatApi(APIView):
    """Called from inside the sandbox with its project's TENTER_HEARTBEAT_TOKEN: someone is working."""

    authentication_classes: list[Any] = []  # the sandbox's own token, not a user's
    permission_classes = [AllowAny]

    @extend_schema(
        request=None,
        responses={204: None},
        description="Authorization: Bearer <TENTER_HEARTBEAT_TOKEN>. Pushes back the idle stop.",
    )
    def post(self, request: Request, sandbox_id: str) -> Response:
        header = request.headers.get("Authorization", "")
        token = header[len("Bearer ") :].strip() if header.startswith("Bearer ") else ""
        services.heartbeat(sandbox_id=sandbox_id, token=token)
        return Response(status=204)


class SandboxResizeApi(APIView):
    class ResizeSerializer(StrictSerializer):
        size = serializers.CharField(
            max_length=100,
            help_text="A size name from the server's SANDBOX_SIZES (see GET /api/v1/me/quota). A running "
            "sandbox restarts with it (UPDATING); storage can only grow. Checked against the quotas.",
        )

    @extend_schema(request=ResizeSerializer, responses={202: SandboxOutput})
    def post(self, request: Request, sandbox_id: str) -> Response:
        sandbox = selectors.sandbox_get(user=current_user(request), sandbox_id=sandbox_id)
        data = self.ResizeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        sandbox = services.sandbox_resize(
            sandbox=sandbox, size=data.validated_data["size"], actor=actor_for(request)
        )
        return Response(SandboxOutput(sandbox).data, status=202)


class SandboxTerminalApi(APIView):
    @extend_schema(
        responses=inline_serializer(
            "TerminalReveal",
            {
                "terminal_url": serializers.CharField(),
                "filebrowser_url": serializers.CharField(),
                "filebrowser_username": serializers.CharField(),
                "filebrowser_password": serializers.CharField(),
            },
        )
    )
    def get(self, request: Request, sandbox_id: str) -> Response:
        sandbox = selectors.sandbox_get(user=current_user(request), sandbox_id=sandbox_id)
        url = selectors.terminal_url(sandbox)
        if url is None:
            raise InvalidState("The terminal is not available for this sandbox.")
        credentials = selectors.filebrowser_credentials(sandbox)
        audit.record(actor_for(request), "reveal.terminal", sandbox)
        response = Response(
            {
                "terminal_url": url,
                "filebrowser_url": sandbox.filebrowser_url,
                "filebrowser_username": credentials["username"],
                "filebrowser_password": credentials["password"],
            }
        )
        response["Cache-Control"] = "no-store"
        return response


class DatabaseConnectionApi(APIView):
    @extend_schema(
        responses=inline_serializer(
            "DatabaseConnection",
            {
                "host": serializers.CharField(),
                "port": serializers.IntegerField(),
                "database": serializers.CharField(),
                "username": serializers.CharField(),
                "password": serializers.CharField(),
                "url": serializers.CharField(),
            },
        )
    )
    def get(self, request: Request, project_id: str, database_id: str) -> Response:
        database = selectors.database_get(
            user=current_user(request), project_id=project_id, database_id=database_id
        )
        if not database.is_connection_ready:
            raise InvalidState(
                "The database is not ready yet; its connection details appear when it is RUNNING."
            )
        audit.record(actor_for(request), "reveal.database_connection", database)
        response = Response(selectors.database_connection(database))
        response["Cache-Control"] = "no-store"
        return response
