"""Secrets are encrypted at rest, and a key can be rotated."""

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection

from core import crypto
from projects.models import Environment
from tests.factories import DatabaseFactory, EnvironmentFactory

pytestmark = pytest.mark.django_db


def raw(table, column, pk):
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


@pytest.fixture
def keys(settings):
    def use(*keys):
        settings.FIELD_ENCRYPTION_KEYS = list(keys)
        crypto.reset_keys()

    yield use
    crypto.reset_keys()


def test_raw_columns_hold_no_plaintext():
    env = EnvironmentFactory(key="STRIPE", value="sk_live_PLAINTEXT", is_secret=True)
    database = DatabaseFactory(password="pg-PLAINTEXT-pw")
    assert "PLAINTEXT" not in raw("projects_environment", "value", env.pk)
    assert "PLAINTEXT" not in raw("sandboxes_database", "password", database.pk)
    assert Environment.objects.get(pk=env.pk).value == "sk_live_PLAINTEXT"


def test_rotation_re_encrypts_with_the_newest_key(keys, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    keys(old)
    env = EnvironmentFactory(value="rotate-me")
    database = DatabaseFactory(password="db-secret")
    keys(new, old)  # new key first, old still accepted
    assert Environment.objects.get(pk=env.pk).value == "rotate-me"
    assert crypto.needs_rotation(raw("projects_environment", "value", env.pk))
    call_command("rotate_encryption_keys", stdout=io.StringIO())
    assert not crypto.needs_rotation(raw("projects_environment", "value", env.pk))
    keys(new)  # the old key can now be dropped
    assert Environment.objects.get(pk=env.pk).value == "rotate-me"
    database.refresh_from_db()
    assert database.password == "db-secret"


def test_a_value_without_its_key_is_an_error_that_leaks_nothing(keys):
    keys(Fernet.generate_key().decode())
    env = EnvironmentFactory(value="very-secret-value")
    keys(Fernet.generate_key().decode())
    with pytest.raises(Exception) as info:
        Environment.objects.get(pk=env.pk)
    assert "very-secret-value" not in str(info.value)
