"""Project-level views of issue 6: the audited 403 handler and the login lock-out page."""

from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.shortcuts import render
from django.views.defaults import permission_denied as django_permission_denied


def permission_denied(request, exception=None):
    """handler403: a denial that no access helper audited yet (the Django admin's model
    permissions, for instance) gets its audit event here; then Django's own 403."""
    if request.user.is_authenticated and not getattr(exception, "audited", False):
        from portals.access import denied

        denied(request, "permission denied")
    return django_permission_denied(request, exception, template_name="403.html")


def login_locked_out(request, original_response=None, credentials=None):
    """AXES_LOCKOUT_CALLABLE: the login form again, with one message and 429, the same for
    every username (known or not) and without checking the password (SEC-06)."""
    minutes = int(settings.AXES_COOLOFF_TIME.total_seconds() // 60)
    context = {"form": AuthenticationForm(request), "locked": minutes, "next": ""}
    return render(request, "registration/login.html", context, status=429)
