"""REST API for projects, their environment, databases, events and tasks. Views only parse, call a
selector or a service, and serialize."""

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.audit import actor_for
from core.drf import OutputSerializer, Pagination, StrictSerializer
from core.errors import ValidationFailed
from projects import selectors, services
from projects.models import Environment, Project, ProjectStatus
from projects.status import allowed_actions
from reconcile import diagnostics
from sandboxes.models import Database, ResourceEvent, Sandbox
from userconfig import services as userconfig_services
from userconfig.auth import current_user


class HealthOutput(serializers.Serializer[Any]):
    """A stable resource's health from the verification sweep: degraded (with the reason from the
    cluster) while RUNNING but not serving; the status stays RUNNING."""

    degraded = serializers.BooleanField(source="is_degraded")
    reason = serializers.CharField(source="degraded_reason")
    since = serializers.DateTimeField(source="degraded_since", allow_null=True)
    last_verified_at = serializers.DateTimeField(source="last_observed_at", allow_null=True)


class SandboxOutput(OutputSerializer):
    terminal_path = serializers.SerializerMethodField()
    health = HealthOutput(source="*", read_only=True)

    class Meta:
        model = Sandbox
        fields = [
            "id",
            "name",
            "status",
            "status_reason",
            "status_changed_at",
            "health",
            "k8s_namespace",
            "k8s_name",
            "public_url",
            "filebrowser_url",
            "terminal_path",
            "image",
            "size",
            "cpu_request",
            "cpu_limit",
            "memory_request",
            "memory_limit",
            "storage_size",
            "generation",
            "observed_generation",
            "last_error",
            "attempts",
            "next_attempt_at",
            "created_at",
        ]

    def get_terminal_path(self, obj: Sandbox) -> str:
        return f"/api/v1/sandboxes/{obj.pk}/terminal"


class DatabaseOutput(OutputSerializer):
    connection_ready = serializers.BooleanField(source="is_connection_ready")
    env_key = serializers.CharField(
        source="url_env_key", read_only=True, help_text="The variable the sandbox gets the URL in"
    )
    health = HealthOutput(source="*", read_only=True)

    class Meta:
        model = Database
        fields = [
            "id",
            "name",
            "status",
            "status_reason",
            "status_changed_at",
            "health",
            "k8s_namespace",
            "k8s_name",
            "api_version",
            "host",
            "port",
            "database_name",
            "username",
            "connection_ready",
            "env_key",
            "cpu_request",
            "cpu_limit",
            "memory_request",
            "memory_limit",
            "storage_size",
            "last_error",
            "attempts",
            "next_attempt_at",
            "created_at",
        ]


class EnvOutput(OutputSerializer):
    value = serializers.SerializerMethodField(method_name="shown_value")

    class Meta:
        model = Environment
        fields = ["key", "value", "is_secret", "is_system", "category", "updated_at"]

    def shown_value(self, obj: Environment) -> str:
        return selectors.env_value_for_display(obj)


class ImportStateOutput(serializers.Serializer):
    state = serializers.ChoiceField(choices=["importing", "imported", "needs_attention"])
    reason = serializers.CharField(help_text="Why it needs attention (git's message), else empty.")
    task_id = serializers.IntegerField(allow_null=True, help_text="The clone task (retry it when it failed).")
    repository = serializers.CharField()
    branch = serializers.CharField()


class ProjectOutput(OutputSerializer):
    sandboxes = SandboxOutput(many=True, read_only=True)
    databases = DatabaseOutput(many=True, read_only=True)
    allowed_actions = serializers.SerializerMethodField()
    github_import = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "description",
            "status",
            "status_changed_at",
            "idle_stop_minutes",
            "allowed_actions",
            "github_import",
            "sandboxes",
            "databases",
            "created_at",
            "updated_at",
        ]

    @extend_schema_field(ImportStateOutput(allow_null=True))
    def get_github_import(self, obj: Project) -> dict[str, Any] | None:
        return selectors.import_state(obj)

    def get_allowed_actions(self, obj: Project) -> list[str]:
        statuses = [r.status for r in (*obj.sandboxes.all(), *obj.databases.all())]
        return allowed_actions(obj.status, statuses)


class SandboxSummaryOutput(OutputSerializer):
    class Meta:
        model = Sandbox
        fields = ["id", "name", "status", "status_reason", "public_url"]


class DatabaseSummaryOutput(OutputSerializer):
    class Meta:
        model = Database
        fields = ["id", "name", "status", "status_reason"]


