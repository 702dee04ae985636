"""Dashboard views for projects. Each one parses input, calls a selector or a service (the same ones
the REST API uses) and renders. Another user's project is a 404 everywhere; secrets are never in
the HTML: the owner reveals them through small POST endpoints that are audited."""

from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.cache import patch_vary_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from core import audit
from core.audit import actor_for
from core.errors import NotFound, ServiceError
from core.secrets import SECRET_MASK
from core.throttles import lifecycle_wait
from projects import selectors, services, task_views
from projects.forms import (
    DeleteProjectForm,
    EnvBatchForm,
    EnvVarForm,
    ProjectCreateForm,
    SizeForm,
    add_service_error,
)
from projects.models import Project, ProjectStatus
from projects.status import allowed_actions, recommendation
from reconcile import diagnostics
from sandboxes.models import TRANSITIONAL, Sandbox
from userconfig import selectors as user_selectors
from userconfig import services as user_services
from userconfig.auth import current_user

PAGE_SIZE = 50
TIMELINE_LIMIT = 50
FILTER_ORDER = ["RUNNING", "CREATING", "STARTING", "UPDATING", "STOPPING", "STOPPED", "ERROR", "PARTIAL"]
LIVE_REGIONS = ("header", "waiting", "resources", "timeline", "envhint")


def wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def secret_json(data: dict[str, Any], status: int = 200) -> JsonResponse:
    response = JsonResponse(data, status=status)
    response["Cache-Control"] = "no-store"
    return response


def error_json(exc: ServiceError) -> JsonResponse:
    return JsonResponse({"code": exc.code, "message": exc.message}, status=exc.status_code)


# --- Rate limits on lifecycle actions (the API's per-user bucket, core.throttles) -------------------


def _throttled(request: HttpRequest) -> int | None:
    """Seconds to wait when the user made too many lifecycle changes lately (None: go ahead)."""
    return lifecycle_wait(request)


def _throttle_message(wait: int) -> str:
    return f"Too many changes in a short time: wait {wait} s and try again. Nothing was changed."


def _throttle_reply(request: HttpRequest, wait: int, back: str) -> HttpResponse:
    """429 with Retry-After for fetch/JSON callers; for a form post, the message and back to the page
    (the page's own forms keep their input: see the views that re-render instead)."""
    if wants_json(request):
        body = {"code": "throttled", "message": _throttle_message(wait), "details": {"retry_after": wait}}
        response: HttpResponse = JsonResponse(body, status=429)
    else:
        messages.error(request, _throttle_message(wait))
        response = HttpResponseRedirect(back)
    response["Retry-After"] = str(wait)
    return response


def _project(request: HttpRequest, project_id: UUID) -> Project:
    try:
        return selectors.project_get(user=current_user(request), project_id=project_id)
    except NotFound:
        raise Http404("Project not found.") from None


def _sandbox(project: Project) -> Sandbox | None:
    sandboxes = list(project.sandboxes.all())
    return sandboxes[0] if sandboxes else None


def _detail_url(project_id: UUID) -> str:
    return reverse("dashboard:detail", args=[project_id])


# --- List and create -------------------------------------------------------------------------------


@login_required
@require_GET
def project_list(request: HttpRequest) -> HttpResponse:
    return _render_list(request, ProjectCreateForm())


