"""A claimed batch is recorded together: the outcomes of many steps cost a constant number of SQL
statements (issue 17), with every row's event, audit entry and project status as when they were written
one by one, and a row whose lease was lost dropped without losing the others. Kicks claim batches and
are coalesced: a burst of creates costs a handful of tasks, not one per sandbox, and every row of it is
picked up with no sweep at all."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from core import kick as kicks
from core.audit import Actor
from core.models import AuditEntry
from projects.models import Project, ProjectStatus
from projects.services import project_create
from projects.transitions import change_status
from reconcile import engine
from reconcile.engine import Outcome
from sandboxes.models import ResourceEvent, ResourceStatus, Sandbox
from tests.factories import SandboxFactory, UserFactory
from tests.reconcile.conftest import wait_for

S = ResourceStatus


def _outcomes(rows: list[Sandbox]) -> list[tuple[Sandbox, Outcome]]:
    """Every kind of result a batch can hold: moves forward, stays (polling and failing), a delete."""
    kinds = [
        Outcome(status=S.STARTING, reason="created", message="Objects created."),
        Outcome(message="Waiting for the pod.", retry_in=1.0),
        Outcome(failed=True, message="transient: the API server did not answer"),
        Outcome(status=S.TERMINATED, reason="deleted", message="All objects deleted."),
    ]
    return [(row, kinds[i % len(kinds)]) for i, row in enumerate(rows)]


def _record_batch(size: int) -> tuple[int, list[Sandbox]]:
    owner = UserFactory()
    for _ in range(size):
        SandboxFactory(project__owner=owner)
    rows = engine.claim(Sandbox, limit=size)
    assert len(rows) == size
    with CaptureQueriesContext(connection) as queries:
        engine.record_all(Sandbox, _outcomes(rows))
    return len(queries), rows


@pytest.mark.django_db(transaction=True)
def test_recording_a_batch_costs_the_same_statements_for_8_rows_as_for_40():
    small, _ = _record_batch(8)
    large, rows = _record_batch(40)
    assert large == small
    assert large <= 20  # BEGIN, locks, one UPDATE, the deletes and their cascades, two INSERTs, COMMIT

    # ... and wrote what row-by-row recording wrote
    moved = [row for row, outcome in _outcomes(rows) if outcome.status == S.STARTING]
    deleted = [row for row, outcome in _outcomes(rows) if outcome.status == S.TERMINATED]
    assert set(Sandbox.objects.filter(status=S.STARTING).values_list("pk", flat=True)) >= {
        r.pk for r in moved
    }
    assert not Sandbox.objects.filter(pk__in=[r.pk for r in deleted]).exists()
    assert not Project.objects.filter(pk__in=[r.project_id for r in deleted]).exists()  # nothing left in them
    for row in moved:
        project = Project.objects.get(pk=row.project_id)
        assert project.status == ProjectStatus.STARTING
        event = ResourceEvent.objects.get(resource_id=row.pk)
        assert (event.from_status, event.to_status, event.reason) == (S.CREATING, S.STARTING, "created")
        assert event.project_name == project.name
        assert AuditEntry.objects.filter(target_id=str(row.pk), action="status.starting").count() == 1
    stays = Sandbox.objects.filter(pk__in=[r.pk for r, o in _outcomes(rows) if o.status is None])
    assert stays.count() == 20
    assert not stays.filter(locked_until__isnull=False).exists()  # every lease released
    assert stays.filter(attempts=1, last_error="transient: the API server did not answer").count() == 10
    assert (
        stays.filter(attempts=0, status_reason="Waiting for the pod.", next_attempt_at__isnull=False).count()
        == 10
    )


@pytest.mark.django_db(transaction=True)
def test_a_row_whose_lease_was_lost_is_dropped_and_the_rest_of_the_batch_is_kept():
    owner = UserFactory()
    for _ in range(4):
        SandboxFactory(project__owner=owner)
    rows = engine.claim(Sandbox, limit=4)
    taken = rows[1]
    # the user stops it while the worker acts: the lease is invalidated
    change_status(taken, S.STOPPING, actor=Actor(user=owner))
    taken.status = S.CREATING  # what the worker still believes
    recorded = {
        row.pk: delay
        for row, delay in engine.record_all(Sandbox, [(r, Outcome(status=S.STARTING)) for r in rows])
    }
    assert recorded[taken.pk] is None
    assert Sandbox.objects.get(pk=taken.pk).status == S.STOPPING  # the user's intent stands
    others = [r.pk for r in rows if r.pk != taken.pk]
    assert Sandbox.objects.filter(pk__in=others, status=S.STARTING).count() == 3
    assert not ResourceEvent.objects.filter(resource_id=taken.pk, to_status=S.STARTING).exists()


@pytest.mark.django_db(transaction=True)
def test_a_kick_claims_its_row_first_and_fills_the_batch_with_whatever_else_is_due():
    owner = UserFactory()
    older = [SandboxFactory(project__owner=owner) for _ in range(3)]
    kicked = SandboxFactory(project__owner=owner)
    rows = engine.claim(Sandbox, prefer=[kicked.pk], limit=10)
    assert rows[0].pk == kicked.pk
    assert {r.pk for r in rows[1:]} == {r.pk for r in older}


def test_a_burst_of_creates_costs_a_few_tasks_and_every_row_is_picked_up_without_any_sweep(
    cluster_user, celery_worker, settings
):
    """No beat here: only the kicks (coalesced, each claiming a batch, a full batch kicking the next) pick
    the burst up. A coalesced kick that claimed only its own row would leave the others CREATING until a
    sweep came."""
    from projects.models import Quota

    settings.RECONCILE_BATCH_SIZE = 10  # several batches, so the chain of kicks is exercised
    Quota.objects.create(user=cluster_user, max_projects=60, max_running_sandboxes=60)
    actor = Actor(user=cluster_user)
    with kicks.stats_delta() as delta:
        with transaction.atomic():
            projects = [project_create(owner=cluster_user, name=f"Burst {i}", actor=actor) for i in range(40)]
        assert kicks.dispatcher.wait_idle(10)
        burst = Sandbox.objects.filter(project__in=projects)
        wait_for(
            lambda: not burst.filter(status=S.CREATING).exists(),
            timeout=60,
            what="every sandbox of the burst picked up (out of CREATING)",
        )
        assert kicks.dispatcher.wait_idle(10)
    assert delta.coalesced > 0  # kicks of the one commit joined the one already waiting
    assert delta.sent < 40  # a task per sandbox would be 40 for the creates alone, plus follow-ups
