from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from alerts.views import prometheus_metrics
from portals.health import healthz

# Every URL needs a login except these (tests/test_roles.py enumerates the resolver):
# the login form, /healthz (no secret in it) and, in the demo, /static/ (whitenoise).
# /metrics has no login either, but answers only a bearer token or an allowed address.
PUBLIC_URL_NAMES = {"login", "healthz"}

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("", include("tokens.urls")),
    path("", include("portals.urls")),
    path("", include("alerts.urls")),  # issue 9
    path("metrics", prometheus_metrics, name="metrics"),  # issue 9: bearer token / IP list
]

handler403 = "msp_dashboard.views.permission_denied"
