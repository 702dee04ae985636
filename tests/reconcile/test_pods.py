"""A pod problem that will not fix itself turns a STARTING sandbox to ERROR after a short grace, with a
plain-language hint and a reason code, instead of waiting for the STARTING deadline."""

import pytest

from reconcile import pods
from sandboxes.models import ResourceEvent, Sandbox
from tests.conftest import wait_for
from tests.reconcile.test_reliability import create, status_of


def _pod(reason: str, restarts: int = 0) -> dict:
    state = {"waiting": {"reason": reason, "message": "remote text"}}
    return {"status": {"containerStatuses": [{"name": "ide", "state": state, "restartCount": restarts}]}}


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("ErrImagePull", "image_pull"),
        ("ImagePullBackOff", "image_pull"),
        ("InvalidImageName", "invalid_image"),
        ("CreateContainerConfigError", "config_error"),
    ],
)
def test_problems_that_never_fix_themselves_are_permanent(reason, code):
    problem = pods.classify(_pod(reason))
    assert problem is not None
    assert (problem.code, problem.reason, problem.permanent) == (code, reason, True)
    assert "remote text" not in problem.hint("img:1")


def test_a_crash_loop_is_permanent_only_once_it_repeats():
    assert pods.classify(_pod("CrashLoopBackOff", restarts=1), crash_restarts=3).permanent is False
    problem = pods.classify(_pod("CrashLoopBackOff", restarts=3), crash_restarts=3)
    assert problem.permanent is True
    assert "3 restarts" in problem.hint("img:1")


def test_a_pod_still_creating_or_ready_has_no_problem():
    assert pods.classify(None) is None
    assert pods.classify(_pod("ContainerCreating")) is None
    ready = {"status": {"containerStatuses": [{"name": "ide", "state": {"running": {}}, "ready": True}]}}
    assert pods.classify(ready) is None


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_bad_image_errors_after_the_grace_not_the_deadline(cluster_api, beat, settings):
    settings.RUNTIME_IMAGE = "registry.example.test/kubesim-fail-imagepull:1"
    settings.POD_FAILURE_GRACE_SECONDS = 2  # the deadline stays 10 minutes
    project_id = create(cluster_api, "Broken Image")
    wait_for(lambda: status_of(project_id) == "ERROR", timeout=30, what="ERROR after the grace")
    sandbox = Sandbox.objects.get(project_id=project_id)
    assert sandbox.failed_status == "STARTING"
    assert sandbox.last_error.startswith('The cluster cannot pull the sandbox image "registry.example.test/')
    assert sandbox.last_error.endswith("(Kubernetes: ImagePullBackOff)")
    event = ResourceEvent.objects.get(resource_id=sandbox.pk, to_status="ERROR")
    assert event.reason == "image_pull"


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_transient_crash_is_not_failed_before_it_repeats(cluster_api, beat, settings, kubesim):
    settings.RUNTIME_IMAGE = "registry.example.test/kubesim-fail-crashloop:1"
    settings.POD_FAILURE_GRACE_SECONDS = 0
    settings.POD_CRASH_RESTARTS = 10_000  # never "repeated" within this test
    project_id = create(cluster_api, "Crashing Once")
    wait_for(
        lambda: "CrashLoopBackOff" in Sandbox.objects.get(project_id=project_id).status_reason,
        timeout=30,
        what="the crash reported while starting",
    )
    assert status_of(project_id) == "STARTING"
