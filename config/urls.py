from csp.constants import NONCE
from csp.decorators import csp_update
from django.contrib import admin
from django.urls import include, path
from django.views.generic.base import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from config import health, metrics
from github import api as github_api
from github import views as github_views
from projects import api as project_api
from projects import task_api, task_views
from projects import views as project_views
from sandboxes import api as sandbox_api
from userconfig import api as user_api
from userconfig import github_signin
from userconfig import views as user_views

api_v1 = [
    path("me/kubeconfig", user_api.KubeconfigApi.as_view(), name="kubeconfig"),
    path("me/kubeconfig/pending", user_api.PendingKubeconfigApi.as_view(), name="kubeconfig-pending"),
    path(
        "me/kubeconfig/pending/accept",
        user_api.PendingKubeconfigAcceptApi.as_view(),
        name="kubeconfig-pending-accept",
    ),
    path("me/agent", user_api.AgentApi.as_view(), name="agent"),
    path("me/tokens", user_api.ApiTokenListApi.as_view(), name="tokens"),
    path("me/tokens/<str:token_id>", user_api.ApiTokenDetailApi.as_view(), name="token"),
    path("me/quota", project_api.QuotaApi.as_view(), name="quota"),
    path("me/idle-stop", user_api.IdleStopDefaultApi.as_view(), name="idle-stop"),
    path("me/warm-pool", user_api.WarmPoolApi.as_view(), name="warm-pool"),
    path("projects", project_api.ProjectListApi.as_view(), name="projects"),
    path("projects/import", project_api.ProjectImportApi.as_view(), name="project-import"),
    path("projects/<str:project_id>", project_api.ProjectDetailApi.as_view(), name="project"),
    path("projects/<str:project_id>/start", project_api.ProjectStartApi.as_view(), name="project-start"),
    path("projects/<str:project_id>/stop", project_api.ProjectStopApi.as_view(), name="project-stop"),
    path("projects/<str:project_id>/retry", project_api.ProjectRetryApi.as_view(), name="project-retry"),
    path("projects/<str:project_id>/forget", project_api.ProjectForgetApi.as_view(), name="project-forget"),
    path(
        "projects/<str:project_id>/diagnostics",
        project_api.ProjectDiagnosticsApi.as_view(),
        name="project-diagnostics",
    ),
    path(
        "projects/<str:project_id>/idle-stop",
        project_api.ProjectIdleStopApi.as_view(),
        name="project-idle-stop",
    ),
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
    path("projects/<str:project_id>/tasks", task_api.TaskListApi.as_view(), name="project-tasks"),
    path(
        "projects/<str:project_id>/tasks/<str:task_id>/cancel",
        task_api.TaskCancelApi.as_view(),
        name="project-task-cancel",
    ),
    path(
        "projects/<str:project_id>/tasks/<str:task_id>/retry",
        task_api.TaskRetryApi.as_view(),
        name="project-task-retry",
    ),
    path("projects/<str:project_id>/skills", task_api.ProjectSkillsApi.as_view(), name="project-skills"),
    path("skills", task_api.SkillListApi.as_view(), name="skills"),
    path("me/skills/<str:skill_id>", task_api.MySkillApi.as_view(), name="my-skill"),
    path("github/installations", github_api.InstallationListApi.as_view(), name="github-installations"),
    path(
        "github/installations/<str:installation_id>/repositories",
        github_api.RepositoryListApi.as_view(),
        name="github-repositories",
    ),
    path("sandboxes/<str:sandbox_id>", sandbox_api.SandboxDetailApi.as_view(), name="sandbox"),
    path("sandboxes/<str:sandbox_id>/resize", sandbox_api.SandboxResizeApi.as_view(), name="sandbox-resize"),
    path(
        "sandboxes/<str:sandbox_id>/heartbeat",
        sandbox_api.SandboxHeartbeatApi.as_view(),
        name="sandbox-heartbeat",
    ),
    path(
        "sandboxes/<str:sandbox_id>/terminal",
        sandbox_api.SandboxTerminalApi.as_view(),
        name="sandbox-terminal",
    ),
]

