"""The seam between the domain and the reconciler: kick a reconcile task by name after commit.

Services never import the reconciler, its tasks or the Kubernetes client: a task is sent by its name
(`reconcile.<model>` for a resource row) on the Celery app configured for this process. A kick is an
optimisation: if the broker is down the beat sweep still finds the row, so a failed send is logged and
otherwise ignored.
"""

import logging

from celery import current_app
from django.conf import settings
from django.db import models, transaction

logger = logging.getLogger(__name__)

KUBECONFIG_CHECK = "reconcile.check_kubeconfig"


def task_for(resource: models.Model | type[models.Model]) -> str:
    """The reconcile task of a resource row: `reconcile.sandbox`, `reconcile.database`."""
    return f"reconcile.{resource._meta.model_name}"


def _send(task_name: str, arg: str, countdown: float | None = None) -> None:
    try:
        current_app.send_task(task_name, args=[arg], retry=False, countdown=countdown)
    except Exception as exc:  # the sweep is the guarantee; never fail a committed request
        logger.warning("could not enqueue %s(%s): %s", task_name, arg, exc.__class__.__name__)


def kick(resource: models.Model) -> None:
    """Ask the reconciler to look at this resource row once the current transaction commits."""
    if not settings.RECONCILE_KICK_ON_COMMIT:
        return
    task_name, pk = task_for(resource), str(resource.pk)
    transaction.on_commit(lambda: _send(task_name, pk))


def kick_kubeconfig_check(user_id: object) -> None:
    # Always sent, even with kicks off: the check is not swept as often as resources are.
    transaction.on_commit(lambda: _send(KUBECONFIG_CHECK, str(user_id)))


def send_later(task_name: str, arg: str, delay: float) -> None:
    """Used by the reconciler itself (outside transactions) to come back to a row soon."""
    if settings.RECONCILE_KICK_ON_COMMIT:
        _send(task_name, arg, countdown=delay if delay > 0 else None)
