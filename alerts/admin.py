"""The alerts in the Django admin: read-only. Channels, acknowledgements and mutes change
through the alerts pages, whose services seal webhook secrets and write the audit trail; a
webhook URL is never shown, only its last four characters."""

from django.contrib import admin

from .models import (
    AlertChannel,
    AlertEvent,
    AlertState,
    DataGap,
    Delivery,
    DeliveryAttempt,
    Silence,
    UpstreamIncident,
)


class ReadOnly(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AlertChannel)
class AlertChannelAdmin(ReadOnly):
    list_display = ["name", "kind", "enabled", "masked_url", "hold_refreshes", "updated_at"]
    list_filter = ["kind", "enabled"]
    fields = [
        "name",
        "kind",
        "enabled",
        "recipients",
        "masked_url",
        "customer_groups",
        "hold_refreshes",
        "include_groups",
        "notify_recovery",
        "created_at",
        "updated_at",
    ]
    readonly_fields = ["masked_url"]


@admin.register(AlertEvent)
class AlertEventAdmin(ReadOnly):
    list_display = ["at", "kind", "customer_name", "group_name", "from_status", "to_status", "hold"]
    list_filter = ["kind", "data_centre"]
    search_fields = ["customer_name", "group_name"]
    date_hierarchy = "at"


class AttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    extra = 0
    can_delete = False
    fields = ["number", "at", "ok", "http_status", "error", "duration"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnly):
    list_display = ["created_at", "channel", "event", "state", "attempts", "last_http_status"]
    list_filter = ["state", "channel"]
    inlines = [AttemptInline]
    exclude = ["lease_until"]


@admin.register(Silence)
class SilenceAdmin(ReadOnly):
    list_display = [
        "created_at",
        "kind",
        "customer",
        "group_name",
        "created_by_name",
        "expires_at",
        "ended_at",
        "ended_reason",
    ]
    list_filter = ["kind", "ended_reason"]
    search_fields = ["customer__name", "group_name", "note"]


@admin.register(UpstreamIncident)
class UpstreamIncidentAdmin(ReadOnly):
    list_display = ["data_centre", "since", "opened_at", "ended_at", "failing", "considered"]


@admin.register(AlertState)
class AlertStateAdmin(ReadOnly):
    list_display = ["customer", "group_name", "status", "streak", "flapping", "observed_at"]
    list_filter = ["flapping"]


@admin.register(DataGap)
class DataGapAdmin(ReadOnly):
    list_display = ["customer", "start", "end"]
