from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from config import health, metrics
from projects import api as project_api
from sandboxes import api as sandbox_api
from userconfig import api as user_api

api_v1 = [
    path("me/kubeconfig", user_api.KubeconfigApi.as_view(), name="kubeconfig"),
    path("me/agent", user_api.AgentApi.as_view(), name="agent"),
    path("projects", project_api.ProjectListApi.as_view(), name="projects"),
    path("projects/<str:project_id>", project_api.ProjectDetailApi.as_view(), name="project"),
    path("projects/<str:project_id>/start", project_api.ProjectStartApi.as_view(), name="project-start"),
    path("projects/<str:project_id>/stop", project_api.ProjectStopApi.as_view(), name="project-stop"),
    path("projects/<str:project_id>/retry", project_api.ProjectRetryApi.as_view(), name="project-retry"),
    path("projects/<str:project_id>/env", project_api.EnvApi.as_view(), name="project-env"),
    path("projects/<str:project_id>/env/<str:key>", project_api.EnvKeyApi.as_view(), name="project-env-key"),
    path("projects/<str:project_id>/databases", project_api.DatabaseListApi.as_view(), name="databases"),
    path(
        "projects/<str:project_id>/databases/<str:database_id>",
        project_api.DatabaseDetailApi.as_view(),
        name="database",
    ),
    path(
        "projects/<str:project_id>/databases/<str:database_id>/connection",
        sandbox_api.DatabaseConnectionApi.as_view(),
        name="database-connection",
    ),
    path("projects/<str:project_id>/events", project_api.EventListApi.as_view(), name="project-events"),
    path("projects/<str:project_id>/tasks", project_api.TaskListApi.as_view(), name="project-tasks"),
    path("sandboxes/<str:sandbox_id>", sandbox_api.SandboxDetailApi.as_view(), name="sandbox"),
    path(
        "sandboxes/<str:sandbox_id>/terminal",
        sandbox_api.SandboxTerminalApi.as_view(),
        name="sandbox-terminal",
    ),
]

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("api/v1/", include((api_v1, "api"), namespace="api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("", include("projects.urls")),
]

handler404 = "config.views.page_not_found"
handler500 = "config.views.server_error"