class ProjectSummaryOutput(ProjectOutput):
    """One row of the project list: the resources in brief (the detail has everything)."""

    sandboxes = SandboxSummaryOutput(many=True, read_only=True)  # type: ignore[assignment]
    databases = DatabaseSummaryOutput(many=True, read_only=True)  # type: ignore[assignment]


IdleStopState = inline_serializer(
    "IdleStopState",
    {
        "minutes": serializers.FloatField(help_text="The timeout that applies; 0 = never."),
        "source": serializers.ChoiceField(
            ["project", "user", "default"],
            help_text="project: the project's own; user: the owner's default; default: the server's.",
        ),
    },
)


class ProjectDetailOutput(ProjectOutput):
    environment = EnvOutput(many=True, read_only=True)
    idle_stop = serializers.SerializerMethodField()

    class Meta(ProjectOutput.Meta):
        fields = [*ProjectOutput.Meta.fields, "idle_stop", "environment"]

    @extend_schema_field(IdleStopState)
    def get_idle_stop(self, obj: Project) -> dict[str, Any]:
        minutes, source = selectors.idle_setting(obj)
        return {"minutes": minutes, "source": source}


class EventOutput(OutputSerializer):
    actor_username = serializers.CharField(source="actor_user.username", default=None, allow_null=True)

    class Meta:
        model = ResourceEvent
        fields = [
            "id",
            "resource_kind",
            "resource_id",
            "resource_name",
            "from_status",
            "to_status",
            "reason",
            "message",
            "actor",
            "actor_username",
            "created_at",
        ]


def _detail(project: Project) -> dict[str, Any]:
    owner = project.owner
    detail = selectors.project_get(user=owner, project_id=project.pk)
    detail.owner = owner  # the idle stop shown reads the owner's default
    return ProjectDetailOutput(detail).data


def _used(request: Request, project_id: str) -> Project:
    """The caller's project, for a read that counts as using it: the idle stop is pushed back (one
    conditional UPDATE that writes at most once a minute per sandbox, see services.record_activity)."""
    project = selectors.project_get(user=current_user(request), project_id=project_id)
    services.record_activity(project=project)
    return project


