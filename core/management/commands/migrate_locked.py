"""`manage.py migrate_locked [migrate's options]`: Django's migrate under a PostgreSQL advisory lock.

Django's migrate takes no lock: two pods migrating at once (an upgrade's Job beside a retry, or several
replicas migrating on start) can apply one migration twice and fail half way. This command holds a
session-level advisory lock on the default connection while migrate runs; a second one waits (up to
MIGRATE_LOCK_TIMEOUT_SECONDS), then finds nothing left to apply.
"""

import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection

# A number no other advisory lock of Tenter's uses (projects/services.py keeps the quota locks apart).
MIGRATE_LOCK_KEY = 0x7E7E_0001


class Command(BaseCommand):
    help = "Apply migrations while holding a PostgreSQL advisory lock, so only one process migrates at once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--noinput", "--no-input", action="store_false", dest="interactive")
        parser.add_argument("--lock-timeout", type=float, default=None, help="seconds to wait for the lock")

    def handle(self, *args: Any, **options: Any) -> None:
        timeout = options["lock_timeout"]
        if timeout is None:
            timeout = settings.MIGRATE_LOCK_TIMEOUT_SECONDS
        deadline = time.monotonic() + timeout
        waited = False
        with connection.cursor() as cursor:
            while True:
                cursor.execute("SELECT pg_try_advisory_lock(%s)", [MIGRATE_LOCK_KEY])
                if cursor.fetchone()[0]:
                    break
                if not waited:
                    self.stdout.write("Another process is migrating; waiting for it to finish.")
                    waited = True
                if time.monotonic() > deadline:
                    raise CommandError(f"Another process held the migration lock for over {timeout:g} s.")
                time.sleep(1)
        try:
            call_command("migrate", interactive=options["interactive"], verbosity=options["verbosity"])
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [MIGRATE_LOCK_KEY])
