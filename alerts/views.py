"""Alerts views: thin, function-based; the access helper first, then one service.

Every state change is a POST with a CSRF token. The acknowledge and mute forms work as full
pages and, for htmx, as fragments the grid opens in its dialog; after a success htmx gets a
short fragment and the dialog's "done" event (`credentials-changed`, the name app.js gives
it: the dialog closes, the rows reload, a toast says what happened)."""

from __future__ import annotations

import json
import logging

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, Max, Q
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from prometheus_client import CONTENT_TYPE_LATEST

from portals.access import client_ip
from portals.detail import build_customer_page
from portals.queries import GridFilters, build_grid

from . import availability, exports, metrics, services
from .access import (
    PERM_ACK,
    PERM_CHANNELS,
    customers_for_user,
    get_channel_for_user,
    get_customer_for_user,
    get_customer_to_acknowledge,
    get_silence_for_user,
    require_channel_manager,
    require_dashboard,
)
from .forms import AcknowledgeForm, ChannelForm, MuteForm
from .models import AlertChannel, AlertEvent, Delivery, Silence, UpstreamIncident
from .overlay import AVAIL_PARAM, customer_panel, grid_annotator

logger = logging.getLogger("alerts")
DONE_EVENT = "credentials-changed"  # the dialog's "done" event in static/js/app.js
GET_POST = require_http_methods(["GET", "POST"])


def _who(request) -> dict:
    return {"actor": request.user, "ip": client_ip(request)}


def _render(request, fragment: str, context: dict, status: int = 200):
    """The fragment alone for htmx (the dialog), else the full page around it."""
    if request.htmx:
        return render(request, fragment, context, status=status)
    return render(request, "alerts/page.html", {**context, "fragment": fragment}, status=status)


def _back(request, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


def _done(request, message: str, to: str, *, ok: bool = True):
    if request.htmx:
        response = render(request, "alerts/_done.html", {"message": message, "ok": ok})
        response["HX-Trigger"] = DONE_EVENT
        return response
    (messages.success if ok else messages.error)(request, message)
    return redirect(to)


# --- the alerts page -----------------------------------------------------------------------------


@require_GET
@never_cache
@login_required
def home(request):
    """Open incidents, active acknowledgements and mutes, recent alerts; channels for admins."""
    require_dashboard(request)
    visible = customers_for_user(request.user)
    now = timezone.now()
    silences = [
        s
        for s in Silence.objects.filter(ended_at__isnull=True, customer__in=visible)
        .select_related("customer")
        .order_by("customer__name", "group_name")
        if s.is_active(now)
    ]
    events = (
        AlertEvent.objects.filter(Q(customer__in=visible) | Q(customer__isnull=True))
        .exclude(kind="test")
        .annotate(sent=Count("deliveries", filter=Q(deliveries__state="sent")))
        .order_by("-at", "-id")[:50]
    )
    can_channels = request.user.has_perm(PERM_CHANNELS)
    channels = []
    if can_channels:
        channels = AlertChannel.objects.prefetch_related("customer_groups").annotate(
            last_delivery=Max("deliveries__created_at"),
            failed=Count("deliveries", filter=Q(deliveries__state="failed")),
        )
    context = {
        "incidents": UpstreamIncident.objects.filter(ended_at__isnull=True),
        "silences": silences,
        "events": events,
        "channels": channels,
        "can_channels": can_channels,
        "can_ack": request.user.has_perm(PERM_ACK),
        "hold": settings.ALERT_HOLD_REFRESHES,
    }
    return render(request, "alerts/home.html", context)


# --- channels ------------------------------------------------------------------------------------


@sensitive_post_parameters("url", "signing_secret")
@GET_POST
@never_cache
@login_required
def channel_new(request):
    require_channel_manager(request)
    return _channel_form(request, AlertChannel())


@sensitive_post_parameters("url", "signing_secret")
@GET_POST
@never_cache
@login_required
def channel_edit(request, pk):
    channel = get_channel_for_user(request, pk)
    return _channel_form(request, channel)


def _channel_form(request, channel: AlertChannel):
    form = ChannelForm(request.POST or None, instance=channel)
    if request.method == "POST" and form.is_valid():
        channel = form.save(commit=False)
        try:
            services.channel_save(
                channel=channel,
                groups=form.cleaned_data["customer_groups"],
                url=form.new_url(),
                signing_secret=form.new_signing_secret(),
                **_who(request),
            )
        except services.AlertsError as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, f"Channel {channel.name} saved.")
            return redirect("alerts:channel", pk=channel.pk)
    status = 400 if form.errors else 200
    return render(
        request, "alerts/channel_form.html", {"form": form, "channel": channel}, status=status
    )


