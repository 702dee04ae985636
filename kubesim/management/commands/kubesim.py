"""`python manage.py kubesim ...`: thin wrapper around kubesim.cli."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from kubesim.cli import add_arguments, run


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # standalone server: no database, no URL conf needed
    help = "Run kubesim, a local Kubernetes API server simulator (see kubesim/README.md)."

    def add_arguments(self, parser: Any) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        class Opts:
            pass

        opts = Opts()
        for k, v in options.items():
            setattr(opts, k, v)
        raise SystemExit(run(opts))
