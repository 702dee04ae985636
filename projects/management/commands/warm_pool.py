"""`python manage.py warm_pool --image I --size S --target N [--disable]`: create or update the warm pool
policy of an image and size (what operators also do in the admin)."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from core.audit import SYSTEM
from core.errors import ValidationFailed
from projects import pools


class Command(BaseCommand):
    help = "Set the warm pool policy of a runtime image and size: idle sandboxes to keep per user."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--image", required=True, help="Runtime image (as settings.RUNTIME_IMAGE).")
        parser.add_argument("--size", required=True, help="A size of settings.SANDBOX_SIZES.")
        parser.add_argument("--target", required=True, type=int, help="Idle sandboxes to keep per user.")
        parser.add_argument("--disable", action="store_true", help="Keep the policy but stop refilling.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            policy = pools.policy_set(
                image=options["image"],
                size=options["size"],
                target=options["target"],
                enabled=not options["disable"],
                actor=SYSTEM,
            )
        except ValidationFailed as exc:
            raise CommandError(exc.message) from None
        state = "enabled" if policy.enabled else "disabled"
        self.stdout.write(
            f"Pool policy {policy.pk}: {policy.image} {policy.size}, target {policy.target}, {state}."
        )
