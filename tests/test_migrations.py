"""Migrations move models without touching their tables: a database created before a move keeps its
rows, and `migrate` from there to the latest state works (real PostgreSQL, real migrations)."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

PROJECTS_BEFORE = ("projects", "0002_task_sandbox_and_indexes")


def _migrate(targets, state_at):
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state(state_at).apps


@pytest.mark.django_db(transaction=True)
def test_audit_entries_survive_the_move_from_projects_to_core():
    old_apps = _migrate([PROJECTS_BEFORE, ("core", None)], PROJECTS_BEFORE)
    OldEntry = old_apps.get_model("projects", "AuditEntry")
    ContentType = old_apps.get_model("contenttypes", "ContentType")
    ContentType.objects.get_or_create(app_label="projects", model="auditentry")
    # The user as that state knows it (today's model may have columns the old state lacks).
    user = old_apps.get_model("userconfig", "User").objects.create(username="auditor")
    OldEntry.objects.create(actor_id=user.pk, actor_kind="user", action="project.create", target_id="x1")

    latest = MigrationExecutor(connection).loader.graph.leaf_nodes()
    new_apps = _migrate(latest, latest)

    entry = new_apps.get_model("core", "AuditEntry").objects.get()
    assert (entry.action, entry.actor_id, entry.target_id) == ("project.create", user.pk, "x1")
    content_type = new_apps.get_model("contenttypes", "ContentType").objects.get(model="auditentry")
    assert content_type.app_label == "core"  # renamed, so permissions granted on it are kept
