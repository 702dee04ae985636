"""Clients for looking at kubesim from the tests."""

import pytest

from tests.conftest import wait_for  # noqa: F401  (re-exported for the tests here)


@pytest.fixture
def core(kubesim, kube_namespace):
    from kubernetes import client

    return client.CoreV1Api(kubesim.api_client(kube_namespace))


@pytest.fixture
def apps_api(kubesim, kube_namespace):
    from kubernetes import client

    return client.AppsV1Api(kubesim.api_client(kube_namespace))
