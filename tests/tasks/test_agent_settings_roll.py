"""Changing the AI agent settings rolls the user's running sandboxes, as an env change does."""

import pytest
from django.urls import reverse

from sandboxes.models import ResourceEvent, Sandbox
from tests.factories import ProjectFactory, SandboxFactory

pytestmark = pytest.mark.django_db


def test_agent_settings_change_rolls_running_sandboxes_only(api, user, other_user):
    running = SandboxFactory(project=ProjectFactory(owner=user), status="RUNNING")
    stopped = SandboxFactory(project=ProjectFactory(owner=user), status="STOPPED")
    others = SandboxFactory(project=ProjectFactory(owner=other_user), status="RUNNING")
    response = api.put("/api/v1/me/agent", {"model": "claude-x"}, format="json")
    assert response.status_code == 200, response.json()
    running.refresh_from_db()
    stopped.refresh_from_db()
    others.refresh_from_db()
    assert running.status == "UPDATING"
    assert running.status_reason == "AI agent settings changed."
    assert stopped.status == "STOPPED" and stopped.generation == 2  # picks it up when it starts
    assert others.status == "RUNNING" and others.generation == 1
    assert ResourceEvent.objects.filter(resource_id=running.pk, to_status="UPDATING").exists()


def test_the_dashboard_form_rolls_them_too(client, user):
    user.save()  # the factory sets the password without saving it; the session hash must match
    client.force_login(user)
    running = SandboxFactory(project=ProjectFactory(owner=user), status="RUNNING")
    response = client.post(reverse("dashboard:agent-save"), {"model": "m2", "api_key": "k" * 20})
    assert response.status_code == 302, response.content.decode()[-3000:]
    assert response["Location"].endswith(reverse("dashboard:settings")), response["Location"]
    assert Sandbox.objects.get(pk=running.pk).status == "UPDATING"
