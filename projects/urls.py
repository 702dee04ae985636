"""Dashboard routes (the REST API lives under /api/v1/ in config/urls.py)."""

from django.urls import path

from config import views as site_views
from projects import views
from userconfig import views as settings_views

app_name = "projects"

urlpatterns = [
    # Sign in / out / up
    path("login/", site_views.LoginView.as_view(), name="login"),
    path("logout/", site_views.LogoutView.as_view(), name="logout"),
    path("signup/", site_views.signup, name="signup"),
    # Settings
    path("settings/", settings_views.settings_page, name="settings"),
    path("settings/kubeconfig", settings_views.kubeconfig_save, name="kubeconfig-save"),
    path("settings/kubeconfig/delete", settings_views.kubeconfig_remove, name="kubeconfig-remove"),
    path("settings/kubeconfig/state", settings_views.kubeconfig_state, name="kubeconfig-state"),
    path("settings/agent", settings_views.agent_save, name="agent-save"),
    # Projects
    path("", views.project_list, name="list"),
    path("projects/new", views.project_create, name="create"),
    path("projects/status", views.project_status, name="status"),
    path("projects/<uuid:project_id>/", views.project_detail, name="detail"),
    path("projects/<uuid:project_id>/live", views.project_live, name="live"),
    path("projects/<uuid:project_id>/start", views.project_action, {"action": "start"}, name="start"),
    path("projects/<uuid:project_id>/stop", views.project_action, {"action": "stop"}, name="stop"),
    path("projects/<uuid:project_id>/retry", views.project_action, {"action": "retry"}, name="retry"),
    path("projects/<uuid:project_id>/delete", views.project_delete, name="delete"),
    path("projects/<uuid:project_id>/env", views.env_save, name="env-save"),
    path("projects/<uuid:project_id>/env/<str:key>/delete", views.env_delete, name="env-delete"),
    path("projects/<uuid:project_id>/env/<str:key>/reveal", views.env_reveal, name="env-reveal"),
    path("projects/<uuid:project_id>/terminal", views.terminal_reveal, name="terminal"),
    path("projects/<uuid:project_id>/terminal/open", views.terminal_open, name="terminal-open"),
    path("projects/<uuid:project_id>/filebrowser", views.filebrowser_reveal, name="filebrowser"),
    path("projects/<uuid:project_id>/databases", views.database_add, name="database-add"),
    path(
        "projects/<uuid:project_id>/databases/<uuid:database_id>/delete",
        views.database_remove,
        name="database-remove",
    ),
    path(
        "projects/<uuid:project_id>/databases/<uuid:database_id>/connection",
        views.database_connection,
        name="database-connection",
    ),
]
