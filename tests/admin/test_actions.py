"""Admin actions change state only through the services, are audited, and report what they did."""

import uuid
from datetime import timedelta

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django.utils import timezone

from core.audit import RECONCILER, Actor
from core.models import AuditEntry
from projects import operator_services as operator
from projects.models import Environment
from projects.transitions import change_status
from sandboxes.models import Database, ResourceEvent, Sandbox
from tests.factories import DatabaseFactory, KubeconfigFactory, ProjectFactory, SandboxFactory
from userconfig.models import UserConfig

pytestmark = pytest.mark.django_db

SANDBOXES = reverse("admin:sandboxes_sandbox_changelist")
DATABASES = reverse("admin:sandboxes_database_changelist")
PROJECTS = reverse("admin:projects_project_changelist")


def run(client, url, action, rows, **extra):
    """Run an admin action, past its confirmation page (`confirmed`) when it has one."""
    response = client.post(
        url,
        {"action": action, "_selected_action": [str(r.pk) for r in rows], "confirmed": "yes", **extra},
        follow=True,
        REMOTE_ADDR="203.0.113.7",
    )
    assert response.status_code == 200
    return [str(m) for m in get_messages(response.wsgi_request)] or [
        str(m) for m in response.context["messages"]
    ]


def admin_entries(action, user):
    return AuditEntry.objects.filter(action=action, actor_kind="admin", actor=user, ip_address="203.0.113.7")


def test_reconcile_now_makes_transitional_rows_due_and_kicks(
    su_client, superuser, django_capture_on_commit_callbacks
):
    later = timezone.now() + timedelta(hours=1)
    due = [SandboxFactory(status="CREATING", next_attempt_at=later) for _ in range(3)]
    stable = SandboxFactory(status="RUNNING")
    with django_capture_on_commit_callbacks() as kicks:
        messages = run(su_client, SANDBOXES, "reconcile_now", [*due, stable])
    assert messages == ["3 sandboxes queued for reconcile; 1 skipped (not transitional)."]
    for row in due:
        row.refresh_from_db()
        assert row.next_attempt_at <= timezone.now()
        assert row.status == "CREATING"
    assert len(kicks) == 3
    assert admin_entries("admin.reconcile_now", superuser).count() == 3


def test_release_lease_clears_it_and_skips_unleased_rows(su_client, superuser):
    leased = SandboxFactory(
        status="STARTING", locked_until=timezone.now() + timedelta(minutes=1), lease_token=uuid.uuid4()
    )
    free = SandboxFactory(status="STARTING")
    messages = run(su_client, SANDBOXES, "release_lease", [leased, free])
    assert messages[0].startswith("1 sandbox released; 1 skipped (no lease)")
    assert "held by a live lease" in messages[0]
    leased.refresh_from_db()
    assert (leased.locked_until, leased.lease_token, leased.status) == (None, None, "STARTING")
    assert admin_entries("admin.release_lease", superuser).get().target_id == str(leased.pk)


def test_a_released_lease_drops_the_old_workers_result(superuser):
    token = uuid.uuid4()
    row = SandboxFactory(
        status="STARTING", locked_until=timezone.now() + timedelta(minutes=1), lease_token=token
    )
    operator.release_lease(resources=Sandbox.objects.filter(pk=row.pk), actor=Actor(superuser, "admin"))
    assert not change_status(row, "RUNNING", actor=RECONCILER, lease_token=token)
    assert Sandbox.objects.get(pk=row.pk).status == "STARTING"


@pytest.mark.parametrize(
    ("failed_in", "resumes_in"),
    [("CREATING", "CREATING"), ("UPDATING", "UPDATING"), ("STARTING", "STARTING"), ("STOPPING", "STARTING")],
)
def test_retry_resumes_where_it_failed(su_client, superuser, failed_in, resumes_in):
    project = ProjectFactory(status="ERROR")
    row = SandboxFactory(project=project, status=failed_in)
    change_status(row, "ERROR", actor=RECONCILER, reason="deadline", message="too slow")
    other = SandboxFactory(status="RUNNING")
    messages = run(su_client, SANDBOXES, "retry", [row, other])
    assert messages == ["1 sandbox retried; 1 skipped (not in ERROR)."]
    row.refresh_from_db()
    assert (row.status, row.failed_status) == (resumes_in, "")
    project.refresh_from_db()
    assert project.status == resumes_in
    event = ResourceEvent.objects.filter(resource_id=row.pk).first()
    assert (event.from_status, event.to_status, event.actor, event.actor_user) == (
        "ERROR",
        resumes_in,
        "admin",
        superuser,
    )
    entry = admin_entries("admin.retry", superuser).get()
    assert entry.details == {"from": "ERROR", "to": resumes_in}
    # the transition itself is in the audit trail too (from change_status)
    assert admin_entries(f"status.{resumes_in.lower()}", superuser).exists()


