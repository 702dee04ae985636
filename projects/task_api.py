"""REST API for project tasks and skills. Views only parse, call a selector or a service, and serialize."""

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.audit import actor_for
from core.drf import OutputSerializer, Pagination
from projects import selectors, task_services
from projects.api import _used as used_project  # a read that counts as using the project
from projects.models import ProjectTask, ProjectTaskAttempt, Skill
from userconfig.auth import current_user


class AttemptOutput(OutputSerializer):
    class Meta:
        model = ProjectTaskAttempt
        fields = ["number", "started_at", "finished_at", "duration", "exit_code", "output", "error"]


class TaskOutput(OutputSerializer):
    skill: serializers.SlugRelatedField[Skill] = serializers.SlugRelatedField(
        slug_field="slug", read_only=True, allow_null=True
    )
    last_error = serializers.CharField(source="error", help_text="The last failure, as shown to you.")
    output_tail = serializers.CharField(
        source="output",
        help_text="The last attempt's output (stdout then stderr), its tail, secrets redacted.",
    )
    attempt_log = AttemptOutput(source="attempt_rows", many=True, read_only=True)
    can_cancel = serializers.SerializerMethodField()
    can_retry = serializers.SerializerMethodField()

    class Meta:
        model = ProjectTask
        fields = [
            "id",
            "type",
            "status",
            "status_reason",
            "skill",
            "attempts",
            "max_attempts",
            "last_error",
            "output_tail",
            "attempt_log",
            "next_attempt_at",
            "started_at",
            "finished_at",
            "created_at",
            "can_cancel",
            "can_retry",
        ]

    def get_can_cancel(self, task: ProjectTask) -> bool:
        return task.status in task_services.WAITING

    def get_can_retry(self, task: ProjectTask) -> bool:
        return task.status == "FAILED"


class SkillOutput(OutputSerializer):
    enabled = serializers.BooleanField(source="enabled_for_user", help_text="Enabled for your projects.")
    in_catalog = serializers.BooleanField(source="enabled", help_text="Offered in the catalog.")

    class Meta:
        model = Skill
        fields = ["id", "slug", "name", "description", "source_url", "enabled", "in_catalog"]


class ProjectSkillOutput(serializers.Serializer):
    id = serializers.UUIDField(source="skill.id")
    slug = serializers.CharField(source="skill.slug")
    name = serializers.CharField(source="skill.name")
    enabled = serializers.BooleanField()
    state = serializers.ChoiceField(
        choices=["installing", "installed", "failed", "uninstalling", "not_installed"]
    )
    task_id = serializers.IntegerField(allow_null=True)
    error = serializers.CharField()


class TaskListApi(APIView):
    pagination_class = Pagination

    @extend_schema(responses=TaskOutput(many=True))
    def get(self, request: Request, project_id: str) -> Response:
        project = used_project(request, project_id)
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(selectors.tasks_for(project=project), request, view=self)
        return paginator.get_paginated_response(TaskOutput(page, many=True).data)


class _TaskActionApi(APIView):
    lifecycle_writes = True

    def act(self, **kwargs: Any) -> ProjectTask:
        raise NotImplementedError

    @extend_schema(request=None, responses={202: TaskOutput})
    def post(self, request: Request, project_id: str, task_id: str) -> Response:
        project = selectors.project_get(user=current_user(request), project_id=project_id)
        task = self.act(project=project, task_id=task_id, actor=actor_for(request))
        return Response(TaskOutput(task).data, status=202)


class TaskCancelApi(_TaskActionApi):
    def act(self, **kwargs: Any) -> ProjectTask:
        return task_services.task_cancel(**kwargs)


class TaskRetryApi(_TaskActionApi):
    def act(self, **kwargs: Any) -> ProjectTask:
        return task_services.task_retry(**kwargs)


class SkillListApi(APIView):
    @extend_schema(responses=SkillOutput(many=True))
    def get(self, request: Request) -> Response:
        return Response(SkillOutput(selectors.skills_for(user=current_user(request)), many=True).data)


class MySkillApi(APIView):
    lifecycle_writes = True

    def _skill(self, skill: Skill, enabled: bool) -> Response:
        skill.enabled_for_user = enabled  # type: ignore[attr-defined]
        return Response(SkillOutput(skill).data, status=202)

    @extend_schema(request=None, responses={202: SkillOutput})
    def put(self, request: Request, skill_id: str) -> Response:
        """Enable the skill for all your projects: one install task per project (202)."""
        user_skill = task_services.skill_enable(
            user=current_user(request), skill_id=skill_id, actor=actor_for(request)
        )
        return self._skill(user_skill.skill, True)

    @extend_schema(request=None, responses={202: SkillOutput})
    def delete(self, request: Request, skill_id: str) -> Response:
        """Disable the skill: pending installs are cancelled, installed copies uninstalled (202)."""
        skill = task_services.skill_disable(
            user=current_user(request), skill_id=skill_id, actor=actor_for(request)
        )
        return self._skill(skill, False)


class ProjectSkillsApi(APIView):
    @extend_schema(responses=ProjectSkillOutput(many=True))
    def get(self, request: Request, project_id: str) -> Response:
        project = used_project(request, project_id)
        return Response(ProjectSkillOutput(selectors.project_skills(project=project), many=True).data)