# The dashboard (server-rendered pages), namespace `dashboard`.
dashboard = [
    # Sign in / out / up
    path("login/", user_views.LoginView.as_view(), name="login"),
    path("logout/", user_views.LogoutView.as_view(), name="logout"),
    path("signup/", user_views.signup, name="signup"),
    # Settings
    path("settings/", user_views.settings_page, name="settings"),
    path("settings/kubeconfig", user_views.kubeconfig_save, name="kubeconfig-save"),
    path("settings/kubeconfig/delete", user_views.kubeconfig_remove, name="kubeconfig-remove"),
    path("settings/kubeconfig/state", user_views.kubeconfig_state, name="kubeconfig-state"),
    path(
        "settings/kubeconfig/pending/discard",
        user_views.kubeconfig_pending_discard,
        name="kubeconfig-pending-discard",
    ),
    path(
        "settings/kubeconfig/pending/accept",
        user_views.kubeconfig_pending_accept,
        name="kubeconfig-pending-accept",
    ),
    path("settings/agent", user_views.agent_save, name="agent-save"),
    path("settings/idle-stop", user_views.idle_stop_save, name="idle-stop-default"),
    path("settings/warm-pool", user_views.warm_pool_save, name="warm-pool"),
    path("settings/github/unlink", user_views.github_unlink, name="github-unlink"),
    path("settings/tokens", user_views.token_create, name="token-create"),
    path("settings/tokens/<int:token_id>/revoke", user_views.token_revoke, name="token-revoke"),
    # Projects
    path("", project_views.project_list, name="list"),
    path("projects/new", project_views.project_create, name="create"),
    path("projects/status", project_views.project_status, name="status"),
    path("projects/<uuid:project_id>/", project_views.project_detail, name="detail"),
    path("projects/<uuid:project_id>/live", project_views.project_live, name="live"),
    path("projects/<uuid:project_id>/tasks", task_views.project_tasks, name="project-tasks"),
    path(
        "projects/<uuid:project_id>/tasks/<int:task_id>/cancel",
        task_views.task_action,
        {"action": "cancel"},
        name="task-cancel",
    ),
    path(
        "projects/<uuid:project_id>/tasks/<int:task_id>/retry",
        task_views.task_action,
        {"action": "retry"},
        name="task-retry",
    ),
    path("skills/", task_views.skills_page, name="skills"),
    path("skills/<uuid:skill_id>", task_views.skill_toggle, name="skill-toggle"),
    path("projects/<uuid:project_id>/start", project_views.project_action, {"action": "start"}, name="start"),
    path("projects/<uuid:project_id>/stop", project_views.project_action, {"action": "stop"}, name="stop"),
    path("projects/<uuid:project_id>/retry", project_views.project_action, {"action": "retry"}, name="retry"),
    path("projects/<uuid:project_id>/delete", project_views.project_delete, name="delete"),
    path("projects/<uuid:project_id>/keep-running", project_views.keep_running, name="keep-running"),
    path("projects/<uuid:project_id>/idle-stop", project_views.idle_stop_save, name="idle-stop"),
    path("projects/<uuid:project_id>/resize", project_views.sandbox_resize, name="resize"),
    path("projects/<uuid:project_id>/env", project_views.env_save, name="env-save"),
    path("projects/<uuid:project_id>/env/batch", project_views.env_batch, name="env-batch"),
    path("projects/<uuid:project_id>/env/<str:key>/delete", project_views.env_delete, name="env-delete"),
    path("projects/<uuid:project_id>/env/<str:key>/reveal", project_views.env_reveal, name="env-reveal"),
    path("projects/<uuid:project_id>/terminal", project_views.terminal_reveal, name="terminal"),
    path("projects/<uuid:project_id>/terminal/open", project_views.terminal_open, name="terminal-open"),
    path("projects/<uuid:project_id>/open/<str:target>", project_views.open_target, name="open"),
    path("projects/<uuid:project_id>/filebrowser", project_views.filebrowser_reveal, name="filebrowser"),
    path("projects/<uuid:project_id>/databases", project_views.database_add, name="database-add"),
    path(
        "projects/<uuid:project_id>/databases/<uuid:database_id>/delete",
        project_views.database_remove,
        name="database-remove",
    ),
    path(
        "projects/<uuid:project_id>/databases/<uuid:database_id>/connection",
        project_views.database_connection,
        name="database-connection",
    ),
]

# Swagger UI is served from our own static files (drf-spectacular-sidecar), so the docs render without
# internet; its script is served apart from the page (no inline script) and its one inline style carries
# the CSP nonce (templates/drf_spectacular/swagger_ui.html).
api_docs = csp_update({"style-src": [NONCE]})(SpectacularSwaggerSplitView.as_view(url_name="schema"))

# Sign in with GitHub: only allauth's OAuth redirect and callback (404 unless GITHUB_CLIENT_ID is set), and
# the names allauth reverses, pointed at Tenter's pages. allauth's account views (password login, sign-up,
# e-mail, password reset) are never routed: Tenter's login page and its attempt limits stay.
github_signin_urls = [
    path("github/login/", github_signin.oauth2_login, name="github_login"),
    path("github/login/callback/", github_signin.oauth2_callback, name="github_callback"),
    path(
        "github/cancelled/",
        user_views.github_problem,
        {"problem": "cancelled"},
        name="socialaccount_login_cancelled",
    ),
    path("github/signup/", user_views.github_problem, {"problem": "signup"}, name="socialaccount_signup"),
    path("github/inactive/", user_views.github_problem, {"problem": "inactive"}, name="account_inactive"),
    path("login/", RedirectView.as_view(pattern_name="dashboard:login"), name="account_login"),
    path(
        "connections/",
        RedirectView.as_view(pattern_name="dashboard:settings"),
        name="socialaccount_connections",
    ),
]

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("api/v1/", include((api_v1, "api"), namespace="api")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", api_docs, name="api-docs"),
    path("admin/", admin.site.urls),
    path("github/connect", github_views.connect, name="github-connect"),
    path("github/callback", github_views.callback, name="github-callback"),
    path("github/webhook", github_views.webhook, name="github-webhook"),
    path("accounts/", include(github_signin_urls)),
    path("", include((dashboard, "dashboard"), namespace="dashboard")),
]

handler400 = "config.views.bad_request"
handler404 = "config.views.page_not_found"
handler500 = "config.views.server_error"
