"""The Celery app. Tasks are sent by name (see core/kick.py), so request code never imports them."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("tenter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["reconcile"])
