"""Warm pool manifests (pure): a pool member's objects, and a pod template that binding leaves as is."""

import subprocess
from typing import Any

import kubernetes_validate
import pytest

from reconcile import manifests
from tests.reconcile.test_manifests import K8S_VERSIONS, sandbox_spec

POOL = {"pool_id": "3", "template_pool": "3", "pinned_checksum": "0123456789abcdef"}


def member(**overrides: Any) -> Any:
    return sandbox_spec(
        project_id="9d7a1f0e-0000-4000-8000-000000000001", project_slug="warm", **POOL, **overrides
    )


def bound(**overrides: Any) -> Any:
    values = {**POOL, "pool_id": "", **overrides}
    return sandbox_spec(env={"TTYD_ACCESS_TOKEN": "new-token", "MY_VAR": "x"}, **values)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_member_and_bound_objects_validate(version: str) -> None:
    for spec in (member(), bound()):
        for obj in manifests.sandbox_objects(spec):
            kubernetes_validate.validate(obj, version, strict=True)


def test_a_member_has_the_pool_label_no_project_label_and_no_ingresses() -> None:
    objects = manifests.sandbox_objects(member())
    assert [o["kind"] for o in objects] == ["Secret", "Service", "StatefulSet"]
    sts = objects[2]
    claim = sts["spec"]["volumeClaimTemplates"][0]["metadata"]["labels"]
    for labels in (
        *(o["metadata"]["labels"] for o in objects),
        sts["spec"]["template"]["metadata"]["labels"],
        claim,
    ):
        assert labels[manifests.POOL_LABEL] == "3"
        assert manifests.PROJECT_LABEL not in labels and manifests.FULLING_PROJECT_LABEL not in labels
        assert labels[manifests.OWNER_LABEL] == member().owner_id


def test_binding_changes_labels_and_env_but_not_the_pod_template() -> None:
    before = manifests.statefulset(member())
    after = manifests.statefulset(bound())
    assert before["spec"]["template"] == after["spec"]["template"]
    assert after["metadata"]["labels"][manifests.PROJECT_LABEL] == bound().project_id
    assert manifests.POOL_LABEL not in after["metadata"]["labels"]
    assert [o["kind"] for o in manifests.sandbox_objects(bound())].count("Ingress") == 3
    # no env value in the template, and no project name either (the env file carries it)
    assert "new-token" not in str(after) and "My App" not in str(after["spec"]["template"])
    # unpinned (the project's env changed later), it is an ordinary sandbox's template again
    plain = manifests.statefulset(sandbox_spec())
    assert (
        manifests.statefulset(bound(pinned_checksum="", template_pool=""))["spec"]["template"]
        != before["spec"]["template"]
    )
    assert manifests.POOL_LABEL not in plain["spec"]["template"]["metadata"]["labels"]


def test_the_env_file_quotes_every_value_so_nothing_is_expanded() -> None:
    env = {"PLAIN": "x", "QUOTE": "it's", "DOLLAR": "$HOME `id` $(id)", "NEWLINE": "a\nb"}
    text = manifests.env_file(env)
    script = text + 'printf "%s|" "$PLAIN" "$QUOTE" "$DOLLAR" "$NEWLINE"'
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True).stdout
    assert out == "x|it's|$HOME `id` $(id)|a\nb|"
    with pytest.raises(ValueError):
        manifests.env_file({"BAD-KEY": "x"})


def test_a_pool_pod_reads_its_terminal_and_file_manager_credentials_from_files() -> None:
    pool_sts = manifests.statefulset(member())["spec"]["template"]["spec"]["containers"]
    plain_sts = manifests.statefulset(sandbox_spec())["spec"]["template"]["spec"]["containers"]
    main, filebrowser = pool_sts
    assert manifests.WARM_TTYD_FILE in main["command"][2] and "ttyd" in main["command"][2]
    assert manifests.WARM_TTYD_FILE in main["readinessProbe"]["exec"]["command"][2]
    assert ".tenter/filebrowser" in filebrowser["command"][2]
    assert "command" not in plain_sts[0]  # an ordinary sandbox runs the image's own start
    assert ".tenter" not in plain_sts[1]["command"][2]


def test_the_pool_scripts_are_valid_shell() -> None:
    containers = manifests.statefulset(member())["spec"]["template"]["spec"]["containers"]
    for script in (
        containers[0]["command"][2],
        containers[1]["command"][2],
        manifests.WARM_TTYD_PROBE_SCRIPT,
    ):
        subprocess.run(["sh", "-n", "-c", script], check=True)