def _render_list(request: HttpRequest, create_form: ProjectCreateForm, status: int = 200) -> HttpResponse:
    status_filter = request.GET.get("status", "")
    if status_filter not in ProjectStatus.values:
        status_filter = ""
    query = request.GET.get("q", "").strip()[:100]
    projects = selectors.projects_for(
        user=current_user(request), status=status_filter or None, search=query or None
    )
    page = Paginator(projects, PAGE_SIZE).get_page(request.GET.get("page"))
    counts = selectors.project_status_counts(user=current_user(request))
    filters = [s for s in FILTER_ORDER if counts.get(s) or s == status_filter]
    context = {
        "page": page,
        "projects": page.object_list,
        "status_filter": status_filter,
        "query": query,
        "total": sum(counts.values()),
        "counts": counts,
        "filters": [(s, counts.get(s, 0)) for s in filters],
        "kubeconfig": user_selectors.kubeconfig_state(user=current_user(request)),
        "create_form": create_form,
        "quota": selectors.quota_for(user=current_user(request)),
        "nav": "projects",
    }
    context["polling"] = any(p.status in TRANSITIONAL for p in page.object_list)
    if request.htmx and not request.htmx.boosted:  # type: ignore[attr-defined]  # django-htmx
        response = render(request, "projects/_list_body.html", context, status=status)
    else:
        context["notices"] = user_services.notices_take(user=current_user(request))
        response = render(request, "projects/list.html", context, status=status)
    patch_vary_headers(response, ["HX-Request"])  # the partial and the page share a URL
    return response


@login_required
@require_POST
def project_create(request: HttpRequest) -> HttpResponse:
    form = ProjectCreateForm(request.POST)
    project = None
    wait = _throttled(request) if form.is_valid() else None
    if wait is not None:
        if wants_json(request):
            return _throttle_reply(request, wait, reverse("dashboard:list"))
        form.add_error(None, _throttle_message(wait))  # the form comes back filled in
        response = _render_list(request, form, status=429)
        response["Retry-After"] = str(wait)
        return response
    if form.is_valid():
        try:
            project = services.project_create(
                owner=current_user(request), actor=actor_for(request), **form.cleaned_data
            )
        except ServiceError as exc:
            add_service_error(form, exc)
    if wants_json(request):
        if project is None:
            return JsonResponse({"errors": {f: list(e) for f, e in form.errors.items()}}, status=400)
        card = render_to_string("projects/_card.html", {"project": project}, request=request)
        return JsonResponse({"id": str(project.pk), "url": _detail_url(project.pk), "card": card}, status=201)
    if project is None:
        return _render_list(request, form, status=400)
    messages.success(request, f"Creating {project.name}. Its sandbox starts in the background.")
    return redirect(_detail_url(project.pk))


@login_required
@require_GET
@never_cache
def project_status(request: HttpRequest) -> JsonResponse:
    """Live statuses for the list page: `?ids=a,b,c` → {id: {status, sandboxes, databases, ...}}."""
    ids = [i for i in request.GET.get("ids", "").split(",") if i]
    return JsonResponse(selectors.project_statuses(user=current_user(request), ids=ids))


# --- Project page ----------------------------------------------------------------------------------

WAITING = {
    "CREATING": ("Creating your sandbox", 1),
    "STARTING": ("Starting your sandbox", 2),
    "UPDATING": ("Applying your changes", 2),
    "STOPPING": ("Stopping the sandbox", None),
    "STOPPED": ("The sandbox is stopped", None),
    "TERMINATING": ("Deleting the project", None),
    "ERROR": ("Something went wrong", None),
}
STEPS = ["Requested", "Kubernetes objects", "Container starting", "Ready"]


TRANSIENT_PREFIXES = ("transient: ", "conflict: ")


def _waiting(sandbox: Sandbox | None) -> dict[str, Any] | None:
    if sandbox is None or sandbox.status == "RUNNING":
        return None
    title, step = WAITING.get(sandbox.status, (sandbox.status.title(), None))
    detail = sandbox.status_reason
    for prefix in TRANSIENT_PREFIXES:  # the engine's codes, not words for a person
        detail = detail.removeprefix(prefix)
    if sandbox.status == "ERROR":
        detail = sandbox.last_error or detail
    elif sandbox.status == "STOPPED":
        detail = ""  # nothing is waiting: the template explains what a stopped sandbox keeps
    elif not detail:
        detail = "Waiting for the cluster…"
    retrying = sandbox.is_transitional and sandbox.attempts > 0 and sandbox.next_attempt_at is not None
    return {
        "title": title,
        "step": step,
        "steps": [(i, label) for i, label in enumerate(STEPS)] if step is not None else [],
        "detail": detail,
        "attempts": sandbox.attempts if retrying else 0,
        "next_attempt_at": sandbox.next_attempt_at if retrying else None,
    }


