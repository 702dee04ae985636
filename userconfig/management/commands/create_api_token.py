"""Create a personal API token for a user and print it (the only time it is shown)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from core.audit import SYSTEM
from core.errors import ServiceError
from userconfig import services
from userconfig.models import User


class Command(BaseCommand):
    help = "Create a personal API token for a user and print it (use it as 'Authorization: Bearer <token>')."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="cli")
        parser.add_argument("--expires-days", type=int, default=None, help="expire after this many days")

    def handle(self, *args: Any, **opts: Any) -> None:
        user = User.objects.filter(username=opts["username"]).first()
        if user is None:
            raise CommandError(f"No user named {opts['username']!r}.")
        try:
            _, secret = services.api_token_create(
                user=user, name=opts["name"], expires_in_days=opts["expires_days"], actor=SYSTEM
            )
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(secret)
