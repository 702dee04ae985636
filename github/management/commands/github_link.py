"""`python manage.py github_link <username> <installation_id>`: record a GitHub App installation for a
user without the browser flow (checked through GitHub's API). `make run` links the demo installation."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from core.audit import SYSTEM
from core.errors import ServiceError
from github import services
from userconfig.models import User


class Command(BaseCommand):
    help = "Record a GitHub App installation (GitHub's id) for a user."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")
        parser.add_argument("installation_id", type=int)

    def handle(self, *args: Any, username: str, installation_id: int, **options: Any) -> None:
        user = User.objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user named {username}.")
        try:
            row = services.installation_link(user=user, installation_id=installation_id, actor=SYSTEM)
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"linked installation {row.installation_id} ({row.account_login}) to {username}")
