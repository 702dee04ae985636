# AuditEntry now lives in core (core/migrations/0001_initial.py); the table stays as it is.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("projects", "0002_task_sandbox_and_indexes"),
        ("core", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="AuditEntry")],
            database_operations=[],
        ),
    ]
