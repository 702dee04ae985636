"""Status changes write the event and the project status in the same transaction."""

import uuid

import pytest

from core.audit import RECONCILER, Actor
from projects.models import Project
from projects.transitions import change_status
from sandboxes.models import ResourceEvent, Sandbox
from tests.factories import DatabaseFactory, ProjectFactory, SandboxFactory

pytestmark = pytest.mark.django_db


def test_a_status_change_appends_an_event_and_reaggregates_the_project():
    project = ProjectFactory(status="CREATING")
    sandbox = SandboxFactory(project=project, status="CREATING")
    DatabaseFactory(project=project, status="RUNNING")
    assert change_status(sandbox, "STARTING", actor=RECONCILER, reason="created", message="objects created")
    project.refresh_from_db()
    assert project.status == "STARTING"
    event = ResourceEvent.objects.get(resource_id=sandbox.pk)
    assert (event.from_status, event.to_status, event.actor, event.message) == (
        "CREATING",
        "STARTING",
        "reconciler",
        "objects created",
    )


def test_error_keeps_the_status_it_failed_in():
    sandbox = SandboxFactory(status="STARTING")
    change_status(sandbox, "ERROR", actor=RECONCILER, reason="deadline", message="not ready after 10 min")
    sandbox.refresh_from_db()
    assert (sandbox.status, sandbox.failed_status, sandbox.last_error) == (
        "ERROR",
        "STARTING",
        "not ready after 10 min",
    )
    assert sandbox.project.__class__.objects.get(pk=sandbox.project_id).status == "ERROR"


def test_a_lost_lease_writes_nothing():
    sandbox = SandboxFactory(status="CREATING", lease_token=uuid.uuid4())
    assert not change_status(sandbox, "STARTING", actor=RECONCILER, lease_token=uuid.uuid4())
    sandbox.refresh_from_db()
    assert sandbox.status == "CREATING"
    assert not ResourceEvent.objects.exists()


def test_a_user_change_invalidates_the_lease_in_flight():
    token = uuid.uuid4()
    sandbox = SandboxFactory(status="CREATING", lease_token=token)
    change_status(sandbox, "TERMINATING", actor=Actor(kind="user"))
    # the worker that still holds the old token cannot overwrite the user's intent
    assert not change_status(
        Sandbox.objects.get(pk=sandbox.pk), "STARTING", actor=RECONCILER, lease_token=token
    )
    assert Sandbox.objects.get(pk=sandbox.pk).status == "TERMINATING"


def test_the_last_resource_terminated_deletes_the_project_but_keeps_the_timeline():
    project = ProjectFactory(status="TERMINATING")
    sandbox = SandboxFactory(project=project, status="TERMINATING")
    database = DatabaseFactory(project=project, status="TERMINATING")
    change_status(database, "TERMINATED", actor=RECONCILER)
    assert Project.objects.filter(pk=project.pk).exists()
    change_status(sandbox, "TERMINATED", actor=RECONCILER)
    assert not Project.objects.filter(pk=project.pk).exists()
    assert not Sandbox.objects.filter(pk=sandbox.pk).exists()
    events = ResourceEvent.objects.filter(resource_id__in=[sandbox.pk, database.pk])
    assert {e.to_status for e in events} == {"TERMINATED"}
    assert all(e.project_id is None and e.project_name == project.name for e in events)
