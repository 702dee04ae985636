import pytest
from django.contrib.auth.models import Permission

from tests.factories import UserFactory

ADMIN_MODELS = [
    ("sandboxes", "sandbox"),
    ("sandboxes", "database"),
    ("sandboxes", "resourceevent"),
    ("sandboxes", "orphanobject"),
    ("projects", "project"),
    ("projects", "projecttask"),
    ("core", "auditentry"),
    ("projects", "environment"),
    ("userconfig", "user"),
    ("userconfig", "userconfig"),
    ("github", "githubinstallation"),
    ("github", "webhookdelivery"),
]


def make_user(**fields):
    """A saved user (the factory sets the password after create without saving it, and a session
    login checks the stored password hash)."""
    user = UserFactory(**fields)
    user.save()
    return user


def _staff(*prefixes: str):
    user = make_user(is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label__in={app for app, _ in ADMIN_MODELS},
            codename__regex=r"^(" + "|".join(prefixes) + r")_",
        )
    )
    return user


@pytest.fixture
def superuser(db):
    return make_user(is_staff=True, is_superuser=True, username="root")


@pytest.fixture
def viewer(db):
    """Staff with view permissions only."""
    return _staff("view")


@pytest.fixture
def operator_staff(db):
    """Staff who may view and change (run the non-destructive actions), but not a superuser."""
    return _staff("view", "change")


@pytest.fixture
def su_client(client, superuser):
    client.force_login(superuser)
    return client


@pytest.fixture
def viewer_client(client, viewer):
    client.force_login(viewer)
    return client


@pytest.fixture
def operator_client(client, operator_staff):
    client.force_login(operator_staff)
    return client
