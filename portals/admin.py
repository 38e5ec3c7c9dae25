"""Admin for customers, groups and status history: read-mostly.

Customers come from the sync and their status from the refresh, so nothing here is typed in;
the admin filters, searches, deletes (audited) and queues a refresh."""

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.models import User
from django.db.models import Count

from tokens.models import AuditAction
from tokens.services import audit_record

from .models import Customer, CustomerGroup, MonitorGroup, StatusChange, UserScope
from .services import customer_refresh_now


class ReadOnlyMixin:
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


class MonitorGroupInline(ReadOnlyMixin, admin.TabularInline):
    model = MonitorGroup
    extra = 0
    can_delete = False
    fields = ["name", "group_id", "status", "monitors", "error_monitors", "top_group",
              "status_since"]  # fmt: skip
    readonly_fields = fields
    show_change_link = False


@admin.register(Customer)
class CustomerAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["name", "auth_generation", "data_centre", "is_active", "worst_status",
                    "data_fetched_at", "last_error_kind", "consecutive_failures", "paused_until",
                    "throttled_until"]  # fmt: skip
    list_filter = ["is_active", "auth_generation", "data_centre", "last_error_kind",
                   "worst_status"]  # fmt: skip
    search_fields = ["name", "portal_id", "zaid", "zaaid"]
    list_select_related = ["msp_credential"]
    inlines = [MonitorGroupInline]
    actions = ["refresh_now"]
    fieldsets = [
        (None, {"fields": ["name", "data_centre", "auth_generation", "msp_credential",
                           "is_active", "discovered_at", "deactivated_at"]}),
        ("Site24x7 identifiers", {"fields": ["portal_id", "zaid", "zaaid", "user_id"]}),
        ("Last refresh", {"fields": ["worst_status", "worst_status_since", "data_fetched_at",
                                     "last_success_at", "last_attempt_at", "last_duration",
                                     "last_error_kind", "last_error"]}),
        ("Back-pressure", {"fields": ["consecutive_failures", "breaker_trips", "paused_until",
                                      "throttled_until", "lease_until", "refresh_enqueued_at"]}),
    ]  # fmt: skip

    @admin.action(description="Refresh now", permissions=["refresh"])
    def refresh_now(self, request, queryset):
        for customer in queryset:
            result = customer_refresh_now(customer_id=customer.pk, actor=request.user)
            level = messages.SUCCESS if result.queued else messages.WARNING
            self.message_user(request, result.message, level)

    def has_refresh_permission(self, request):
        return request.user.has_perm("portals.refresh_customer")

    def delete_model(self, request, obj):
        _audit_delete(request, obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for customer in queryset:
            _audit_delete(request, customer)
        super().delete_queryset(request, queryset)


def _audit_delete(request, customer):
    audit_record(
        action=AuditAction.CUSTOMER_DELETE,
        actor=request.user,
        ip=request.META.get("REMOTE_ADDR"),
        customer=customer,
        detail="deleted in the admin",
    )


@admin.register(MonitorGroup)
class MonitorGroupAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["name", "customer", "status", "monitors", "error_monitors", "top_group",
                    "status_since"]  # fmt: skip
    list_filter = ["status", "top_group"]
    search_fields = ["name", "group_id", "customer__name"]
    list_select_related = ["customer"]

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(StatusChange)
class StatusChangeAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ["at", "customer", "group_name", "from_status", "to_status"]
    list_filter = ["to_status", "at"]
    search_fields = ["customer__name", "group_name", "group_id"]
    list_select_related = ["customer"]
    date_hierarchy = "at"

    def has_delete_permission(self, request, obj=None):
        return False


# --- Customer groups and user scopes (issue 6) --------------------------------------------------


@admin.register(CustomerGroup)
class CustomerGroupAdmin(admin.ModelAdmin):
    list_display = ["name", "description", "customer_count"]
    search_fields = ["name", "customers__name"]
    filter_horizontal = ["customers"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(n_customers=Count("customers"))

    @admin.display(description="Customers", ordering="n_customers")
    def customer_count(self, obj):
        return obj.n_customers


class UserScopeInline(admin.StackedInline):
    model = UserScope
    can_delete = True
    filter_horizontal = ["groups"]
    verbose_name_plural = (
        "Customer scope (no scope, or 'all customers': every customer; else only these groups)"
    )


admin.site.unregister(User)


@admin.register(User)
class ScopedUserAdmin(UserAdmin):
    """The stock user admin plus the customer scope; roles are the Groups field."""

    inlines = [*UserAdmin.inlines, UserScopeInline]