def _recommendation(errors: list[Any], events: list[Any]) -> dict[str, str] | None:
    """The one action that fits the first failed resource, from the reason of its latest ERROR event."""
    if not errors:
        return None
    failed = errors[0]
    reason = next((e.reason for e in events if e.resource_id == failed.pk and e.to_status == "ERROR"), "")
    action, advice = recommendation(reason)
    return {"action": action, "advice": advice, "reason": reason}


def _live_context(request: HttpRequest, project: Project) -> dict[str, Any]:
    sandboxes = list(project.sandboxes.all())
    databases = list(project.databases.all())
    resources = [*sandboxes, *databases]
    sandbox = sandboxes[0] if sandboxes else None
    errors = [r for r in resources if r.status == "ERROR"]
    events = list(selectors.events_for(project=project, limit=TIMELINE_LIMIT))
    return {
        "project": project,
        "sandbox": sandbox,
        "database": databases[0] if databases else None,
        "databases": databases,
        "errors": errors,
        "actions": allowed_actions(project.status, [r.status for r in resources]),
        "waiting": _waiting(sandbox),
        "transitional": project.status in TRANSITIONAL or any(r.is_transitional for r in resources),
        "events": events,
        "recommend": _recommendation(errors, events),
        # always asked (one query), so the page's query count does not depend on having a database
        "own_database_url": selectors.has_own_database_url(project=project) and not databases,
        "idle": _idle(request, project, sandbox),
        "sizes": selectors.sandbox_sizes(),
        "github_import": selectors.import_state(project),
    }


IDLE_CHOICES = (15, 30, 60, 120, 240, 480, 1440)


IDLE_SOURCES = {
    "project": "set for this project",
    "user": "your default",
    "default": "the server default",
}


def _idle(request: HttpRequest, project: Project, sandbox: Sandbox | None) -> dict[str, Any]:
    """The idle stop as the page shows it: the timeout, which level it comes from, and when a running
    sandbox will stop."""
    user_minutes = current_user(request).idle_stop_minutes
    minutes, source = selectors.idle_setting(project, user_minutes)
    timeout = services.idle_timeout(project, user_minutes)
    stops_at = None
    if timeout and sandbox is not None and sandbox.status == "RUNNING":
        stops_at = (sandbox.last_activity_at or sandbox.status_changed_at) + timeout
    own = project.idle_stop_minutes
    # What "default" means for this project: the user's own default, else the server's.
    inherited = user_minutes if user_minutes is not None else round(settings.IDLE_STOP_MINUTES)
    return {
        "minutes": round(minutes) if timeout else 0,
        "stops_at": stops_at,
        "own": own,
        "source": source,
        "source_label": IDLE_SOURCES[source],
        "default": inherited,
        "default_label": "Your default" if user_minutes is not None else "Default",
        "choices": sorted({*IDLE_CHOICES, *([own] if own else [])}),
    }


def _render_detail(
    request: HttpRequest,
    project: Project,
    env_form: EnvVarForm | None = None,
    status: int = 200,
    batch_form: EnvBatchForm | None = None,
    confirm_overwrite: list[str] | None = None,
) -> HttpResponse:
    env = selectors.env_for(project=project)
    context = {
        **task_views.tasks_context(project),
        **_live_context(request, project),
        "env": [(row, selectors.env_value_for_display(row)) for row in env if not row.is_system],
        "system_env": [
            (row, selectors.env_value_for_display(row))
            for row in env
            if row.is_system and row.category not in ("ttyd", "file_browser")
        ],
        "env_form": env_form or EnvVarForm(),
        "batch_form": batch_form or EnvBatchForm(),
        "confirm_overwrite": confirm_overwrite or [],
        "mask": SECRET_MASK,
        "nav": "projects",
        # what a worker last fetched (a refresh is asked for when stale; the cluster is never read here)
        "diag": diagnostics.for_display(project.pk),
        **_terminal_origin(_sandbox(project)),
    }
    response = render(request, "projects/detail.html", context, status=status)
    if context["terminal_origin"]:
        # The page checks that this browser can reach the terminal's host before embedding it (a
        # no-cors request: nothing of the answer is readable), so it can say why when it cannot.
        response._csp_update = {"connect-src": [context["terminal_origin"]]}  # type: ignore[attr-defined]
    return response


