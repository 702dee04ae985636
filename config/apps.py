from django.contrib.admin.apps import AdminConfig


class TenterAdminConfig(AdminConfig):
    """The admin app with Tenter's site (config/admin.py) as `admin.site`."""

    default_site = "config.admin.TenterAdminSite"
