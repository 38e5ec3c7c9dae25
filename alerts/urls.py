from django.urls import path

from . import views

app_name = "alerts"
urlpatterns = [
    path("alerts/", views.home, name="home"),
    path("alerts/channels/new/", views.channel_new, name="channel-new"),
    path("alerts/channels/<int:pk>/", views.channel_detail, name="channel"),
    path("alerts/channels/<int:pk>/edit/", views.channel_edit, name="channel-edit"),
    path("alerts/channels/<int:pk>/delete/", views.channel_delete, name="channel-delete"),
    path("alerts/channels/<int:pk>/test/", views.channel_test, name="channel-test"),
    path("customers/<int:pk>/acknowledge/", views.acknowledge, name="acknowledge"),
    path("customers/<int:pk>/mute/", views.mute, name="mute"),
    path("customers/<int:pk>/alerts/", views.customer_alerts, name="customer-panel"),
    path("alerts/silences/<int:pk>/end/", views.silence_end, name="silence-end"),
    path("alerts/seen/", views.mark_seen, name="mark-seen"),
    path("alerts/seen/touch/", views.seen_touch, name="seen-touch"),
    path("grid.csv", views.grid_csv, name="grid-csv"),
    path("availability/", views.availability_page, name="availability"),
    path("availability.csv", views.availability_csv, name="availability-csv"),
]
