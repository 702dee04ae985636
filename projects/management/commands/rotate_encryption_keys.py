"""Re-encrypt every encrypted column with the newest key in FIELD_ENCRYPTION_KEYS.

Put the new key first in FIELD_ENCRYPTION_KEYS (keep the old ones after it), run this command, then
remove the old keys.
"""

from typing import Any

from cryptography.fernet import MultiFernet
from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import connection, transaction

from core.crypto import EncryptedTextField, _fernet

BATCH = 500


class Command(BaseCommand):
    help = "Re-encrypt all encrypted fields with the newest FIELD_ENCRYPTION_KEYS key."

    def handle(self, *args: Any, **options: Any) -> None:
        fernet: MultiFernet = _fernet()
        total = 0
        for model in apps.get_models():
            fields = [f for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
            if not fields:
                continue
            table = connection.ops.quote_name(model._meta.db_table)
            pk = connection.ops.quote_name(str(model._meta.pk.column))
            for field in fields:
                column = connection.ops.quote_name(str(field.column))
                rotated = self._rotate_column(fernet, table, pk, column)
                total += rotated
                self.stdout.write(f"{model._meta.label}.{field.name}: {rotated} value(s) re-encrypted")
        self.stdout.write(self.style.SUCCESS(f"done: {total} value(s) re-encrypted"))

    def _rotate_column(self, fernet: MultiFernet, table: str, pk: str, column: str) -> int:
        # Raw SQL on purpose: the tokens are rotated without ever materialising plaintext in Python objects.
        count, last = 0, None
        while True:
            with transaction.atomic(), connection.cursor() as cursor:
                where = f"WHERE {column} <> ''" + (f" AND {pk} > %s" if last is not None else "")
                cursor.execute(
                    f"SELECT {pk}, {column} FROM {table} {where} ORDER BY {pk} LIMIT {BATCH} FOR UPDATE",
                    [last] if last is not None else [],
                )
                rows = cursor.fetchall()
                if not rows:
                    return count
                for row_pk, token in rows:
                    cursor.execute(
                        f"UPDATE {table} SET {column} = %s WHERE {pk} = %s",
                        [fernet.rotate(token.encode()).decode(), row_pk],
                    )
                count += len(rows)
                last = rows[-1][0]
