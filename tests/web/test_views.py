"""Dashboard views: permissions, forms and their errors, reveals, and query-count bounds."""

import uuid

import pytest
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from core.audit import SYSTEM
from core.models import AuditEntry
from projects import services
from projects.models import Environment, Project, Quota
from sandboxes.models import Database, ResourceEvent, Sandbox
from tests.factories import KubeconfigFactory, UserFactory
from userconfig.models import ConfigKey, UserConfig

pytestmark = pytest.mark.django_db

GOOD_KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://k8s.example.test:6443
contexts:
- name: c
  context: {cluster: c, user: u, namespace: ns-web}
current-context: c
users:
- name: u
  user: {token: abc}
"""


def login(user) -> Client:
    user.save()  # the factory sets the password without saving it; the session hash must match
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def owner(db):
    user = UserFactory()
    KubeconfigFactory(user=user)
    return user


@pytest.fixture
def client(owner):
    return login(owner)


@pytest.fixture
def project(owner):
    return services.project_create(owner=owner, name="Web Shop", actor=SYSTEM)


def set_status(project: Project, status: str) -> None:
    Sandbox.objects.filter(project=project).update(status=status)
    Database.objects.filter(project=project).update(status=status)
    Project.objects.filter(pk=project.pk).update(status=status)


def add_database(project: Project, status: str = "RUNNING") -> Database:
    sandbox = project.sandboxes.first()
    return Database.objects.create(
        project=project,
        name=f"db-{uuid.uuid4().hex[:8]}",
        k8s_namespace=sandbox.k8s_namespace,
        k8s_name=f"db-{uuid.uuid4().hex[:8]}",
        api_version="apps.kubeblocks.io/v1",
        status=status,
        host="db.ns.svc",
        port=5432,
        username="postgres",
        password="p@ss w0rd-secret",
        cpu_request="1",
        cpu_limit="1",
        memory_request="1Mi",
        memory_limit="1Mi",
        storage_size="1Gi",
    )


def project_urls(project: Project, database: Database | None = None) -> list[tuple[str, str]]:
    pk = project.pk
    urls = [
        ("get", reverse("dashboard:detail", args=[pk])),
        ("get", reverse("dashboard:live", args=[pk])),
        ("get", reverse("dashboard:terminal-open", args=[pk])),
        ("post", reverse("dashboard:start", args=[pk])),
        ("post", reverse("dashboard:stop", args=[pk])),
        ("post", reverse("dashboard:retry", args=[pk])),
        ("post", reverse("dashboard:delete", args=[pk])),
        ("post", reverse("dashboard:env-save", args=[pk])),
        ("post", reverse("dashboard:env-delete", args=[pk, "FOO"])),
        ("post", reverse("dashboard:env-reveal", args=[pk, "FOO"])),
        ("post", reverse("dashboard:terminal", args=[pk])),
        ("post", reverse("dashboard:filebrowser", args=[pk])),
        ("post", reverse("dashboard:database-add", args=[pk])),
        ("get", reverse("dashboard:open", args=[pk, "terminal"])),
        ("post", reverse("dashboard:open", args=[pk, "files"])),
    ]
    if database is not None:
        urls += [
            ("post", reverse("dashboard:database-remove", args=[pk, database.pk])),
            ("post", reverse("dashboard:database-connection", args=[pk, database.pk])),
        ]
    return urls


# --- Permissions -----------------------------------------------------------------------------------


def test_anonymous_is_sent_to_login_everywhere(project):
    database = add_database(project)
    anon = Client()
    site = [
        ("get", "/"),
        ("get", reverse("dashboard:status")),
        ("post", reverse("dashboard:create")),
        ("get", reverse("dashboard:settings")),
        ("post", reverse("dashboard:kubeconfig-save")),
        ("get", reverse("dashboard:kubeconfig-state")),
        ("post", reverse("dashboard:kubeconfig-remove")),
        ("post", reverse("dashboard:agent-save")),
    ]
    for method, url in site + project_urls(project, database):
        response = getattr(anon, method)(url)
        assert response.status_code == 302, (method, url)
        assert response["Location"].startswith("/login/?next="), (method, url)
    assert Project.objects.get(pk=project.pk).status == "CREATING"
    assert Database.objects.filter(pk=database.pk).exists()


def test_other_users_project_is_404_on_every_page_action_and_reveal(project):
    set_status(project, "RUNNING")
    database = add_database(project)
    Environment.objects.create(project=project, key="FOO", value="bar", is_secret=True)
    stranger = login(UserFactory())
    for method, url in project_urls(project, database):
        response = getattr(stranger, method)(url, {"key": "FOO", "value": "x", "confirm_name": "Web Shop"})
        assert response.status_code == 404, (method, url, response.status_code)
    # Nothing changed and nothing was revealed.
    assert Project.objects.get(pk=project.pk).status == "RUNNING"
    assert Environment.objects.get(project=project, key="FOO").value == "bar"
    assert not AuditEntry.objects.filter(action__startswith="reveal").exists()
    # The status endpoint simply leaves foreign ids out.
    response = stranger.get(reverse("dashboard:status"), {"ids": str(project.pk)})
    assert response.json() == {}


def test_404_page_is_in_the_app_style(client):
    response = client.get(reverse("dashboard:detail", args=[uuid.uuid4()]))
    assert response.status_code == 404
    html = response.content.decode()
    assert "find that page" in html
    assert "/static/css/app.css" in html


def test_500_page_renders_without_context():
    from config.views import server_error

    response = server_error(RequestFactory().get("/"))
    assert response.status_code == 500
    assert b"Something went wrong" in response.content


# --- Sign in, sign out, sign up --------------------------------------------------------------------


def test_login_and_logout(owner):
    owner.save()
    client = Client()
    page = client.get("/login/")
    assert page.status_code == 200
    assert b"csrfmiddlewaretoken" in page.content
    assert b"Create an account" not in page.content  # sign-up is off by default
    bad = client.post("/login/", {"username": owner.username, "password": "wrong"})
    assert bad.status_code == 200
    assert b"Please enter a correct username and password" in bad.content
    good = client.post("/login/", {"username": owner.username, "password": "correct-horse-battery"})
    assert good.status_code == 302 and good["Location"] == "/"
    assert client.get("/").status_code == 200
    out = client.post("/logout/")
    assert out.status_code == 302
    assert client.get("/").status_code == 302


def test_signup_is_behind_the_setting(settings):
    settings.SIGNUP_ENABLED = False
    assert Client().get("/signup/").status_code == 404
    settings.SIGNUP_ENABLED = True
    client = Client()
    assert b"Create an account" in client.get("/login/").content
    weak = client.post("/signup/", {"username": "ann", "password1": "password", "password2": "password"})
    assert weak.status_code == 400
    ok = client.post(
        "/signup/", {"username": "ann", "password1": "tall-giraffe-42", "password2": "tall-giraffe-42"}
    )
    assert ok.status_code == 302 and ok["Location"] == reverse("dashboard:settings")
    assert client.get("/").status_code == 200


def test_csrf_is_enforced_on_forms(owner):
    owner.save()
    client = Client(enforce_csrf_checks=True)
    client.force_login(owner)
    response = client.post(reverse("dashboard:create"), {"name": "No Token"})
    assert response.status_code == 403
    assert not Project.objects.filter(name="No Token").exists()
    # With the token from the page, the same form works.
    page = client.get("/")
    token = page.context["csrf_token"]
    response = client.post(
        reverse("dashboard:create"), {"name": "With Token", "csrfmiddlewaretoken": str(token)}
    )
    assert response.status_code == 302
    assert Project.objects.filter(name="With Token").exists()


# --- Projects list and create ----------------------------------------------------------------------


def test_empty_state_explains_the_first_steps():
    client = login(UserFactory())
    html = client.get("/").content.decode()
    assert "Launch your first sandbox" in html
    assert "Upload a kubeconfig" in html
    assert 'id="create-dialog"' in html


def test_create_project_form_and_json(client, owner):
    response = client.post(reverse("dashboard:create"), {"name": "Blog", "description": "my blog"})
    assert response.status_code == 302
    assert Project.objects.get(owner=owner, name="Blog").status == "CREATING"
    response = client.post(reverse("dashboard:create"), {"name": "Api"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 201
    body = response.json()
    assert "data-project" in body["card"] and "Creating" in body["card"]
    assert body["url"] == reverse("dashboard:detail", args=[body["id"]])


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "Project name cannot be empty."),
        ("1st project", "Project name must start with a letter."),
        ("bad/name", "Project name can only contain letters, digits, spaces and hyphens."),
        ("x" * 64, "Project name can be at most 63 characters."),
    ],
)
def test_bad_project_name_shows_the_service_message(client, owner, name, message):
    response = client.post(reverse("dashboard:create"), {"name": name})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert "data-open-on-load" in response.content.decode()  # the dialog reopens with the error
    json = client.post(reverse("dashboard:create"), {"name": name}, HTTP_ACCEPT="application/json")
    assert json.status_code == 400
    assert json.json()["errors"]["name"] == [message]
    assert not Project.objects.filter(owner=owner).exists()


def test_duplicate_name_and_missing_kubeconfig(client, project):
    response = client.post(reverse("dashboard:create"), {"name": "Web Shop"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    assert response.json()["errors"]["name"] == ["You already have a project named 'Web Shop'."]
    newcomer = login(UserFactory())
    response = newcomer.post(reverse("dashboard:create"), {"name": "First"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 400
    assert "Upload a kubeconfig" in response.json()["errors"]["__all__"][0]
    assert Project.objects.count() == 1


def test_list_filters_searches_and_paginates(client, owner):
    Quota.objects.create(user=owner, max_projects=100, max_running_sandboxes=100)  # past the defaults
    for i in range(55):
        services.project_create(owner=owner, name=f"App {i}", actor=SYSTEM)
    services.project_create(owner=owner, name="Zebra", actor=SYSTEM)
    set_status(Project.objects.get(name="App 3"), "RUNNING")
    page = client.get("/")
    assert len(page.context["projects"]) == 50
    assert "Page 1 of 2" in page.content.decode()
    running = client.get("/", {"status": "RUNNING"})
    assert [p.name for p in running.context["projects"]] == ["App 3"]
    found = client.get("/", {"q": "zeb"})
    assert [p.name for p in found.context["projects"]] == ["Zebra"]
    none = client.get("/", {"q": "nothing-like-this"})
    assert "No projects match" in none.content.decode()


def test_status_endpoint_shape(client, project):
    database = add_database(project, status="CREATING")
    response = client.get(reverse("dashboard:status"), {"ids": f"{project.pk},not-a-uuid,{uuid.uuid4()}"})
    assert response.status_code == 200
    body = response.json()
    assert list(body) == [str(project.pk)]
    item = body[str(project.pk)]
    assert item["status"] == "CREATING"
    assert item["transitional"] is True
    assert [s["status"] for s in item["sandboxes"]] == ["CREATING"]
    assert [d["id"] for d in item["databases"]] == [str(database.pk)]
    assert "delete" in item["allowed_actions"]


# --- Project page ----------------------------------------------------------------------------------


def test_project_page_shows_status_links_and_no_secrets(client, project):
    Environment.objects.create(project=project, key="STRIPE_KEY", value="sk_live_hidden", is_secret=True)
    Environment.objects.create(project=project, key="MODE", value="production")
    html = client.get(reverse("dashboard:detail", args=[project.pk])).content.decode()
    token = Environment.objects.get(project=project, key="TTYD_ACCESS_TOKEN").value
    fb_password = Environment.objects.get(project=project, key="FILE_BROWSER_PASSWORD").value
    assert "Creating your sandbox" in html
    assert "production" in html
    for secret in ("sk_live_hidden", token, fb_password, "authorization="):
        assert secret not in html
    assert "Saving a change restarts" not in html  # nothing is running yet


def test_error_shows_reason_and_retry(client, project):
    Sandbox.objects.filter(project=project).update(
        status="ERROR", failed_status="CREATING", last_error="Forbidden: cannot create statefulsets"
    )
    Project.objects.filter(pk=project.pk).update(status="ERROR")
    html = client.get(reverse("dashboard:detail", args=[project.pk])).content.decode()
    assert "Forbidden: cannot create statefulsets" in html
    assert 'data-action="retry"' in html
    response = client.post(reverse("dashboard:retry", args=[project.pk]), follow=True)
    assert "Retrying Web Shop" in response.content.decode()
    assert Sandbox.objects.get(project=project).status == "CREATING"


def test_start_stop_buttons_follow_allowed_actions(client, project):
    set_status(project, "RUNNING")
    html = client.get(reverse("dashboard:detail", args=[project.pk])).content.decode()
    assert 'data-action="start" disabled' in html
    assert 'data-action="stop" >' in html or 'data-action="stop">' in html
    refused = client.post(reverse("dashboard:start", args=[project.pk]), follow=True)
    assert "Cannot start a project that is RUNNING." in refused.content.decode()
    client.post(reverse("dashboard:stop", args=[project.pk]))
    assert Sandbox.objects.get(project=project).status == "STOPPING"
    set_status(project, "STOPPED")
    client.post(reverse("dashboard:start", args=[project.pk]))
    assert Sandbox.objects.get(project=project).status == "STARTING"


def test_delete_needs_the_exact_name(client, project):
    response = client.post(
        reverse("dashboard:delete", args=[project.pk]), {"confirm_name": "web shop"}, follow=True
    )
    assert "Nothing was deleted" in response.content.decode()
    assert Project.objects.get(pk=project.pk).status == "CREATING"
    response = client.post(reverse("dashboard:delete", args=[project.pk]), {"confirm_name": "Web Shop"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert Project.objects.get(pk=project.pk).status == "TERMINATING"


def test_live_endpoint_renders_regions_and_reports_deletion(client, project):
    body = client.get(reverse("dashboard:live", args=[project.pk])).json()
    assert body["status"] == "CREATING" and body["transitional"] is True
    assert set(body["html"]) == {"header", "waiting", "resources", "timeline", "envhint"}
    assert "Sandbox requested." in body["html"]["timeline"]
    Project.objects.filter(pk=project.pk).delete()
    gone = client.get(reverse("dashboard:live", args=[project.pk]))
    assert gone.status_code == 404 and gone.json()["gone"] is True


# --- Environment -----------------------------------------------------------------------------------


def test_env_add_edit_delete(client, project):
    url = reverse("dashboard:env-save", args=[project.pk])
    assert client.post(url, {"key": "API_URL", "value": "https://x"}).status_code == 302
    assert client.post(url, {"key": "TOKEN", "value": "s3cr3t", "is_secret": "on"}).status_code == 302
    assert Environment.objects.get(project=project, key="TOKEN").is_secret
    # Replacing a value asks first: nothing changes until the user confirms.
    asked = client.post(url, {"key": "API_URL", "value": "https://y"})
    assert asked.status_code == 409 and "API_URL is already set." in asked.content.decode()
    assert Environment.objects.get(project=project, key="API_URL").value == "https://x"
    client.post(url, {"key": "API_URL", "value": "https://y", "overwrite": "on"})
    assert Environment.objects.get(project=project, key="API_URL").value == "https://y"
    html = client.get(reverse("dashboard:detail", args=[project.pk])).content.decode()
    assert "https://y" in html and "s3cr3t" not in html
    client.post(reverse("dashboard:env-delete", args=[project.pk, "API_URL"]))
    assert not Environment.objects.filter(project=project, key="API_URL").exists()
    refused = client.post(
        reverse("dashboard:env-delete", args=[project.pk, "TTYD_ACCESS_TOKEN"]), follow=True
    )
    assert "managed by Tenter" in refused.content.decode()
    assert Environment.objects.filter(project=project, key="TTYD_ACCESS_TOKEN").exists()


def test_env_change_warns_and_restarts_running_sandbox(client, project):
    set_status(project, "RUNNING")
    html = client.get(reverse("dashboard:detail", args=[project.pk])).content.decode()
    assert "Saving a change restarts the running sandbox" in html
    client.post(reverse("dashboard:env-save", args=[project.pk]), {"key": "A", "value": "1"})
    assert Sandbox.objects.get(project=project).status == "UPDATING"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"key": "1BAD", "value": "x"}, "Key must be a POSIX variable name"),
        ({"key": "BAD-KEY", "value": "x"}, "Key must be a POSIX variable name"),
        ({"key": "BIG", "value": "x" * (32 * 1024 + 1)}, "Value is larger than 32 KiB."),
        ({"key": "TTYD_ACCESS_TOKEN", "value": "x"}, "TTYD_ACCESS_TOKEN is managed by Tenter"),
    ],
)
def test_bad_env_input_shows_the_message_and_stores_nothing(client, project, data, message):
    before = {(e.key, e.value) for e in Environment.objects.filter(project=project)}
    response = client.post(reverse("dashboard:env-save", args=[project.pk]), data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert {(e.key, e.value) for e in Environment.objects.filter(project=project)} == before


# --- Reveals ---------------------------------------------------------------------------------------


def test_env_secret_reveal_is_post_only_and_audited(client, project, owner):
    Environment.objects.create(project=project, key="TOKEN", value="s3cr3t", is_secret=True)
    url = reverse("dashboard:env-reveal", args=[project.pk, "TOKEN"])
    assert client.get(url).status_code == 405
    response = client.post(url)
    assert response.json() == {"key": "TOKEN", "value": "s3cr3t"}
    assert response["Cache-Control"] == "no-store"
    entry = AuditEntry.objects.get(action="reveal.env")
    assert entry.actor == owner and entry.details == {"key": "TOKEN"}
    assert client.post(reverse("dashboard:env-reveal", args=[project.pk, "NOPE"])).status_code == 404


def test_terminal_and_filebrowser_reveals(client, project):
    token = Environment.objects.get(project=project, key="TTYD_ACCESS_TOKEN").value
    response = client.post(reverse("dashboard:terminal", args=[project.pk]))
    assert response.status_code == 200
    url = response.json()["url"]
    assert url.startswith(project.sandboxes.first().ttyd_url + "?authorization=")
    opened = client.get(reverse("dashboard:terminal-open", args=[project.pk]))
    assert opened.status_code == 302 and opened["Location"] == url
    creds = client.post(reverse("dashboard:filebrowser", args=[project.pk])).json()
    assert creds["username"].startswith("fb-") and creds["password"]
    assert token not in str(creds)
    assert AuditEntry.objects.filter(action="reveal.terminal").count() == 2
    assert AuditEntry.objects.filter(action="reveal.filebrowser").count() == 1


def test_database_add_connection_reveal_and_remove(client, project):
    response = client.post(reverse("dashboard:database-add", args=[project.pk]))
    assert response.status_code == 302
    database = Database.objects.get(project=project)
    not_ready = client.post(reverse("dashboard:database-connection", args=[project.pk, database.pk]))
    assert not_ready.status_code == 409
    Database.objects.filter(pk=database.pk).update(
        status="RUNNING", host="pg.ns.svc", port=5432, username="postgres"
    )
    database.refresh_from_db()
    database.password = "p@ss w0rd"
    database.save()
    html = client.get(reverse("dashboard:detail", args=[project.pk])).content.decode()
    assert "pg.ns.svc" in html and "p@ss w0rd" not in html
    body = client.post(reverse("dashboard:database-connection", args=[project.pk, database.pk])).json()
    assert body["password"] == "p@ss w0rd"
    assert body["url"] == "postgresql://postgres:p%40ss%20w0rd@pg.ns.svc:5432/postgres"
    assert AuditEntry.objects.filter(action="reveal.database_connection").count() == 1
    again = client.post(reverse("dashboard:database-add", args=[project.pk]), follow=True)
    assert "already has a database" in again.content.decode()
    client.post(reverse("dashboard:database-remove", args=[project.pk, database.pk]))
    assert Database.objects.get(pk=database.pk).status == "TERMINATING"


# --- Settings --------------------------------------------------------------------------------------


def test_kubeconfig_save_state_and_remove(owner):
    UserConfig.objects.filter(user=owner).delete()
    client = login(owner)
    response = client.post(reverse("dashboard:kubeconfig-save"), {"kubeconfig": GOOD_KUBECONFIG})
    assert response.status_code == 302
    state = client.get(reverse("dashboard:kubeconfig-state")).json()
    assert state["namespace"] == "ns-web" and state["check_status"] == "PENDING"
    assert "token" not in str(state)
    json = client.post(
        reverse("dashboard:kubeconfig-save"), {"kubeconfig": GOOD_KUBECONFIG}, HTTP_ACCEPT="application/json"
    )
    assert json.json()["server_host"] == "k8s.example.test"
    html = client.get(reverse("dashboard:settings")).content.decode()
    assert "ns-web" in html and "token: abc" not in html
    client.post(reverse("dashboard:kubeconfig-remove"))
    assert client.get(reverse("dashboard:kubeconfig-state")).json()["configured"] is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "Paste a kubeconfig or choose a file first."),
        ("clusters: [unclosed", "Unusable kubeconfig: not valid YAML"),
        (GOOD_KUBECONFIG.replace("current-context: c", "current-context: zz"), "Unusable kubeconfig:"),
        (GOOD_KUBECONFIG.replace("ns-web", "Bad_NS"), "Bad_NS"),
    ],
)
def test_bad_kubeconfig_shows_the_message_and_stores_nothing(owner, text, message):
    UserConfig.objects.filter(user=owner).delete()
    client = login(owner)
    response = client.post(reverse("dashboard:kubeconfig-save"), {"kubeconfig": text})
    assert response.status_code == 400
    assert message in response.content.decode()
    json = client.post(
        reverse("dashboard:kubeconfig-save"), {"kubeconfig": text}, HTTP_ACCEPT="application/json"
    )
    assert message in json.json()["errors"]["kubeconfig"][0]
    assert not UserConfig.objects.filter(user=owner, key=ConfigKey.KUBECONFIG).exists()


def test_agent_settings_key_is_write_only(client, owner):
    url = reverse("dashboard:agent-save")
    response = client.post(
        url, {"base_url": "https://llm.example", "model": "m1", "api_key": "sk-ant-secret"}
    )
    assert response.status_code == 302
    html = client.get(reverse("dashboard:settings")).content.decode()
    assert "https://llm.example" in html and "m1" in html
    assert "sk-ant-secret" not in html and "A key is stored." in html
    client.post(url, {"base_url": "https://llm.example", "model": "m2"})  # blank key keeps it
    assert UserConfig.objects.get(user=owner, key=ConfigKey.ANTHROPIC_API_KEY).value == "sk-ant-secret"
    client.post(url, {"model": "m2", "clear_api_key": "on"})
    assert not UserConfig.objects.filter(user=owner, key=ConfigKey.ANTHROPIC_API_KEY).exists()
    bad = client.post(url, {"base_url": "not a url"})
    assert bad.status_code == 400 and "Enter a valid URL." in bad.content.decode()
    assert not UserConfig.objects.filter(user=owner, key=ConfigKey.ANTHROPIC_BASE_URL).exists()


# --- Speed: constant query counts ------------------------------------------------------------------


def bulk_projects(owner, n: int, prefix: str = "bulk") -> list[Project]:
    projects = Project.objects.bulk_create(Project(owner=owner, name=f"{prefix} {i}") for i in range(n))
    Sandbox.objects.bulk_create(
        Sandbox(
            project=p,
            name=f"{prefix}-{i}",
            k8s_namespace="ns-bulk",
            k8s_name=f"{prefix}-{i}",
            image="img",
            cpu_request="1",
            cpu_limit="1",
            memory_request="1Mi",
            memory_limit="1Mi",
            storage_size="1Gi",
        )
        for i, p in enumerate(projects)
    )
    Database.objects.bulk_create(
        Database(
            project=p,
            name=f"{prefix}db-{i}",
            k8s_namespace="ns-bulk",
            k8s_name=f"{prefix}db-{i}",
            api_version="v1",
            cpu_request="1",
            cpu_limit="1",
            memory_request="1Mi",
            memory_limit="1Mi",
            storage_size="1Gi",
        )
        for i, p in enumerate(projects[::3])
    )
    return projects


def count_queries(client: Client, method: str, url: str, **params) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = getattr(client, method)(url, params)
    assert response.status_code == 200, response.status_code
    return len(ctx.captured_queries)


def test_list_page_query_count_is_constant(client, owner):
    bulk_projects(owner, 10)
    small = count_queries(client, "get", "/")
    bulk_projects(owner, 990, prefix="more")
    assert count_queries(client, "get", "/") == small
    assert count_queries(client, "get", "/", page="20") == small
    assert small <= 11  # 1 of them for the operator notices


def test_project_page_query_count_is_constant(client, project, django_assert_max_num_queries):
    url = reverse("dashboard:detail", args=[project.pk])
    small = count_queries(client, "get", url)
    sandbox = project.sandboxes.first()
    ResourceEvent.objects.bulk_create(
        ResourceEvent(project=project, resource_kind="sandbox", resource_id=sandbox.pk, actor="reconciler")
        for _ in range(500)
    )
    Environment.objects.bulk_create(Environment(project=project, key=f"K{i}", value="v") for i in range(100))
    add_database(project)
    assert count_queries(client, "get", url) == small
    # 3 of them for the skills and tasks section, 1 for "does the user have their own DATABASE_URL"
    with django_assert_max_num_queries(12):
        client.get(url)
    with django_assert_max_num_queries(8):
        client.get(reverse("dashboard:live", args=[project.pk]))


def test_status_poll_for_100_projects_takes_two_queries(client, owner, django_assert_max_num_queries):
    projects = bulk_projects(owner, 100)
    ids = ",".join(str(p.pk) for p in projects)
    # Two for the answer, plus the session and the user.
    with django_assert_max_num_queries(4):
        response = client.get(reverse("dashboard:status"), {"ids": ids})
    body = response.json()
    assert len(body) == 100
    assert sum(len(v["databases"]) for v in body.values()) == 34


def test_no_dashboard_request_touches_the_cluster(client, project, monkeypatch):
    """Rule 1: dashboard requests only record intent; any Kubernetes API call here fails the test."""
    from kubernetes.client import ApiClient

    def refuse(*args, **kwargs):
        raise AssertionError("a dashboard request called the Kubernetes API")

    monkeypatch.setattr(ApiClient, "call_api", refuse)
    set_status(project, "RUNNING")
    database = add_database(project)
    Environment.objects.create(project=project, key="FOO", value="bar", is_secret=True)
    pk = project.pk
    calls = [
        ("get", "/", {}),
        ("get", reverse("dashboard:status"), {"ids": str(pk)}),
        ("post", reverse("dashboard:create"), {"name": "Second"}),
        ("get", reverse("dashboard:detail", args=[pk]), {}),
        ("get", reverse("dashboard:live", args=[pk]), {}),
        ("post", reverse("dashboard:env-save", args=[pk]), {"key": "A", "value": "1"}),
        ("post", reverse("dashboard:env-reveal", args=[pk, "FOO"]), {}),
        ("post", reverse("dashboard:env-delete", args=[pk, "A"]), {}),
        ("post", reverse("dashboard:terminal", args=[pk]), {}),
        ("get", reverse("dashboard:terminal-open", args=[pk]), {}),
        ("post", reverse("dashboard:filebrowser", args=[pk]), {}),
        ("post", reverse("dashboard:database-connection", args=[pk, database.pk]), {}),
        ("post", reverse("dashboard:database-remove", args=[pk, database.pk]), {}),
        ("post", reverse("dashboard:stop", args=[pk]), {}),
        ("get", reverse("dashboard:settings"), {}),
        ("post", reverse("dashboard:kubeconfig-save"), {"kubeconfig": GOOD_KUBECONFIG}),
        ("get", reverse("dashboard:kubeconfig-state"), {}),
        ("post", reverse("dashboard:agent-save"), {"model": "m"}),
        ("post", reverse("dashboard:delete", args=[pk]), {"confirm_name": "Web Shop"}),
    ]
    for method, url, data in calls:
        response = getattr(client, method)(url, data)
        assert response.status_code < 500, (url, response.status_code)
