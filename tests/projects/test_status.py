"""Project status aggregation and allowed actions: every rule of DESIGN §4 and their priority."""

import pytest

from projects.status import aggregate, allowed_actions, delete_refusal, start_refusal, stop_refusal


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        # no resources left: the project is gone
        ([], "TERMINATED"),
        # any ERROR wins over everything
        (["ERROR"], "ERROR"),
        (["ERROR", "CREATING"], "ERROR"),
        (["RUNNING", "ERROR", "UPDATING"], "ERROR"),
        (["TERMINATING", "ERROR"], "ERROR"),
        # then any CREATING
        (["CREATING"], "CREATING"),
        (["CREATING", "UPDATING"], "CREATING"),
        (["RUNNING", "CREATING"], "CREATING"),
        (["TERMINATING", "CREATING"], "CREATING"),
        # then any UPDATING
        (["UPDATING", "RUNNING"], "UPDATING"),
        (["UPDATING", "STOPPED"], "UPDATING"),
        (["UPDATING", "UPDATING"], "UPDATING"),
        # all equal: that status
        (["RUNNING"], "RUNNING"),
        (["RUNNING", "RUNNING"], "RUNNING"),
        (["STOPPED", "STOPPED"], "STOPPED"),
        (["STARTING"], "STARTING"),
        (["STOPPING"], "STOPPING"),
        (["TERMINATING", "TERMINATING"], "TERMINATING"),
        (["TERMINATED"], "TERMINATED"),
        # mixed groups
        (["RUNNING", "STARTING"], "STARTING"),
        (["STOPPED", "STOPPING"], "STOPPING"),
        (["TERMINATED", "TERMINATING"], "TERMINATING"),
        # anything else is PARTIAL
        (["RUNNING", "STOPPED"], "PARTIAL"),
        (["STARTING", "STOPPING"], "PARTIAL"),
        (["RUNNING", "TERMINATING"], "PARTIAL"),
        (["STOPPED", "TERMINATED"], "PARTIAL"),
    ],
)
def test_it_aggregates_resource_statuses_in_priority_order(statuses, expected):
    assert aggregate(statuses) == expected
    assert aggregate(reversed(statuses)) == expected


@pytest.mark.parametrize(
    ("project_status", "resources", "start", "stop", "delete"),
    [
        ("RUNNING", ["RUNNING"], False, True, True),
        ("STOPPED", ["STOPPED"], True, False, True),
        ("PARTIAL", ["RUNNING", "STOPPED"], True, True, True),
        ("STARTING", ["STARTING"], False, True, True),
        ("STOPPING", ["STOPPING"], True, False, True),
        ("ERROR", ["ERROR"], True, True, True),
        ("CREATING", ["CREATING"], False, False, True),
        ("UPDATING", ["UPDATING"], False, False, True),
        ("TERMINATING", ["TERMINATING"], False, False, False),
        # the extra rule: a blocking resource refuses start and stop even when the status would allow it
        ("ERROR", ["ERROR", "CREATING"], False, False, True),
        ("ERROR", ["ERROR", "UPDATING"], False, False, True),
        ("ERROR", ["ERROR", "TERMINATING"], False, False, True),
        ("PARTIAL", ["RUNNING", "TERMINATING"], False, False, True),
    ],
)
def test_it_allows_only_the_documented_project_actions(project_status, resources, start, stop, delete):
    assert (start_refusal(project_status, resources) is None) is start
    assert (stop_refusal(project_status, resources) is None) is stop
    assert (delete_refusal(project_status) is None) is delete
    actions = allowed_actions(project_status, resources)
    assert ("start" in actions, "stop" in actions, "delete" in actions) == (start, stop, delete)


def test_refusals_say_why():
    assert "CREATING" in start_refusal("ERROR", ["ERROR", "CREATING"])
    assert "RUNNING" in start_refusal("RUNNING", ["RUNNING"])
    assert delete_refusal("TERMINATING") == "The project is already being deleted."
