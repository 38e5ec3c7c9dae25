from django.contrib.admin.apps import AdminConfig as DjangoAdminConfig


class AdminConfig(DjangoAdminConfig):
    """django.contrib.admin with the audited site (msp_dashboard.admin.AdminSite)."""

    default_site = "msp_dashboard.admin.AdminSite"