def _terminal_origin(sandbox: Sandbox | None) -> dict[str, str]:
    parts = urlsplit(sandbox.ttyd_url if sandbox else "")
    ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    return {
        "terminal_origin": f"{parts.scheme}://{parts.netloc}" if ok else "",
        "terminal_host": parts.hostname or "" if ok else "",
        "ingress_domain_setting": settings.INGRESS_DOMAIN,
    }


@login_required
@require_GET
def project_detail(request: HttpRequest, project_id: UUID) -> HttpResponse:
    project = _project(request, project_id)
    if services.record_activity(project=project):  # a visit counts (the page's poller does not)
        project = _project(request, project_id)  # show the new idle deadline (at most once a minute)
    return _render_detail(request, project)


@login_required
@require_POST
def keep_running(request: HttpRequest, project_id: UUID) -> HttpResponse:
    project = _project(request, project_id)
    services.record_activity(project=project, force=True)
    messages.success(request, "Kept running: the idle timer starts again now.")
    return redirect(_detail_url(project.pk))


@login_required
@require_POST
def idle_stop_save(request: HttpRequest, project_id: UUID) -> HttpResponse:
    project = _project(request, project_id)
    raw = request.POST.get("minutes", "default")
    try:
        minutes = None if raw == "default" else int(raw)
        services.idle_stop_set(project=project, minutes=minutes, actor=actor_for(request))
        messages.success(request, "Idle stop saved.")
    except (ValueError, ServiceError) as exc:
        messages.error(request, getattr(exc, "message", "Choose a number of minutes."))
    return redirect(_detail_url(project.pk))


@login_required
@require_GET
@never_cache
def project_live(request: HttpRequest, project_id: UUID) -> JsonResponse:
    """The project page's changing parts, rendered on the server, for its poller."""
    try:
        project = selectors.project_get(user=current_user(request), project_id=project_id)
    except NotFound:
        # Deleted (or never yours): the poller on a deleted project's page goes back to the list.
        return JsonResponse({"gone": True, "list_url": reverse("dashboard:list")}, status=404)
    context = _live_context(request, project)
    html = {
        region: render_to_string(f"projects/_{region}.html", context, request=request)
        for region in LIVE_REGIONS
    }
    sandbox = context["sandbox"]
    return JsonResponse(
        {
            "status": project.status,
            "transitional": context["transitional"],
            "sandbox_status": sandbox.status if sandbox else None,
            "html": html,
        }
    )


# --- Lifecycle actions -----------------------------------------------------------------------------

ACTIONS = {
    "start": (services.project_start, "Starting {name}."),
    "stop": (services.project_stop, "Stopping {name}."),
    "retry": (services.project_retry, "Retrying {name} from the step that failed."),
}


