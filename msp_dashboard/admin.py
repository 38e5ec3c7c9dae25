"""The Django admin site, with every refused entry audited (SEC-04)."""

from functools import wraps

from django.contrib import admin


class AdminSite(admin.AdminSite):
    site_header = "MSP dashboard administration"
    site_title = "MSP dashboard admin"

    def admin_view(self, view, cacheable=False):
        inner = super().admin_view(view, cacheable)

        @wraps(inner)
        def audited(request, *args, **kwargs):
            user = request.user
            if user.is_authenticated and not self.has_permission(request):
                from portals.access import denied

                denied(request, "the admin needs the Admin role (staff)")
            return inner(request, *args, **kwargs)

        return audited
