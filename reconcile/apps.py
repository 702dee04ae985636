from django.apps import AppConfig


class ReconcileConfig(AppConfig):
    name = "reconcile"
