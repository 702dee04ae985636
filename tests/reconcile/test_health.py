"""Why a running pod is not ready, and why a database cluster failed: reasons a user can act on."""

from reconcile import health


def _pod(waiting=None, last=None, ready=False, restarts=0, conditions=None):
    cs = {"name": "my-app-abcdefgh", "ready": ready, "restartCount": restarts, "state": {}, "lastState": {}}
    if waiting:
        cs["state"] = {"waiting": {"reason": waiting, "message": "raw <b>remote</b> text"}}
    if last:
        cs["lastState"] = {"terminated": {"reason": last, "exitCode": 137 if last == "OOMKilled" else 1}}
    return {"status": {"phase": "Running", "containerStatuses": [cs], "conditions": conditions or []}}


def test_a_ready_pod_has_no_problem():
    assert health.pod_problem(_pod(ready=True)) is None


def test_crash_loop_oom_image_pull_and_unschedulable_are_named():
    crash = health.pod_problem(_pod("CrashLoopBackOff", "Error", restarts=3))
    assert crash == "CrashLoopBackOff: container my-app-abcdefgh restarted 3 times, last exit Error (code 1)"
    oom = health.pod_problem(_pod("CrashLoopBackOff", "OOMKilled", restarts=1))
    assert oom.startswith(
        "OOMKilled: container my-app-abcdefgh restarted 1 time, last exit OOMKilled (code 137)"
    )
    assert health.pod_problem(_pod("ImagePullBackOff")).startswith(
        "ImagePullBackOff: container my-app-abcdefgh"
    )
    pending = {
        "status": {
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"}
            ],
        }
    }
    assert health.pod_problem(pending) == "Unschedulable: 0/3 nodes"
    assert health.pod_problem(None) == "PodMissing: the sandbox has no pod"


def test_remote_text_beyond_reason_tokens_is_not_shown():
    assert "remote" not in health.pod_problem(_pod("CrashLoopBackOff"))
    weird = _pod("CrashLoopBackOff")
    weird["status"]["containerStatuses"][0]["name"] = "<script>"
    assert "<script>" not in health.pod_problem(weird)


def test_cluster_failed_and_abnormal_with_the_reason():
    cluster = {
        "status": {
            "phase": "Abnormal",
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "ComponentsNotReady", "message": "x"}
            ],
            "components": {"postgresql": {"phase": "Abnormal"}},
        }
    }
    assert (
        health.cluster_problem(cluster)
        == "Cluster Abnormal: ComponentsNotReady, component postgresql Abnormal"
    )
    assert health.cluster_problem({"status": {"phase": "Running"}}) is None
    assert (
        health.cluster_problem({"status": {"phase": "Failed"}})
        == "Cluster Failed: no reason given by the cluster"
    )
