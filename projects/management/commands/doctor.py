"""`python manage.py doctor`: database, Redis, workers, beat and the sweeps, kubeconfig checks, and per
cluster KubeBlocks, the ingress class and the storage class. One line per check; exit 1 on a FAIL."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from reconcile.doctor import FAIL, run_checks


class Command(BaseCommand):
    help = "Check what Tenter needs to work; one line per check, non-zero exit when something is wrong."

    def handle(self, *args: Any, **options: Any) -> None:
        checks = run_checks()
        for check in checks:
            line = check.line()
            style = (
                self.style.ERROR
                if check.state == FAIL
                else (self.style.WARNING if check.state == "WARN" else self.style.SUCCESS)
            )
            self.stdout.write(style(line))
        failed = [c for c in checks if c.state == FAIL]
        if failed:
            raise CommandError(f"{len(failed)} check(s) failed: {', '.join(c.name for c in failed)}")
        self.stdout.write("All checks passed.")
