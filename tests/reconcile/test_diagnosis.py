"""Why a sandbox pod is not ready (reconcile/sandbox.py `diagnose_pod`), from canned objects.

The diagnosis is pure: it gets the pod (or None) and a function giving the Events about an object
by name; `pod_failure` reads those from the cluster (covered end to end in test_reliability.py).
"""

from __future__ import annotations

import copy
from typing import Any

from reconcile.sandbox import diagnose_pod

STS = "s-abcdefgh"
POD = "s-abcdefgh-0"


def _pod(
    *, waiting: str = "", message: str = "", phase: str = "Pending", ready: bool = False
) -> dict[str, Any]:
    state: dict[str, Any] = (
        {"waiting": {"reason": waiting, "message": message}} if waiting else {"running": {}}
    )
    return {
        "metadata": {"name": POD, "uid": "pod-uid"},
        "status": {
            "phase": phase,
            "containerStatuses": [
                {"name": STS, "ready": ready, "state": state, "lastState": {}},
                {"name": "filebrowser", "ready": ready, "state": {"running": {}}},
            ],
        },
    }


def _event(
    reason: str, message: str, when: str, uid: str = "pod-uid", kind: str = "Warning", name: str = POD
) -> dict[str, Any]:
    return {
        "type": kind,
        "reason": reason,
        "message": message,
        "lastTimestamp": when,
        "involvedObject": {"name": name, "uid": uid},
    }


class Events:
    """The `events` argument: canned Events, and the names it was asked about."""

    def __init__(self, *events: dict[str, Any]) -> None:
        self.events = list(events)
        self.asked: list[str] = []

    def __call__(self, name: str) -> list[dict[str, Any]]:
        self.asked.append(name)
        return copy.deepcopy(self.events)


def test_no_pod_and_no_event_is_no_failure() -> None:
    events = Events()
    assert diagnose_pod(STS, None, events) is None
    assert events.asked == [STS]  # the StatefulSet's events: its pod creation may have failed


def test_no_pod_with_a_failed_create_on_the_statefulset() -> None:
    events = Events(
        _event("FailedCreate", 'pods "s-abcdefgh-0" is forbidden: exceeded quota', "t1", name=STS),
        _event("FailedScheduling", "not about pod creation", "t2", name=STS),
    )
    assert diagnose_pod(STS, None, events) == (
        'FailedCreate: pods "s-abcdefgh-0" is forbidden: exceeded quota'
    )


def test_image_pull_backoff_takes_the_latest_warning_of_this_pod() -> None:
    events = Events(
        _event("Failed", "old pod's failure", "2025-01-01T00:00:09Z", uid="old-uid"),
        _event("Failed", 'Failed to pull image "bad:tag": not found', "2025-01-01T00:00:05Z"),
        _event("BackOff", 'Back-off pulling image "bad:tag"', "2025-01-01T00:00:08Z"),
        _event("BackOff", "a Normal event is no failure", "2025-01-01T00:00:10Z", kind="Normal"),
    )
    assert diagnose_pod(STS, _pod(waiting="ImagePullBackOff"), events) == (
        'ImagePullBackOff: Back-off pulling image "bad:tag"'
    )
    assert events.asked == [POD]


def test_a_container_message_needs_no_event() -> None:
    events = Events()
    pod = _pod(waiting="CreateContainerConfigError", message="couldn't find key FILE_BROWSER_PASSWORD")
    assert diagnose_pod(STS, pod, events) == (
        "CreateContainerConfigError: couldn't find key FILE_BROWSER_PASSWORD"
    )
    assert events.asked == []


def test_crash_loop_says_how_the_container_last_exited() -> None:
    crashing = _pod(waiting="CrashLoopBackOff", message="back-off 5m0s", phase="Running")
    crashing["status"]["containerStatuses"][0]["lastState"] = {
        "terminated": {"reason": "Error", "exitCode": 1}
    }
    failure = diagnose_pod(STS, crashing, Events())
    assert failure is not None and failure.startswith("CrashLoopBackOff: back-off 5m0s")
    assert "code 1" in failure


def test_a_terminated_container_with_a_failure_reason() -> None:
    pod = _pod(phase="Running")
    pod["status"]["containerStatuses"][0]["state"] = {"terminated": {"reason": "OOMKilled", "message": ""}}
    assert diagnose_pod(STS, pod, Events()) == "OOMKilled"


def test_a_ready_pod_is_no_failure_whatever_the_events() -> None:
    events = Events(_event("BackOff", "an old back-off", "2025-01-01T00:00:08Z"))
    assert diagnose_pod(STS, _pod(phase="Running", ready=True), events) is None
    assert events.asked == []


def test_an_unschedulable_pod() -> None:
    unschedulable = _pod()
    unschedulable["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes: cpu"}
    ]
    assert diagnose_pod(STS, unschedulable, Events()) == "Unschedulable: 0/3 nodes: cpu"


def test_a_pending_pod_with_a_failure_event() -> None:
    events = Events(
        _event("FailedMount", 'MountVolume.SetUp failed for volume "data"', "2025-01-01T00:00:05Z"),
        _event("Pulled", "not a failure reason", "2025-01-01T00:00:09Z"),
    )
    assert diagnose_pod(STS, _pod(), events) == 'FailedMount: MountVolume.SetUp failed for volume "data"'
    assert diagnose_pod(STS, _pod(), Events()) is None  # merely starting