class ProjectListApi(APIView):
    lifecycle_writes = True  # core.throttles.LifecycleWriteThrottle

    pagination_class = Pagination  # declared, so the schema documents the paginated envelope

    class ProjectCreateSerializer(StrictSerializer):
        name = serializers.CharField(max_length=200, allow_blank=True, trim_whitespace=False)
        description = serializers.CharField(required=False, allow_blank=True, max_length=5000)
        size = serializers.CharField(
            required=False,
            max_length=100,
            help_text="The sandbox's size, a name from the server's SANDBOX_SIZES (by default small, "
            "medium, large); the smallest when left out. GET /api/v1/me/quota lists them.",
        )

    @extend_schema(
        responses=ProjectSummaryOutput(many=True),
        parameters=[
            OpenApiParameter(
                "status", enum=ProjectStatus.values, description="Only projects in this status."
            ),
            OpenApiParameter("search", description="Text in the name or the description."),
        ],
    )
    def get(self, request: Request) -> Response:
        status = request.query_params.get("status")
        if status and status not in ProjectStatus.values:
            raise ValidationFailed(f"Unknown status '{status}'.", code="invalid_filter")
        qs = selectors.projects_for(
            user=current_user(request), status=status, search=request.query_params.get("search")
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(ProjectSummaryOutput(page, many=True).data)

    @extend_schema(request=ProjectCreateSerializer, responses={202: ProjectDetailOutput})
    def post(self, request: Request) -> Response:
        data = self.ProjectCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = services.project_create(
            owner=current_user(request), actor=actor_for(request), **data.validated_data
        )
        return Response(ProjectDetailOutput(project).data, status=202)


class ProjectImportApi(APIView):
    lifecycle_writes = True  # core.throttles.LifecycleWriteThrottle
    error_codes_extra = ("404", "502")  # core.schema: not your installation / GitHub unavailable

    class ProjectImportSerializer(StrictSerializer):
        installation_id = serializers.IntegerField(help_text="GitHub's id of one of your installations.")
        repository = serializers.CharField(max_length=200, help_text="owner/name")
        branch = serializers.CharField(
            required=False,
            max_length=200,
            help_text="The branch to clone; the repository's default otherwise.",
        )
        name = serializers.CharField(
            required=False,
            max_length=200,
            allow_blank=True,
            help_text="The project's name; the repository's.",
        )
        description = serializers.CharField(required=False, allow_blank=True, max_length=5000)
        size = serializers.CharField(required=False, max_length=100)

    @extend_schema(request=ProjectImportSerializer, responses={202: ProjectDetailOutput})
    def post(self, request: Request) -> Response:
        data = self.ProjectImportSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = services.project_import(
            owner=current_user(request), actor=actor_for(request), **data.validated_data
        )
        return Response(ProjectDetailOutput(project).data, status=202)


class ProjectDetailApi(APIView):
    lifecycle_writes = True  # core.throttles.LifecycleWriteThrottle

    @extend_schema(responses=ProjectDetailOutput)
    def get(self, request: Request, project_id: str) -> Response:
        return Response(_detail(_used(request, project_id)))

    @extend_schema(request=None, responses={202: ProjectOutput})
    def delete(self, request: Request, project_id: str) -> Response:
        project = selectors.project_get(user=current_user(request), project_id=project_id)
        remaining = services.project_delete(project=project, actor=actor_for(request))
        if remaining is None:  # it had no resources: the project is gone already
            gone = {**ProjectOutput(project).data, "status": ProjectStatus.TERMINATED, "allowed_actions": []}
            return Response(gone, status=202)
        return Response(_detail(remaining), status=202)


class _ProjectActionApi(APIView):
    lifecycle_writes = True  # core.throttles.LifecycleWriteThrottle

    action_name = ""

    @extend_schema(request=None, responses={202: ProjectOutput})
    def post(self, request: Request, project_id: str) -> Response:
        project = selectors.project_get(user=current_user(request), project_id=project_id)
        service = getattr(services, f"project_{self.action_name}")
        return Response(_detail(service(project=project, actor=actor_for(request))), status=202)


class ProjectStartApi(_ProjectActionApi):
    action_name = "start"


class ProjectStopApi(_ProjectActionApi):
    action_name = "stop"


class ProjectIdleStopApi(APIView):
    class IdleStopSerializer(StrictSerializer):
        minutes = serializers.IntegerField(
            allow_null=True,
            min_value=0,
            max_value=userconfig_services.IDLE_STOP_MAX_MINUTES,
            help_text="Minutes without activity before the sandbox stops; 0 = never; null = the owner's "
            "default (PUT /api/v1/me/idle-stop), else the server's.",
        )

    @extend_schema(request=IdleStopSerializer, responses=ProjectOutput)
    def put(self, request: Request, project_id: str) -> Response:
        project = selectors.project_get(user=current_user(request), project_id=project_id)
        data = self.IdleStopSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.idle_stop_set(
            project=project, minutes=data.validated_data["minutes"], actor=actor_for(request)
        )
        return Response(_detail(project))


class ProjectRetryApi(_ProjectActionApi):
    action_name = "retry"


class ProjectDiagnosticsApi(APIView):
    """The project's diagnostics as a worker last fetched them (with their age); a visit asks a worker
    for fresh ones when they are older than DIAGNOSTICS_FRESH_SECONDS. Owner only."""

    @extend_schema(responses={200: dict})
    def get(self, request: Request, project_id: str) -> Response:
        project = selectors.project_get(user=current_user(request), project_id=project_id)
        return Response(diagnostics.for_display(project.pk))


class ProjectForgetApi(APIView):
    """Forget a project whose cluster access is gone: rows removed, the cluster untouched. 409
    `cluster_reachable` while the owner's kubeconfig still reaches the cluster."""

    lifecycle_writes = True

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request, project_id: str) -> Response:
        project = selectors.project_get(user=current_user(request), project_id=project_id)
        services.project_forget(project=project, actor=actor_for(request))
        return Response(status=204)


class EnvVariableSerializer(serializers.Serializer):
    """Documents one item; the service validates items so every surface gets the same messages."""

    key = serializers.CharField(help_text="POSIX name: [A-Za-z_][A-Za-z0-9_]*, at most 256 characters")
    value = serializers.CharField(allow_blank=True, help_text="at most 32 KiB")
    is_secret = serializers.BooleanField(required=False, default=False)


class EnvApi(APIView):
    class EnvUpsertSerializer(StrictSerializer):
        variables = serializers.ListField(child=serializers.DictField(), max_length=1000)

    class EnvUpsertSchema(serializers.Serializer):
        variables = serializers.ListField(child=EnvVariableSerializer())

    @extend_schema(responses=EnvOutput(many=True))
    def get(self, request: Request, project_id: str) -> Response:
        project = _used(request, project_id)
        return Response(EnvOutput(selectors.env_for(project=project), many=True).data)

    @extend_schema(request=EnvUpsertSchema, responses=EnvOutput(many=True))
    def put(self, request: Request, project_id: str) -> Response:
        project = selectors.project_get(user=current_user(request), project_id=project_id)
        data = self.EnvUpsertSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.env_upsert(
            project=project, variables=data.validated_data["variables"], actor=actor_for(request)
        )
        return Response(EnvOutput(selectors.env_for(project=project), many=True).data)


