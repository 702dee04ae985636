"""Dashboard pages for skills and a project's tasks. Views only parse, call a selector or a service, and
render; the project page fetches `_tasks.html` from `project_tasks` while tasks are active."""

from uuid import UUID

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from core.audit import actor_for
from core.errors import NotFound, ServiceError
from projects import selectors, task_services
from projects.models import Project
from userconfig.auth import current_user


def _project(request: HttpRequest, project_id: UUID) -> Project:
    try:
        return selectors.project_get(user=current_user(request), project_id=project_id)
    except NotFound:
        raise Http404("Project not found.") from None


def tasks_context(project: Project) -> dict[str, object]:
    tasks = selectors.recent_tasks_for(project=project)
    return {
        "project": project,
        "tasks": tasks,
        "project_skills": selectors.project_skills(project=project),
        "tasks_active": any(t.status in ("PENDING", "WAITING_FOR_PREREQUISITES", "RUNNING") for t in tasks),
    }


@login_required
@require_GET
@never_cache
def project_tasks(request: HttpRequest, project_id: UUID) -> HttpResponse:
    """The tasks and skills section of the project page (a partial)."""
    return render(request, "projects/_tasks.html", tasks_context(_project(request, project_id)))


@login_required
@require_POST
def task_action(request: HttpRequest, project_id: UUID, task_id: int, action: str) -> HttpResponse:
    project = _project(request, project_id)
    service = task_services.task_cancel if action == "cancel" else task_services.task_retry
    try:
        service(project=project, task_id=task_id, actor=actor_for(request))
        messages.success(request, "Task cancelled." if action == "cancel" else "Task queued again.")
    except NotFound:
        raise Http404("Task not found.") from None
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect(f"/projects/{project.pk}/#tasks")


@login_required
@require_GET
def skills_page(request: HttpRequest) -> HttpResponse:
    skills = selectors.skills_for(user=current_user(request))
    return render(request, "skills/list.html", {"skills": skills, "nav": "skills"})


@login_required
@require_POST
def skill_toggle(request: HttpRequest, skill_id: UUID) -> HttpResponse:
    user, actor = current_user(request), actor_for(request)
    enable = request.POST.get("enabled") == "1"
    try:
        if enable:
            task_services.skill_enable(user=user, skill_id=skill_id, actor=actor)
            messages.success(request, "Skill enabled: it is being installed in your projects.")
        else:
            task_services.skill_disable(user=user, skill_id=skill_id, actor=actor)
            messages.success(request, "Skill disabled: it is being removed from your projects.")
    except NotFound:
        raise Http404("Skill not found.") from None
    return redirect("dashboard:skills")