@require_GET
@never_cache
@login_required
def channel_detail(request, pk):
    """The channel and its delivery log (attempts, HTTP status, error, time)."""
    channel = get_channel_for_user(request, pk)
    deliveries = (
        Delivery.objects.filter(channel=channel)
        .select_related("event")
        .prefetch_related("attempt_log")
        .order_by("-created_at", "-id")
    )
    page = Paginator(deliveries, 50).get_page(request.GET.get("page"))
    return render(request, "alerts/channel_detail.html", {"channel": channel, "page": page})


@GET_POST
@never_cache
@login_required
def channel_delete(request, pk):
    channel = get_channel_for_user(request, pk)
    if request.method == "POST":
        name = channel.name
        services.channel_delete(channel=channel, **_who(request))
        messages.success(request, f"Channel {name} deleted.")
        return redirect("alerts:home")
    return render(request, "alerts/channel_delete.html", {"channel": channel})


@require_POST
@login_required
def channel_test(request, pk):
    channel = get_channel_for_user(request, pk)
    services.channel_send_test(channel=channel, **_who(request))
    message = f"Test message to {channel.name} queued: the delivery log below shows how it went."
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Trigger"] = json.dumps({"toast": {"message": message, "level": 25}})
        return response
    messages.success(request, message)
    return redirect("alerts:channel", pk=channel.pk)


# --- acknowledgements and mutes ------------------------------------------------------------------


@GET_POST
@never_cache
@login_required
def acknowledge(request, pk):
    customer = get_customer_to_acknowledge(request, pk)
    page = build_customer_page(customer)
    problems = [c for c in page.top_groups + page.subgroups if c.problem]
    form = AcknowledgeForm(
        request.POST or None, groups=problems, initial={"group_id": request.GET.get("group", "")}
    )
    if request.method == "POST" and form.is_valid():
        try:
            ack = services.silence_acknowledge(
                customer=customer,
                group_id=form.cleaned_data["group_id"],
                note=form.cleaned_data["note"],
                expires_at=form.expires_at(),
                **_who(request),
            )
        except services.AlertsError as exc:
            form.add_error(None, str(exc))
        else:
            what = f"{customer.name} / {ack.group_name}" if ack.group_id else customer.name
            return _done(request, f"Acknowledged {what}.", _back(request, _customer_url(customer)))
    context = {"form": form, "customer": customer, "page": page, "next": _back(request, "")}
    return _render(request, "alerts/_ack_form.html", context, 400 if form.errors else 200)


@GET_POST
@never_cache
@login_required
def mute(request, pk):
    customer = get_customer_to_acknowledge(request, pk)
    form = MuteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            silence = services.silence_mute(
                customer=customer,
                until=form.end_time(),
                note=form.cleaned_data["note"],
                **_who(request),
            )
        except services.AlertsError as exc:
            form.add_error(None, str(exc))
        else:
            until = timezone.localtime(silence.expires_at).strftime("%Y-%m-%d %H:%M")
            message = f"{customer.name} muted until {until}."
            return _done(request, message, _back(request, _customer_url(customer)))
    context = {"form": form, "customer": customer, "next": _back(request, "")}
    return _render(request, "alerts/_mute_form.html", context, 400 if form.errors else 200)


@require_GET
@never_cache
@login_required
def customer_alerts(request, pk):
    """The customer page's alerts panel (loaded by the page on its own): acknowledgements,
    mute, flapping and availability over 24 h, 7 and 30 days."""
    customer = get_customer_for_user(request, pk)
    return render(request, "alerts/_customer_panel.html", customer_panel(request, customer))