def test_stop_and_delete_for_superusers(su_client, superuser, django_capture_on_commit_callbacks):
    running, starting, stopped = (SandboxFactory(status=s) for s in ("RUNNING", "STARTING", "STOPPED"))
    with django_capture_on_commit_callbacks() as kicks:
        messages = run(su_client, SANDBOXES, "stop", [running, starting, stopped])
    assert messages == ["2 sandboxes stopping; 1 skipped (STOPPED cannot be stopped)."]
    assert set(Sandbox.objects.filter(pk__in=[running.pk, starting.pk]).values_list("status", flat=True)) == {
        "STOPPING"
    }
    assert len(kicks) == 2
    assert admin_entries("admin.stop", superuser).count() == 2

    messages = run(su_client, SANDBOXES, "delete", [running, stopped])
    assert messages == ["2 sandboxes marked for deletion."]
    assert set(Sandbox.objects.filter(pk__in=[running.pk, stopped.pk]).values_list("status", flat=True)) == {
        "TERMINATING"
    }
    messages = run(su_client, SANDBOXES, "delete", [running])
    assert messages == ["0 sandboxes marked for deletion; 1 skipped (already being deleted)."]
    assert admin_entries("admin.delete", superuser).count() == 2


@pytest.mark.parametrize(
    ("url", "action"), [(SANDBOXES, "stop"), (SANDBOXES, "delete"), (PROJECTS, "delete")]
)
def test_destructive_actions_show_what_will_happen_first(su_client, url, action):
    sandbox = SandboxFactory(status="RUNNING")
    row = sandbox.project if url == PROJECTS else sandbox
    response = su_client.post(url, {"action": action, "_selected_action": [str(row.pk)]})
    assert response.status_code == 200
    page = response.content.decode()
    assert "This is what will happen" in page
    assert str(row) in page
    assert 'name="confirmed" value="yes"' in page
    assert Sandbox.objects.get(pk=sandbox.pk).status == "RUNNING"  # nothing done until confirmed


def test_deleting_a_database_removes_database_url(su_client, superuser):
    project = ProjectFactory(status="RUNNING")
    SandboxFactory(project=project, status="RUNNING")
    database = DatabaseFactory(project=project, status="RUNNING", password="pw")
    Environment.objects.create(
        project=project, key="DATABASE_URL", value="postgres://x", is_secret=True, is_system=True
    )
    run(su_client, DATABASES, "delete", [database])
    assert Database.objects.get(pk=database.pk).status == "TERMINATING"
    assert not Environment.objects.filter(project=project, key="DATABASE_URL").exists()
    assert project.sandboxes.get().status == "UPDATING"  # the sandbox rolls to drop the variable
    assert admin_entries("admin.delete", superuser).get().target_type == "database"


def test_recheck_kubeconfig_resets_the_check_and_kicks(
    su_client, superuser, django_capture_on_commit_callbacks
):
    kubeconfig = KubeconfigFactory(check_status="FAILED", check_message="forbidden")
    row = SandboxFactory(project=ProjectFactory(owner=kubeconfig.user))
    orphan = SandboxFactory()  # its owner has no kubeconfig
    with django_capture_on_commit_callbacks() as kicks:
        messages = run(su_client, SANDBOXES, "recheck_kubeconfig", [row, orphan])
    assert messages == ["1 owner queued for a kubeconfig re-check; 1 skipped (no kubeconfig)."]
    kubeconfig.refresh_from_db()
    assert (kubeconfig.check_status, kubeconfig.check_message) == ("PENDING", "")
    assert len(kicks) == 1
    entry = admin_entries("kubeconfig.recheck", superuser).get()
    assert entry.details == {"previous_status": "FAILED"}


def test_recheck_from_the_userconfig_and_user_admins(su_client, superuser):
    kubeconfig = KubeconfigFactory(check_status="UNREACHABLE")
    run(su_client, reverse("admin:userconfig_userconfig_changelist"), "recheck_kubeconfig", [kubeconfig])
    assert UserConfig.objects.get(pk=kubeconfig.pk).check_status == "PENDING"
    UserConfig.objects.filter(pk=kubeconfig.pk).update(check_status="FAILED")
    run(su_client, reverse("admin:userconfig_user_changelist"), "recheck_kubeconfig", [kubeconfig.user])
    assert UserConfig.objects.get(pk=kubeconfig.pk).check_status == "PENDING"
    assert admin_entries("kubeconfig.recheck", superuser).count() == 2


def test_revoke_api_tokens(su_client, superuser):
    from core.audit import SYSTEM
    from userconfig.models import ApiToken
    from userconfig.services import api_token_create

    kubeconfig = KubeconfigFactory()
    api_token_create(user=kubeconfig.user, name="a", actor=SYSTEM)
    api_token_create(user=kubeconfig.user, name="b", actor=SYSTEM)
    messages = run(
        su_client, reverse("admin:userconfig_user_changelist"), "revoke_api_tokens", [kubeconfig.user]
    )
    assert messages == ["1 user had their API tokens revoked."]
    assert not ApiToken.objects.filter(revoked_at__isnull=True).exists()
    assert admin_entries("admin.revoke_api_token", superuser).exists()


