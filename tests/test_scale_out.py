"""Scale-out, small (issue 18): gunicorn, two prefork workers and two beats as real processes on one
PostgreSQL, Redis and kubesim; projects created over HTTP by concurrent clients; one worker stopped with
SIGTERM and restarted, one killed with SIGKILL and restarted. Every project reaches RUNNING, nothing is
created twice on the cluster and no transition is recorded twice. (benchmarks/bench_scaleout.py runs the
same scenario at 1,000 projects and measures the speed; both use tests/scaleout_harness.py.)"""

from __future__ import annotations

import os
import time
import uuid

import pytest
from django.db import connection

from core.audit import SYSTEM
from tests import scaleout_harness as harness
from tests.factories import UserFactory
from userconfig import services as userconfig_services

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
USERS, PER_USER = 3, 10


def test_processes_on_one_database_bring_every_project_up_through_restarts(kubesim, tmp_path):
    port = harness.free_port()
    env = harness.process_env(
        dict(os.environ),
        port=port,
        DATABASE_URL=harness.database_url(connection.settings_dict),
        CELERY_QUEUE=f"tenter-scale-{uuid.uuid4().hex[:8]}",
        RECONCILE_LEASE_SECONDS="8",
        RECONCILE_SWEEP_SECONDS="1",
        BEAT_LEADER_TTL_SECONDS="5",
    )
    namespaces, tokens = [], []
    for i in range(USERS):
        user = UserFactory()
        ns = kubesim.create_namespace(f"scale-{uuid.uuid4().hex[:6]}-{i}")
        userconfig_services.kubeconfig_save(user=user, text=kubesim.kubeconfig(ns), actor=SYSTEM)
        _, secret = userconfig_services.api_token_create(user=user, name="scale", actor=SYSTEM)
        namespaces.append(ns)
        tokens.append(secret)

    fleet = harness.Fleet(env, tmp_path)
    try:
        fleet.web()
        fleet.beat("beat-a")
        fleet.beat("beat-b")
        fleet.worker("w1")
        fleet.worker("w2")
        fleet.wait_web()
        for name in ("w1", "w2"):
            fleet.wait_ready(name)
        creates, clients = harness.create_projects(port, tokens, PER_USER)
        # the workers are at work (objects going onto the cluster) when one is stopped and one killed
        deadline = time.monotonic() + 60
        while not harness.duplicate_creates(kubesim.stats(), namespaces)[0]:
            assert time.monotonic() < deadline, "no object created on the cluster within 60 s"
            time.sleep(0.2)
        # a rolling update: finish the step, release, exit
        assert fleet.terminate("w1") == 0, fleet.log("w1")[-3000:]
        fleet.worker("w1")
        fleet.kill("w2")  # a node lost: its leases expire, another worker goes on
        fleet.worker("w2")
        for t in clients:
            t.join(120)
        assert not creates.errors, creates.errors
        created = list(creates.started)
        assert len(created) == USERS * PER_USER
        left = harness.wait_all_running(created, timeout=240)
        assert left == []
    finally:
        fleet.close()

    objects, twice, _resent = harness.duplicate_creates(kubesim.stats(), namespaces)
    assert objects, "nothing was created on the cluster"
    assert twice == []  # no object created twice (a killed step's re-run may send a create again: 409)
    assert harness.duplicate_transitions(created) == []  # no step recorded twice