@require_POST
@login_required
def silence_end(request, pk):
    silence = get_silence_for_user(request, pk)
    back = _back(request, _customer_url(silence.customer))
    try:
        services.silence_end(silence=silence, **_who(request))
    except services.AlertsError as exc:
        return _done(request, str(exc), back, ok=False)
    word = "Acknowledgement cleared" if silence.kind == "ack" else "Mute ended"
    return _done(request, f"{word} for {silence.customer.name}.", back)


def _customer_url(customer) -> str:
    return reverse("portals:customer", args=[customer.pk])


@require_POST
@login_required
def seen_touch(request):
    """The grid page, once shown, records the visit for "since you last looked" (the GET
    that served it changed nothing: SEC-03)."""
    require_dashboard(request)
    services.user_seen_touch(user=request.user)
    return HttpResponse(status=204)


@require_POST
@login_required
def mark_seen(request):
    """ "Mark all as seen": nothing that changed before now stands out any more."""
    require_dashboard(request)
    services.user_mark_seen(user=request.user)
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Trigger"] = "rows-changed"
        return response
    return redirect(_back(request, reverse("portals:grid")))


# --- exports and availability --------------------------------------------------------------------


def _log_export(request, what: str, query: str) -> None:
    """Exports are logged, not audited: a GET writes no row (SEC-03)."""
    logger.info(
        "export %s by %r ip=%s%s",
        what,
        request.user.get_username(),
        client_ip(request),
        f" ({query})" if query else "",
    )


def _csv(content: str, name: str) -> HttpResponse:
    response = HttpResponse(content, content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    return response


@require_GET
@login_required
def grid_csv(request):
    """The grid as filtered and sorted on screen, one line per customer."""
    require_dashboard(request)
    filters = GridFilters.from_query(request.GET)
    now = timezone.now()
    grid = build_grid(
        filters=filters,
        base=customers_for_user(request.user),
        now=now,
        annotate=grid_annotator(request, filters, now),
    )
    period = request.GET.get(AVAIL_PARAM, "")
    period = period if period in availability.PERIODS else ""
    content = exports.grid_csv(grid, user=request.user, period_key=period)
    query = filters.querystring()
    _log_export(request, f"grid CSV, {len(grid.rows)} customers", query)
    return _csv(content, exports.filename("customers"))


def _report(request):
    period = availability.period_from(request.GET)
    groups = request.GET.get("groups", "1") != "0"
    customers = (
        customers_for_user(request.user)
        .filter(is_active=True)
        .only("pk", "name", "data_centre", "data_fetched_at", "last_success_at")
    )
    return period, groups, availability.report(customers, period, groups=groups)


@require_GET
@never_cache
@login_required
def availability_page(request):
    require_dashboard(request)
    period, groups, rows = _report(request)
    query = request.GET.urlencode()
    context = {
        "period": period,
        "groups": groups,
        "rows": rows,
        "periods": availability.PERIOD_LABELS,
        "csv_url": reverse("alerts:availability-csv") + (f"?{query}" if query else ""),
        "month": request.GET.get("month", timezone.localtime().strftime("%Y-%m")),
        "up_statuses": ", ".join(s.label for s in availability.available_statuses()),
    }
    return render(request, "alerts/availability.html", context)


@require_GET
@login_required
def availability_csv(request):
    require_dashboard(request)
    period, groups, rows = _report(request)
    _log_export(request, f"availability CSV, {period.label}, {len(rows)} lines", "")
    stem = "availability-" + period.key.replace(":", "-")
    return _csv(exports.availability_csv(rows, period), exports.filename(stem))


# --- /metrics ------------------------------------------------------------------------------------


@require_GET
@never_cache
def prometheus_metrics(request):
    """Prometheus text format; no login: METRICS_TOKEN (Authorization: Bearer) or an address
    in METRICS_ALLOWED_IPS. Denials are logged (without what was sent)."""
    if not metrics.allowed(request):
        logger.warning("metrics denied ip=%s", client_ip(request))
        status = 401 if settings.METRICS_TOKEN else 403
        response = HttpResponse("Forbidden\n", status=status, content_type="text/plain")
        if settings.METRICS_TOKEN:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(metrics.render(), content_type=CONTENT_TYPE_LATEST)
