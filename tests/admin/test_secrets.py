"""Staff cannot read secrets through the admin: no page renders a stored plaintext."""

import pytest
from django.contrib import admin
from django.urls import reverse

from sandboxes.models import Sandbox
from tests.admin.world import SECRETS, build_world

pytestmark = pytest.mark.django_db


def every_admin_page() -> list[str]:
    pages = [reverse("admin:index"), reverse("admin:overview")]
    for model in admin.site._registry:
        meta = model._meta
        prefix = f"admin:{meta.app_label}_{meta.model_name}"
        pages.append(reverse(f"{prefix}_changelist"))
        for obj in model._default_manager.all():
            pages.append(reverse(f"{prefix}_change", args=[obj.pk]))
            pages.append(reverse(f"{prefix}_history", args=[obj.pk]))
    return pages


@pytest.mark.parametrize("who", ["superuser", "viewer"])
def test_no_plaintext_secret_appears_in_any_admin_page(request, client, who):
    world = build_world()
    client.force_login(request.getfixturevalue(who))
    pages = every_admin_page()
    assert any(str(world["database"].pk) in p for p in pages)
    assert any(str(world["kubeconfig"].pk) in p and "userconfig/userconfig" in p for p in pages)
    for url in pages:
        response = client.get(url)
        if who == "viewer" and "/auth/group/" in url:
            continue
        assert response.status_code == 200, url
        content = response.content.decode()
        for secret in SECRETS:
            assert secret not in content, f"{secret} leaked on {url}"
        assert world["api_token_secret"] not in content, f"API token leaked on {url}"
        assert world["api_token"].token_hash not in content, f"API token hash shown on {url}"


def test_no_plaintext_after_actions_and_in_their_messages(su_client):
    world = build_world()
    url = reverse("admin:sandboxes_sandbox_changelist")
    for action in ["retry", "recheck_kubeconfig", "release_lease", "reconcile_now"]:
        response = su_client.post(
            url, {"action": action, "_selected_action": [world["sandbox"].pk]}, follow=True
        )
        content = response.content.decode()
        assert not any(secret in content for secret in SECRETS)
    for url in every_admin_page():
        content = su_client.get(url).content.decode()
        assert not any(secret in content for secret in SECRETS), url
    assert Sandbox.objects.get(pk=world["sandbox"].pk).status == "STARTING"


def test_token_admin_is_read_only_and_never_shows_the_hash(su_client):
    from django.apps import apps
    from django.test import RequestFactory

    from userconfig.models import ApiToken

    assert not apps.is_installed("rest_framework.authtoken")
    world = build_world()
    token = world["api_token"]
    model_admin = admin.site._registry[ApiToken]
    assert "token_hash" not in model_admin.get_fields(RequestFactory().get("/"), token)
    for url in [
        reverse("admin:userconfig_apitoken_changelist"),
        reverse("admin:userconfig_apitoken_change", args=[token.pk]),
    ]:
        content = su_client.get(url).content.decode()
        assert token.prefix in content
        assert token.token_hash not in content and world["api_token_secret"] not in content
    assert su_client.get(reverse("admin:userconfig_apitoken_add")).status_code == 403


def test_forms_have_no_secret_fields():
    """No admin form class for these models carries a value/password field at all."""
    from django.test import RequestFactory

    from projects.models import Project
    from sandboxes.models import Database
    from tests.admin.conftest import make_user
    from userconfig.models import UserConfig

    request = RequestFactory().get("/")
    request.user = make_user(is_staff=True, is_superuser=True)
    for model, field in [(Database, "password"), (UserConfig, "value")]:
        form = admin.site._registry[model].get_form(request)
        assert field not in form.base_fields
    for inline in admin.site._registry[Project].get_inline_instances(request):
        formset = inline.get_formset(request)
        assert "value" not in formset.form.base_fields
        assert "password" not in formset.form.base_fields