@login_required
@require_POST
def project_action(request: HttpRequest, project_id: UUID, action: str) -> HttpResponse:
    project = _project(request, project_id)
    service, done = ACTIONS[action]
    wait = _throttled(request)
    if wait is not None:
        return _throttle_reply(request, wait, _detail_url(project.pk))
    try:
        service(project=project, actor=actor_for(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        # "lifecycle": the project page rewrites it once the project is no longer in transition, so
        # "Stopping Web Shop." never stays on screen after it stopped (static/js/app.js).
        messages.success(request, done.format(name=project.name), extra_tags="lifecycle")
    return redirect(_detail_url(project.pk))


@login_required
@require_POST
def project_delete(request: HttpRequest, project_id: UUID) -> HttpResponse:
    project = _project(request, project_id)
    form = DeleteProjectForm(request.POST)
    if not form.is_valid() or form.cleaned_data["confirm_name"] != project.name:
        messages.error(request, f"Type “{project.name}” exactly to confirm. Nothing was deleted.")
        return redirect(_detail_url(project.pk))
    wait = _throttled(request)
    if wait is not None:
        return _throttle_reply(request, wait, _detail_url(project.pk))
    try:
        services.project_delete(project=project, actor=actor_for(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
        return redirect(_detail_url(project.pk))
    messages.success(request, f"Deleting {project.name}. Its resources are being removed from the cluster.")
    return redirect("dashboard:list")


@login_required
@require_POST
def sandbox_resize(request: HttpRequest, project_id: UUID) -> HttpResponse:
    project = _project(request, project_id)
    sandbox = _sandbox(project)
    form = SizeForm(request.POST)
    if sandbox is None:
        messages.error(request, "This project has no sandbox.")
    elif not form.is_valid() or not form.cleaned_data["size"]:
        messages.error(request, "Choose one of the sizes.")
    elif (wait := _throttled(request)) is not None:
        return _throttle_reply(request, wait, _detail_url(project.pk))
    else:
        try:
            services.sandbox_resize(sandbox=sandbox, size=form.cleaned_data["size"], actor=actor_for(request))
        except ServiceError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, f"{project.name} is now {form.cleaned_data['size']}.")
    return redirect(_detail_url(project.pk))


# --- Environment -----------------------------------------------------------------------------------


@login_required
@require_POST
def env_save(request: HttpRequest, project_id: UUID) -> HttpResponse:
    project = _project(request, project_id)
    form = EnvVarForm(request.POST)
    wait = _throttled(request) if form.is_valid() else None
    if wait is not None:
        if wants_json(request):
            return _throttle_reply(request, wait, _detail_url(project.pk))
        form.add_error(None, _throttle_message(wait))  # the variable typed comes back in the form
        response = _render_detail(request, project, env_form=form, status=429)
        response["Retry-After"] = str(wait)
        return response
    if (
        form.is_valid()
        and not form.cleaned_data["overwrite"]
        and selectors.env_overwrites(project=project, variables=form.variables())
    ):
        key = form.cleaned_data["key"]
        form.add_error("key", f"{key} is already set. Saving replaces its value: tick “Replace” to confirm.")
        return _render_detail(request, project, env_form=form, status=409, confirm_overwrite=[key])
    if form.is_valid():
        try:
            changed = services.env_upsert(
                project=project, variables=form.variables(), actor=actor_for(request)
            )
        except ServiceError as exc:
            add_service_error(form, exc)
        else:
            key = form.cleaned_data["key"]
            messages.success(request, f"Saved {key}." if changed else f"{key} was already up to date.")
            return HttpResponseRedirect(_detail_url(project.pk) + "#environment")
    return _render_detail(request, project, env_form=form, status=400)


@login_required
@require_POST
def env_batch(request: HttpRequest, project_id: UUID) -> HttpResponse:
    """Several variables at once (a pasted `.env` or staged rows): one save, so one restart."""
    project = _project(request, project_id)
    form = EnvBatchForm(request.POST)
    if form.is_valid():
        replaced = selectors.env_overwrites(project=project, variables=form.variables())
        if replaced and not form.cleaned_data["overwrite"]:
            return _render_detail(request, project, batch_form=form, status=409, confirm_overwrite=replaced)
        try:
            changed = services.env_upsert(
                project=project, variables=form.variables(), actor=actor_for(request)
            )
        except ServiceError as exc:
            add_service_error(form, exc)
        else:
            n = len(changed)
            if not n:
                messages.success(request, "Every variable was already up to date: nothing to apply.")
            else:
                restart = " with one restart" if _sandbox_running(project) else ""
                messages.success(request, f"Applied {n} variable{'s' if n != 1 else ''}{restart}.")
            return HttpResponseRedirect(_detail_url(project.pk) + "#environment")
    return _render_detail(request, project, batch_form=form, status=400)


def _sandbox_running(project: Project) -> bool:
    return any(s.status in ("RUNNING", "STARTING", "UPDATING") for s in project.sandboxes.all())


@login_required
@require_POST
def env_delete(request: HttpRequest, project_id: UUID, key: str) -> HttpResponse:
    project = _project(request, project_id)
    if (wait := _throttled(request)) is not None:
        return _throttle_reply(request, wait, _detail_url(project.pk) + "#environment")
    try:
        services.env_delete(project=project, key=key, actor=actor_for(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Removed {key}.")
    return HttpResponseRedirect(_detail_url(project.pk) + "#environment")


@login_required
@require_POST
def env_reveal(request: HttpRequest, project_id: UUID, key: str) -> JsonResponse:
    project = _project(request, project_id)
    try:
        row = selectors.env_get(project=project, key=key)
    except NotFound as exc:
        return error_json(exc)
    audit.record(actor_for(request), "reveal.env", project, key=key)
    return secret_json({"key": row.key, "value": row.value})


# --- Sandbox access (owner-only reveals) -------------------------------------------------------------


def _terminal_url(request: HttpRequest, project: Project) -> str | None:
    sandbox = _sandbox(project)
    url = selectors.terminal_url(sandbox) if sandbox else None
    if url:
        audit.record(actor_for(request), "reveal.terminal", sandbox)
    return url


@login_required
@require_POST
def terminal_reveal(request: HttpRequest, project_id: UUID) -> JsonResponse:
    project = _project(request, project_id)
    url = _terminal_url(request, project)
    if url is None:
        return JsonResponse(
            {"code": "invalid_state", "message": "The terminal is not available."}, status=409
        )
    services.record_activity(project=project)
    return secret_json({"url": url})


@login_required
@require_GET
@never_cache
def terminal_open(request: HttpRequest, project_id: UUID) -> HttpResponse:
    """Open the terminal in a new tab: a redirect to the authorised URL, never shown in a page."""
    project = _project(request, project_id)
    url = _terminal_url(request, project)
    if url is None:
        messages.error(request, "The terminal is not available for this project yet.")
        return redirect(_detail_url(project.pk))
    services.record_activity(project=project)
    return HttpResponseRedirect(url)


@login_required
@require_POST
def filebrowser_reveal(request: HttpRequest, project_id: UUID) -> JsonResponse:
    project = _project(request, project_id)
    sandbox = _sandbox(project)
    if sandbox is None:
        return JsonResponse({"code": "invalid_state", "message": "This project has no sandbox."}, status=409)
    credentials = selectors.filebrowser_credentials(sandbox)
    audit.record(actor_for(request), "reveal.filebrowser", sandbox)
    services.record_activity(project=project)
    return secret_json({"url": sandbox.filebrowser_url, **credentials})


# --- Databases -------------------------------------------------------------------------------------


@login_required
@require_POST
def database_add(request: HttpRequest, project_id: UUID) -> HttpResponse:
    project = _project(request, project_id)
    if (wait := _throttled(request)) is not None:
        return _throttle_reply(request, wait, _detail_url(project.pk) + "#database")
    try:
        services.database_add(
            project=project, actor=actor_for(request), env_key=request.POST.get("env_key", "").strip() or None
        )
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(
            request, "Adding a PostgreSQL database. Its connection details appear when it is ready."
        )
    return HttpResponseRedirect(_detail_url(project.pk) + "#database")


def _database(request: HttpRequest, project_id: UUID, database_id: UUID) -> Any:
    try:
        return selectors.database_get(
            user=current_user(request), project_id=project_id, database_id=database_id
        )
    except NotFound:
        raise Http404("Database not found.") from None


@login_required
@require_POST
def database_remove(request: HttpRequest, project_id: UUID, database_id: UUID) -> HttpResponse:
    database = _database(request, project_id, database_id)
    if (wait := _throttled(request)) is not None:
        return _throttle_reply(request, wait, _detail_url(project_id) + "#database")
    try:
        services.database_remove(database=database, actor=actor_for(request))
    except ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "Removing the database.")
    return HttpResponseRedirect(_detail_url(project_id) + "#database")


@login_required
@require_POST
def database_connection(request: HttpRequest, project_id: UUID, database_id: UUID) -> JsonResponse:
    database = _database(request, project_id, database_id)
    if not database.is_connection_ready:
        message = "The database is not ready yet; its connection details appear when it is RUNNING."
        return JsonResponse({"code": "invalid_state", "message": message}, status=409)
    audit.record(actor_for(request), "reveal.database_connection", database)
    return secret_json(selectors.database_connection(database))


# --- Start on open ---------------------------------------------------------------------------------
# The project page's "Open" of a stopped sandbox (terminal, files, app) posts here: the project is
# started (the same action rules, quotas and rate limits as its Start button) and a progress page is
# shown, which goes to the target only once the sandbox is RUNNING, never to an address not serving.

OPEN_TARGETS = {"terminal": "Terminal", "files": "Files", "app": "App"}
TOWARDS_RUNNING = ("CREATING", "STARTING", "UPDATING")  # statuses the progress page waits through


def _target_url(request: HttpRequest, project: Project, sandbox: Sandbox, target: str) -> str | None:
    if target == "terminal":  # the audited redirect to the authorised terminal address
        return reverse("dashboard:terminal-open", args=[project.pk])
    return sandbox.filebrowser_url if target == "files" else sandbox.public_url


def _opening(
    request: HttpRequest, project: Project, target: str, *, refusal: str = "", status: int = 200
) -> HttpResponse:
    sandbox = _sandbox(project)
    waiting = _waiting(sandbox)
    if wants_json(request):
        return JsonResponse(
            {
                "ready": sandbox is not None and sandbox.status == "RUNNING",
                "status": sandbox.status if sandbox else None,
                "title": waiting["title"] if waiting else "Ready",
                "step": waiting["step"] if waiting else len(STEPS),
                "message": (sandbox.status_reason or (waiting or {}).get("reason", "")) if sandbox else "",
                "waits": bool(sandbox and sandbox.status in TOWARDS_RUNNING),
            },
            status=status,
        )
    context = {
        "project": project,
        "sandbox": sandbox,
        "target": target,
        "target_label": OPEN_TARGETS[target],
        "waiting": waiting,
        "refusal": refusal,
        "steps": list(enumerate(STEPS)),
        "waits": bool(sandbox and sandbox.status in TOWARDS_RUNNING) and not refusal,
        "nav": "projects",
    }
    return render(request, "projects/opening.html", context, status=status)


@login_required
@never_cache
def open_target(request: HttpRequest, project_id: UUID, target: str) -> HttpResponse:
    """GET: the progress page (JSON for its poller), or the target itself once the sandbox is RUNNING.
    POST: start the project when it is stopped, then the progress page."""
    if target not in OPEN_TARGETS:
        raise Http404("Nothing to open there.")
    project = _project(request, project_id)
    sandbox = _sandbox(project)
    if sandbox is None:
        raise Http404("This project has no sandbox.")
    page = reverse("dashboard:open", args=[project.pk, target])
    if sandbox.status == "RUNNING" and not wants_json(request):
        url = _target_url(request, project, sandbox, target)
        if url:
            services.record_activity(project=project)
            return HttpResponseRedirect(url)
    if request.method != "POST":
        return _opening(request, project, target)
    if sandbox.status in ("STOPPED", "STOPPING", "ERROR"):
        wait = _throttled(request)
        if wait is not None:
            response = _opening(request, project, target, refusal=_throttle_message(wait), status=429)
            response["Retry-After"] = str(wait)
            return response
        try:
            services.project_start(project=project, actor=actor_for(request))
        except ServiceError as exc:
            refusal = f"{project.name} was not started. {exc.message}"
            if exc.code == "quota_exceeded":
                refusal += " Stop another project, or ask an operator to raise your limit."
            return _opening(request, project, target, refusal=refusal, status=exc.status_code)
    return HttpResponseRedirect(page)
