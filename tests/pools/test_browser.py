"""Warm pools in the dashboard (headless Chromium, the live server, a real worker, kubesim --simulate):
a project created while the pool has a sandbox is Running at once, and Settings turns the pool off."""

import re

import pytest
from django.conf import settings
from playwright.sync_api import expect

from core.audit import SYSTEM
from projects import pools, services
from projects.models import PoolPolicy, Project
from sandboxes.models import Sandbox
from tests.conftest import wait_for
from tests.web.test_browser import browser, make_user, page, sign_in  # noqa: F401  (fixtures)
from userconfig.models import CheckStatus, ConfigKey, UserConfig

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_warm_project_and_the_settings_switch(page, live_server, kubesim, kube_namespace, celery_worker):  # noqa: F811
    user = make_user(kubesim.kubeconfig(kube_namespace))
    wait_for(
        lambda: UserConfig.objects.filter(
            user=user, key=ConfigKey.KUBECONFIG, check_status=CheckStatus.OK
        ).exists(),
        what="kubeconfig OK",
    )
    policy = PoolPolicy.objects.create(image=settings.RUNTIME_IMAGE, size="small", target=2)
    pools.refill_user(user=user, policy=policy, actor=SYSTEM)
    wait_for(
        lambda: Sandbox.objects.filter(project__pool=policy, status="RUNNING").count() == 2,
        what="pool RUNNING",
    )
    sign_in(page, live_server, user)
    expect(page.get_by_text("Launch your first sandbox")).to_be_visible()  # the pool is not projects
    project = services.project_create(owner=user, name="Warm Start", actor=SYSTEM)
    assert Sandbox.objects.get(project=project).pool_label == str(policy.pk)  # it took a pool sandbox
    page.goto(f"{live_server.url}/projects/{project.pk}/")
    expect(page.locator("[data-live=header] [data-role=badge]")).to_have_text("Running", timeout=10_000)

    page.goto(f"{live_server.url}/settings/")
    panel = page.locator("#warm-pool")
    expect(panel.locator("[data-role=warm-state]")).to_have_text("Warm sandboxes are on.")
    panel.get_by_role("button", name=re.compile("Turn off")).click()
    expect(page.locator("#warm-pool [data-role=warm-state]")).to_have_text("Warm sandboxes are off.")
    expect(page.get_by_text("your idle warm sandboxes are being deleted")).to_be_visible()
    wait_for(lambda: not Project.all_objects.filter(owner=user, pool__isnull=False).exists(), what="drained")
    assert Project.objects.get(pk=project.pk).status == "RUNNING"  # the bound project is the user's to keep
