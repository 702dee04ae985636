"""Warm pools without a cluster: quotas, what users and operators see (API, admin, /metrics, Settings),
the management command, and the schedule."""

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import TestCase
from django.urls import reverse
from rest_framework.test import APIClient

from core.audit import SYSTEM, Actor
from core.errors import QuotaExceeded
from projects import pools, services
from projects.models import PoolPolicy, Project, Quota
from sandboxes.models import Sandbox
from tests.factories import KubeconfigFactory, ProjectFactory, SandboxFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def policy():
    return PoolPolicy.objects.create(image=settings.RUNTIME_IMAGE, size="small", target=2)


@pytest.fixture
def owner():
    user = UserFactory()
    KubeconfigFactory(user=user)
    return user


def started(user, policy):
    """The members refill created, as if the reconciler had brought them to RUNNING."""
    pools.refill_user(user=user, policy=policy, actor=SYSTEM)
    Sandbox.objects.filter(project__owner=user, project__pool=policy).update(status="RUNNING")
    Project.all_objects.filter(owner=user, pool=policy).update(status="RUNNING")
    return list(Sandbox.objects.filter(project__owner=user, project__pool=policy))


def create(user, name, size=None):
    # the policy's claim and miss counters are written once the create has committed
    with TestCase.captureOnCommitCallbacks(execute=True):
        return services.project_create(owner=user, name=name, size=size, actor=Actor(user=user))


def test_pool_members_are_not_projects_of_the_user(owner, policy, client):
    started(owner, policy)
    assert Project.all_objects.filter(owner=owner).count() == 2
    assert Project.objects.filter(owner=owner).count() == 0
    api_client = APIClient()
    api_client.force_authenticate(owner)
    assert api_client.get("/api/v1/projects").json()["count"] == 0
    member = Project.all_objects.filter(owner=owner).first()
    assert api_client.get(f"/api/v1/projects/{member.pk}").status_code == 404
    quota = api_client.get("/api/v1/me/quota").json()
    assert quota["projects"]["in_use"] == 0 and quota["running_sandboxes"]["in_use"] == 2


def test_refill_leaves_room_for_a_cold_create_and_binding_counts_only_the_project(owner, policy):
    policy.target = 5
    policy.save()
    Quota.objects.create(user=owner, max_running_sandboxes=3)
    members = started(owner, policy)
    assert len(members) == 2  # 2 members + room for 1 more sandbox = the quota of 3
    other_size = next(s for s in settings.SANDBOX_SIZES if s != "small")
    cold = create(owner, "Cold", size=other_size)  # the pool cannot serve it, and it still fits
    assert cold.sandboxes.get().pool_label == ""
    # 3 of 3 sandboxes in use: a create the pool serves still succeeds (its sandbox is counted already)
    warm = create(owner, "Warm")
    assert warm.sandboxes.get().pk in {m.pk for m in members}
    # and a create the pool cannot serve is refused with the quota's reason
    with pytest.raises(QuotaExceeded):
        create(owner, "Too Many", size=other_size)
    assert pools.refill_user(user=owner, policy=policy, actor=SYSTEM) == 0


def test_a_taken_name_keeps_the_member_in_the_pool(owner, policy):
    started(owner, policy)
    create(owner, "Shop")
    with pytest.raises(Exception, match="already have a project"):
        create(owner, "shop")
    assert Sandbox.objects.filter(project__pool=policy, status="RUNNING", binding=False).count() == 1
    policy.refresh_from_db()
    assert policy.claims == 1


def test_the_schedule_limits_refill_to_its_hours(owner, policy):
    policy.start_hour, policy.end_hour = 8, 18
    policy.save()
    assert pools.refill_all(actor=SYSTEM, hour=7) == 0
    assert pools.refill_all(actor=SYSTEM, hour=8) == 2
    night = PoolPolicy(start_hour=22, end_hour=6)
    assert night.in_schedule(23) and night.in_schedule(2) and not night.in_schedule(12)


def test_refill_all_skips_users_who_opted_out_or_have_no_checked_kubeconfig(owner, policy):
    out = UserFactory(warm_pool=False)
    KubeconfigFactory(user=out)
    unchecked = UserFactory()
    KubeconfigFactory(user=unchecked, check_status="FAILED")
    assert pools.refill_all(actor=SYSTEM) == 2
    assert set(Project.all_objects.values_list("owner", flat=True).distinct()) == {owner.pk}


def test_management_command_sets_a_policy(capsys):
    call_command("warm_pool", "--image", "example/runtime:2", "--size", "small", "--target", "3")
    policy = PoolPolicy.objects.get(image="example/runtime:2")
    assert (policy.size, policy.target, policy.enabled) == ("small", 3, True)
    call_command("warm_pool", "--image", "example/runtime:2", "--size", "small", "--target", "1")
    assert PoolPolicy.objects.get(image="example/runtime:2").target == 1
    with pytest.raises(CommandError, match="Unknown size"):
        call_command("warm_pool", "--image", "example/runtime:2", "--size", "huge", "--target", "1")


