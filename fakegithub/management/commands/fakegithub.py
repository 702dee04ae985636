"""`python manage.py fakegithub ...`: thin wrapper around fakegithub.cli."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand

from fakegithub.cli import add_arguments, run


class Command(BaseCommand):
    requires_system_checks: list[str] = []  # standalone server: no database, no URL conf needed
    help = "Run fakegithub, a local GitHub simulator (see fakegithub/README.md)."

    def add_arguments(self, parser: Any) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        raise SystemExit(run(argparse.Namespace(**options)))
