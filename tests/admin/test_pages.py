"""Every admin page loads for staff and is refused to everyone else."""

import pytest
from django.contrib import admin
from django.urls import reverse

from tests.admin.conftest import make_user
from tests.admin.world import build_world

pytestmark = pytest.mark.django_db


def admin_pages() -> list[str]:
    """Index, overview, every changelist, and the change and history page of one row per model."""
    pages = [reverse("admin:index"), reverse("admin:overview")]
    for model in admin.site._registry:
        meta = model._meta
        pages.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist"))
        obj = model._default_manager.order_by("pk").first()
        if obj is not None:
            pages.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[obj.pk]))
            pages.append(reverse(f"admin:{meta.app_label}_{meta.model_name}_history", args=[obj.pk]))
    return pages


@pytest.fixture
def world(db):
    return build_world()


def test_every_page_loads_for_a_superuser(world, su_client):
    pages = admin_pages()
    assert len(pages) >= 2 + 8 * 3
    for url in pages:
        response = su_client.get(url)
        assert response.status_code == 200, url


def test_every_page_loads_for_staff_with_view_permissions(world, viewer_client):
    for url in admin_pages():
        if "/auth/group/" in url:
            continue  # no permission on groups given: not part of the operator's view
        response = viewer_client.get(url)
        assert response.status_code == 200, url


@pytest.mark.parametrize("who", ["anonymous", "non-staff"])
def test_every_page_is_refused_to_non_staff(world, client, who):
    if who == "non-staff":
        client.force_login(make_user(is_staff=False))
    for url in admin_pages():
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), url


def test_the_index_links_to_the_overview(world, su_client):
    content = su_client.get(reverse("admin:index")).content.decode()
    assert reverse("admin:overview") in content


def test_resource_detail_shows_the_timeline_and_observed_state(world, su_client):
    sandbox = world["sandbox"]
    response = su_client.get(reverse("admin:sandboxes_sandbox_change", args=[sandbox.pk]))
    content = response.content.decode()
    assert "not ready after 10 min" in content  # the ERROR event's message
    assert "deadline" in content
    assert "STARTING" in content and "ERROR" in content
    assert "ns-alice" in content  # owner's kubeconfig namespace
    # read-only: no form field for any model column, no save button
    assert 'name="status"' not in content
    assert 'name="_save"' not in content


def test_changing_a_row_through_the_form_is_refused(world, su_client):
    sandbox = world["sandbox"]
    url = reverse("admin:sandboxes_sandbox_change", args=[sandbox.pk])
    response = su_client.post(url, {"status": "RUNNING"})
    assert response.status_code == 403
    sandbox.refresh_from_db()
    assert sandbox.status == "ERROR"


def test_changelist_columns_and_filters(world, su_client):
    url = reverse("admin:sandboxes_sandbox_changelist")
    content = su_client.get(url).content.decode().lower()
    for text in ["time in state", "lease", "last error", "kubeconfig", "alice", "stuck project"]:
        assert text in content
    for query, expected in [
        ("in_error=yes", 1),
        ("in_error=no", 0),
        ("past_deadline=yes", 0),
        ("lease_held=yes", 0),
        ("kubeconfig_failing=yes", 0),
        ("kubeconfig_failing=no", 1),
        ("q=alice", 1),
        ("q=Stuck", 1),
        ("q=" + world["sandbox"].k8s_name, 1),
        ("q=nobody", 0),
    ]:
        response = su_client.get(f"{url}?{query}")
        assert response.status_code == 200, query
        assert response.context["cl"].result_count == expected, query


def test_project_detail_masks_secrets_and_lists_resources(world, su_client):
    project = world["project"]
    content = su_client.get(reverse("admin:projects_project_change", args=[project.pk])).content.decode()
    assert world["sandbox"].k8s_name in content
    assert world["database"].k8s_name in content
    assert "STRIPE_KEY" in content and "visible-value" in content
    assert "••••••••" in content
    assert "CLONE_REPOSITORY" in content and "git clone exited with 128" in content


def test_task_detail_shows_payload_result_and_error(world, su_client):
    task = world["task"]
    content = su_client.get(reverse("admin:projects_projecttask_change", args=[task.pk])).content.decode()
    assert "octo/repo" in content
    assert "git clone exited with 128" in content
    assert "github_token" in content  # the key, with its value masked


def test_audit_trail_filters(world, su_client):
    url = reverse("admin:core_auditentry_changelist")
    for query in ["actor_kind=reconciler", "action_group=status.", "target_type=sandbox", "q=alice"]:
        response = su_client.get(f"{url}?{query}")
        assert response.status_code == 200, query
    response = su_client.get(f"{url}?actor_kind=reconciler&action_group=status.")
    assert response.context["cl"].result_count == 1  # the sandbox's STARTING -> ERROR


def test_operators_see_and_override_a_users_idle_stop(su_client, superuser):
    from userconfig.models import User

    user = make_user(username="sleeper")
    User.objects.filter(pk=user.pk).update(idle_stop_minutes=0)
    listing = su_client.get(reverse("admin:userconfig_user_changelist")).content.decode()
    assert "idle stop" in listing.lower() and ">never<" in listing
    url = reverse("admin:userconfig_user_change", args=[user.pk])
    form = su_client.get(url).content.decode()
    assert 'name="idle_stop_minutes"' in form and 'value="0"' in form
    data = {
        "username": "sleeper",
        "password": User.objects.get(pk=user.pk).password,
        "is_active": "on",
        "idle_stop_minutes": "45",
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "initial-date_joined_0": "2026-01-01",
        "initial-date_joined_1": "00:00:00",
        "configs-TOTAL_FORMS": "0",
        "configs-INITIAL_FORMS": "0",
        "configs-MIN_NUM_FORMS": "0",
        "configs-MAX_NUM_FORMS": "0",
    }
    response = su_client.post(url, data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert User.objects.get(pk=user.pk).idle_stop_minutes == 45