def test_admin_shows_policies_with_claims_misses_and_idle_and_pool_sandboxes(owner, policy, admin_client):
    started(owner, policy)
    real = SandboxFactory(project=ProjectFactory(owner=owner, name="Real"), k8s_name="real-abcdefgh")
    PoolPolicy.objects.filter(pk=policy.pk).update(claims=7, misses=3)
    page = admin_client.get(reverse("admin:projects_poolpolicy_changelist")).content.decode()
    assert '<td class="field-idle">2</td>' in page
    assert '<td class="field-claims">7</td>' in page and '<td class="field-misses">3</td>' in page
    assert admin_client.get(reverse("admin:projects_poolpolicy_change", args=[policy.pk])).status_code == 200
    sandboxes = reverse("admin:sandboxes_sandbox_changelist")
    idle_page = admin_client.get(sandboxes + "?pool=idle").content.decode()
    members = Sandbox.objects.filter(project__pool=policy)
    assert all(m.k8s_name in idle_page for m in members) and real.k8s_name not in idle_page
    assert "warm pool" in idle_page
    for member in members:
        assert (
            admin_client.get(reverse("admin:sandboxes_sandbox_change", args=[member.pk])).status_code == 200
        )
    # the project admin lists real projects only
    projects_page = admin_client.get(reverse("admin:projects_project_changelist")).content.decode()
    assert "Real" in projects_page and "~warm" not in projects_page


def test_metrics_show_idle_claims_and_misses(owner, policy, client):
    started(owner, policy)
    create(owner, "Warm")
    PoolPolicy.objects.filter(pk=policy.pk).update(misses=4)
    body = client.get("/metrics").content.decode()
    labels = f'policy="{policy.pk}",image="{policy.image}",size="small"'
    assert f"tenter_pool_idle{{{labels}}} 1" in body
    assert f"tenter_pool_claims_total{{{labels}}} 1" in body
    assert f"tenter_pool_misses_total{{{labels}}} 4" in body


def test_settings_page_opts_out_and_drains_the_pool(owner, policy, client):
    started(owner, policy)
    owner.save()  # the factory sets the password without saving it; the session hash must match
    client.force_login(owner)
    page = client.get(reverse("dashboard:settings")).content.decode()
    assert "Warm sandboxes are <strong>on</strong>" in page
    response = client.post(reverse("dashboard:warm-pool"), {"warm_pool": "off"})
    assert response.status_code == 302
    owner.refresh_from_db()
    assert owner.warm_pool is False
    statuses = set(Sandbox.objects.filter(project__owner=owner).values_list("status", flat=True))
    assert statuses == {"TERMINATING"}
    assert (
        "Warm sandboxes are <strong>off</strong>"
        in client.get(reverse("dashboard:settings")).content.decode()
    )
    # a create no longer takes from the pool (and counts no miss)
    assert create(owner, "Cold").status == "CREATING"
    policy.refresh_from_db()
    assert (policy.claims, policy.misses) == (0, 0)
    client.post(reverse("dashboard:warm-pool"), {"warm_pool": "on"})
    owner.refresh_from_db()
    assert owner.warm_pool is True


def test_idle_stop_leaves_pool_sandboxes_alone(owner, policy, settings):
    settings.IDLE_STOP_MINUTES = 1
    from datetime import timedelta

    from django.utils import timezone

    from projects.selectors import idle_candidates

    members = started(owner, policy)
    real = SandboxFactory(
        project=ProjectFactory(owner=owner, name="Real", status="RUNNING"), status="RUNNING"
    )
    long_ago = timezone.now() - timedelta(hours=1)
    Sandbox.objects.update(status_changed_at=long_ago, last_activity_at=long_ago)
    candidates = idle_candidates()
    assert real.project_id in candidates
    assert not {m.project_id for m in members} & set(candidates)


def test_a_failed_member_is_deleted_and_replaced(owner, policy):
    members = started(owner, policy)
    Sandbox.objects.filter(pk=members[0].pk).update(status="ERROR")
    assert pools.refill_user(user=owner, policy=policy, actor=SYSTEM) == 1
    assert Sandbox.objects.get(pk=members[0].pk).status == "TERMINATING"


def test_a_kubeconfig_for_another_namespace_is_not_refused_for_pool_sandboxes(owner, policy):
    from tests.factories import KUBECONFIG_TEMPLATE

    started(owner, policy)
    real = create(owner, "Lives Here")  # bound to one of the two members
    (idle,) = Sandbox.objects.filter(project__pool=policy)
    own = Sandbox.objects.get(project=real)
    elsewhere = KUBECONFIG_TEMPLATE.format(namespace="ns-elsewhere")
    # a real project still there: refused, and only the user's own resources are listed
    with pytest.raises(Exception, match="delete their projects first") as refused:
        services.kubeconfig_change(user=owner, text=elsewhere, actor=SYSTEM)
    listed = refused.value.details["resources"]
    assert len(listed) == 1 and own.k8s_name in listed[0] and idle.k8s_name not in listed[0]
    # without it, the change goes through and the pool's sandboxes are deleted (the pool refills there)
    services.project_delete(project=real, actor=SYSTEM)
    Sandbox.objects.filter(project=real).delete()
    services.kubeconfig_change(user=owner, text=elsewhere, actor=SYSTEM)
    assert set(Sandbox.objects.filter(project__owner=owner).values_list("status", flat=True)) == {
        "TERMINATING"
    }


def test_the_api_shows_and_switches_warm_sandboxes(owner, policy):
    started(owner, policy)
    api = APIClient()
    api.force_authenticate(owner)
    assert api.get("/api/v1/me/warm-pool").json() == {"enabled": True, "offered": True, "idle": 2}
    bad = api.put("/api/v1/me/warm-pool", {"enabled": "maybe"}, format="json")
    assert bad.status_code == 400 and bad.json()["code"]
    off = api.put("/api/v1/me/warm-pool", {"enabled": False}, format="json")
    assert off.status_code == 200 and off.json() == {"enabled": False, "offered": True, "idle": 0}
    assert set(Sandbox.objects.filter(project__owner=owner).values_list("status", flat=True)) == {
        "TERMINATING"
    }
    assert APIClient().get("/api/v1/me/warm-pool").status_code in (401, 403)
