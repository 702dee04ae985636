"""Create (or refresh) the demo user with a kubeconfig, an API token, and a staff superuser."""

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand

from core.audit import SYSTEM
from userconfig import selectors, services
from userconfig.models import User


class Command(BaseCommand):
    help = "Create the demo user (with the given kubeconfig and an API token) and an admin user."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", required=True)
        parser.add_argument("--admin-username", default="admin")
        parser.add_argument("--admin-password", required=True)
        parser.add_argument("--kubeconfig", type=Path, required=True)
        parser.add_argument("--token-file", type=Path, help="also write the API token here (mode 0600)")

    def handle(self, *args: Any, **opts: Any) -> None:
        user, _ = User.objects.get_or_create(username=opts["username"])
        user.set_password(opts["password"])
        user.save()
        services.kubeconfig_save(user=user, text=opts["kubeconfig"].read_text(), actor=SYSTEM)
        # Only hashes are stored, so the previous demo token cannot be shown again: replace it.
        for old in selectors.api_tokens(user=user).filter(name="demo"):
            services.api_token_revoke(user=user, token_id=old.pk, actor=SYSTEM)
        _, secret = services.api_token_create(user=user, name="demo", actor=SYSTEM)
        admin, _ = User.objects.get_or_create(username=opts["admin_username"])
        admin.is_staff = admin.is_superuser = True
        admin.set_password(opts["admin_password"])
        admin.save()
        if opts["token_file"]:
            opts["token_file"].touch(mode=0o600)
            opts["token_file"].write_text(secret)
        self.stdout.write(f"demo user '{user.username}' ready; API token: {secret}")