def test_project_actions_go_through_the_project_services(su_client, superuser):
    project = ProjectFactory(status="ERROR")
    sandbox = SandboxFactory(project=project, status="STARTING")
    change_status(sandbox, "ERROR", actor=RECONCILER, message="boom")
    healthy = ProjectFactory(status="RUNNING")
    SandboxFactory(project=healthy, status="RUNNING")
    messages = run(su_client, PROJECTS, "retry", [project, healthy])
    assert messages == ["1 project retried; 1 skipped (Nothing to retry: no resource is in ERROR)."]
    assert Sandbox.objects.get(pk=sandbox.pk).status == "STARTING"
    assert admin_entries("project.retry", superuser).get().target_id == str(project.pk)

    run(su_client, PROJECTS, "stop", [healthy])
    assert healthy.sandboxes.get().status == "STOPPING"
    run(su_client, PROJECTS, "delete", [healthy])
    assert healthy.sandboxes.get().status == "TERMINATING"
    assert admin_entries("project.delete", superuser).exists()

    later = timezone.now() + timedelta(hours=1)
    Sandbox.objects.filter(pk=sandbox.pk).update(next_attempt_at=later)
    messages = run(su_client, PROJECTS, "reconcile_now", [project])
    assert messages == ["1 resource queued for reconcile."]
    assert Sandbox.objects.get(pk=sandbox.pk).next_attempt_at < later


def test_destructive_actions_are_refused_to_non_superuser_staff(operator_client, operator_staff):
    running = SandboxFactory(status="RUNNING")
    project = ProjectFactory(status="RUNNING")
    SandboxFactory(project=project, status="RUNNING")
    offered = operator_client.get(SANDBOXES).context["action_form"].fields["action"].choices
    names = {name for name, _ in offered}
    assert {"reconcile_now", "release_lease", "retry", "recheck_kubeconfig"} <= names
    assert not names & {"stop", "delete", "delete_selected"}
    for url, action, row in [
        (SANDBOXES, "stop", running),
        (SANDBOXES, "delete", running),
        (PROJECTS, "stop", project),
        (PROJECTS, "delete", project),
    ]:
        operator_client.post(url, {"action": action, "_selected_action": [str(row.pk)]})
    assert Sandbox.objects.get(pk=running.pk).status == "RUNNING"
    assert project.sandboxes.get().status == "RUNNING"
    assert not AuditEntry.objects.filter(actor=operator_staff).exists()
    # the non-destructive ones work for them
    creating = SandboxFactory(status="CREATING")
    messages = run(operator_client, SANDBOXES, "reconcile_now", [creating])
    assert messages == ["No action selected."] * 4 + ["1 sandbox queued for reconcile."]  # 4 refusals first
    assert AuditEntry.objects.filter(actor=operator_staff, action="admin.reconcile_now").count() == 1


def test_view_only_staff_cannot_run_any_action(viewer_client, viewer):
    row = SandboxFactory(status="ERROR", failed_status="STARTING")
    response = viewer_client.get(SANDBOXES)
    assert response.context["action_form"] is None or not [
        c for c, _ in response.context["action_form"].fields["action"].choices if c
    ]
    viewer_client.post(SANDBOXES, {"action": "retry", "_selected_action": [str(row.pk)]})
    assert Sandbox.objects.get(pk=row.pk).status == "ERROR"


def test_reconciler_transitions_land_in_the_audit_trail():
    row = SandboxFactory(status="CREATING")
    change_status(row, "STARTING", actor=RECONCILER, reason="created", message="objects created")
    entry = AuditEntry.objects.get(action="status.starting")
    assert (entry.actor_kind, entry.target_type, entry.target_id) == ("reconciler", "sandbox", str(row.pk))
    assert entry.details == {"from_status": "CREATING", "reason": "created"}


def test_bulk_actions_on_hundreds_of_rows(superuser, django_assert_max_num_queries):
    actor = Actor(superuser, "admin", "198.51.100.1")
    projects = [ProjectFactory(status="CREATING") for _ in range(5)]
    rows = Sandbox.objects.bulk_create(
        SandboxFactory.build(
            project=projects[i % 5], status="CREATING", name=f"bulk-{i:04d}", k8s_name=f"bulk-{i:04d}"
        )
        for i in range(300)
    )
    with django_assert_max_num_queries(8):
        report = operator.reconcile_now(
            resources=Sandbox.objects.filter(pk__in=[r.pk for r in rows]), actor=actor
        )
    assert len(report.done) == 300
    Sandbox.objects.update(locked_until=timezone.now() + timedelta(seconds=30), lease_token=uuid.uuid4())
    with django_assert_max_num_queries(8):
        report = operator.release_lease(resources=Sandbox.objects.all(), actor=actor)
    assert len(report.done) == 300
    assert AuditEntry.objects.filter(action="admin.release_lease").count() == 300
    report = operator.delete(resources=Sandbox.objects.all(), actor=actor)
    assert report.message == "300 sandboxes marked for deletion."
    assert set(Sandbox.objects.values_list("status", flat=True)) == {"TERMINATING"}
