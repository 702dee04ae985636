"""The seam between services and the reconciler: kick a reconcile task by name after commit.

Services never import tasks or the Kubernetes client. A kick is an optimisation: if the broker is
down the beat sweep still finds the row, so a failed send is logged and otherwise ignored.
"""

import logging

from django.conf import settings
from django.db import transaction

logger = logging.getLogger(__name__)

SANDBOX = "reconcile.sandbox"
DATABASE = "reconcile.database"
KUBECONFIG_CHECK = "reconcile.check_kubeconfig"


def _send(task_name: str, arg: str, countdown: float | None = None) -> None:
    from config.celery import app

    try:
        app.send_task(task_name, args=[arg], retry=False, countdown=countdown)
    except Exception as exc:  # the sweep is the guarantee; never fail a committed request
        logger.warning("could not enqueue %s(%s): %s", task_name, arg, exc.__class__.__name__)


def kick(task_name: str, arg: object) -> None:
    if not settings.RECONCILE_KICK_ON_COMMIT:
        return
    transaction.on_commit(lambda: _send(task_name, str(arg)))


def kick_sandbox(sandbox_id: object) -> None:
    kick(SANDBOX, sandbox_id)


def kick_database(database_id: object) -> None:
    kick(DATABASE, database_id)


def kick_kubeconfig_check(user_id: object) -> None:
    # Always sent, even with kicks off: the check is not swept as often as resources are.
    transaction.on_commit(lambda: _send(KUBECONFIG_CHECK, str(user_id)))


def send_later(task_name: str, arg: str, delay: float) -> None:
    """Used by the reconciler itself (outside transactions) to come back to a row soon."""
    if settings.RECONCILE_KICK_ON_COMMIT:
        _send(task_name, arg, countdown=delay if delay > 0 else None)
