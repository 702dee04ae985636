"""DRF's authtoken kept API keys in clear (`authtoken_token`). Each key becomes an ApiToken named
"migrated" (its SHA-256 and its first 8 characters only), so clients keep working, and the table with
the clear keys is dropped. A database that never had DRF's tokens has nothing to do."""

import hashlib

from django.db import migrations
from django.utils import timezone

TABLE = "authtoken_token"


def forwards(apps, schema_editor):
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        if TABLE not in connection.introspection.table_names(cursor):
            return
        cursor.execute(f"SELECT key, user_id, created FROM {TABLE}")
        rows = cursor.fetchall()
    ApiToken = apps.get_model("userconfig", "ApiToken")
    AuditEntry = apps.get_model("core", "AuditEntry")
    for key, user_id, created in rows:
        token = ApiToken.objects.create(
            user_id=user_id,
            name="migrated",
            prefix=key[:8],
            token_hash=hashlib.sha256(key.encode()).hexdigest(),
        )
        ApiToken.objects.filter(pk=token.pk).update(created_at=created or timezone.now())
        AuditEntry.objects.create(
            actor_id=None,
            actor_kind="system",
            action="api_token.import",
            target_type="apitoken",
            target_id=str(token.pk),
            target_repr=f"migrated ({token.prefix}…)",
            details={"prefix": token.prefix, "from": "rest_framework.authtoken"},
        )
    schema_editor.execute(f"DROP TABLE {TABLE} CASCADE")
    schema_editor.execute("DELETE FROM django_migrations WHERE app = 'authtoken'")


class Migration(migrations.Migration):
    dependencies = [
        ("userconfig", "0002_api_tokens"),
        ("core", "0001_initial"),
    ]

    operations = [migrations.RunPython(forwards, migrations.RunPython.noop)]