class EnvKeyApi(APIView):
    @extend_schema(request=None, responses={204: None})
    def delete(self, request: Request, project_id: str, key: str) -> Response:
        project = selectors.project_get(user=current_user(request), project_id=project_id)
        services.env_delete(project=project, key=key, actor=actor_for(request))
        return Response(status=204)


class DatabaseListApi(APIView):
    lifecycle_writes = True  # core.throttles.LifecycleWriteThrottle

    class DatabaseInputSerializer(StrictSerializer):
        env_key = serializers.CharField(
            required=False,
            allow_blank=True,
            max_length=256,
            help_text="The environment variable the sandbox gets the database's URL in (default "
            "DATABASE_URL). Use another name, e.g. TENTER_DATABASE_URL, to keep your own DATABASE_URL.",
        )

    @extend_schema(request=DatabaseInputSerializer, responses={202: DatabaseOutput})
    def post(self, request: Request, project_id: str) -> Response:
        project = selectors.project_get(user=current_user(request), project_id=project_id)
        data = self.DatabaseInputSerializer(data=request.data or {})
        data.is_valid(raise_exception=True)
        database = services.database_add(
            project=project, actor=actor_for(request), env_key=data.validated_data.get("env_key")
        )
        return Response(DatabaseOutput(database).data, status=202)


class DatabaseDetailApi(APIView):
    lifecycle_writes = True  # core.throttles.LifecycleWriteThrottle

    @extend_schema(responses=DatabaseOutput)
    def get(self, request: Request, project_id: str, database_id: str) -> Response:
        database = selectors.database_get(
            user=current_user(request), project_id=project_id, database_id=database_id
        )
        return Response(DatabaseOutput(database).data)

    @extend_schema(request=None, responses={202: DatabaseOutput})
    def delete(self, request: Request, project_id: str, database_id: str) -> Response:
        database = selectors.database_get(
            user=current_user(request), project_id=project_id, database_id=database_id
        )
        services.database_remove(database=database, actor=actor_for(request))
        database.refresh_from_db()
        return Response(DatabaseOutput(database).data, status=202)


class EventListApi(APIView):
    pagination_class = Pagination

    @extend_schema(responses=EventOutput(many=True))
    def get(self, request: Request, project_id: str) -> Response:
        project = selectors.project_get(user=current_user(request), project_id=project_id)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(
            selectors.events_for(project=project, limit=1000), request, view=self
        )
        return paginator.get_paginated_response(EventOutput(page, many=True).data)


class QuotaItemOutput(serializers.Serializer):
    limit = serializers.IntegerField(help_text="The user's limit (CPU in millicores, memory in bytes).")
    in_use = serializers.IntegerField(help_text="What the user has now, in the same unit.")
    unit = serializers.ChoiceField(choices=["count", "millicores", "bytes"])
    limit_display = serializers.CharField(help_text='For people, e.g. "32" or "64Gi".')
    in_use_display = serializers.CharField()


class SandboxSizeOutput(serializers.Serializer):
    name = serializers.CharField()
    cpu_request = serializers.CharField()
    cpu_limit = serializers.CharField()
    memory_request = serializers.CharField()
    memory_limit = serializers.CharField()
    storage_size = serializers.CharField()


class QuotaOutput(serializers.Serializer):
    projects = QuotaItemOutput()
    running_sandboxes = QuotaItemOutput(help_text="Sandboxes RUNNING, STARTING, CREATING or UPDATING.")
    databases = QuotaItemOutput()
    cpu = QuotaItemOutput(help_text="CPU requested by the user's sandboxes and databases.")
    memory = QuotaItemOutput(help_text="Memory requested by the user's sandboxes and databases.")
    sizes = SandboxSizeOutput(many=True, help_text="The sandbox sizes, smallest first.")


class QuotaApi(APIView):
    @extend_schema(responses=QuotaOutput)
    def get(self, request: Request) -> Response:
        quota = selectors.quota_for(user=current_user(request))
        return Response(QuotaOutput({**quota, "sizes": selectors.sandbox_sizes()}).data)
