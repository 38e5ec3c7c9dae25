"""The grid, its live partial and JSON, the customer page, and the refresh/sync buttons.

Plain function views (healthchecks style): the access helper first, then one service or one
read-side builder (portals.queries, portals.detail). The page and the htmx partial render the
same fragment (`portals/_grid_live.html`)."""

import contextlib
import hashlib
import json
import re
from functools import wraps
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.cache import cache
from django.http import HttpResponse, JsonResponse
from django.shortcuts import redirect, render, resolve_url
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from msp_dashboard.gzip import gzip_page
from msp_dashboard.site24x7 import STATUS_SEVERITY
from tokens.access import client_ip

from . import services, signals
from .access import (
    PERM_CREDENTIALS,
    PERM_REFRESH,
    PERM_SYNC,
    AccessDenied,
    customers_for_user,
    denied,
    get_customer_for_user,
    require,
    require_dashboard,
    user_sees_all,
)
from .detail import build_customer_page
from .queries import (
    SORTS,
    GridFilters,
    build_grid,
    fill_times,
    status_label,
    time_marker,
    url_maker,
)

VERSION_MARKER = "\x00version\x00"
ROWS_MARKER = "\x00rows\x00"
ROWS_ATTRS_MARKER = "\x00rows-attrs\x00"


def poll_seconds() -> int:
    """How often the grid's rows re-render while visible (GRID_POLL_SECONDS, default 5)."""
    return int(getattr(settings, "GRID_POLL_SECONDS", 5))


def login_required_htmx(view):
    """`login_required`, except that an htmx request from a logged-out browser (an expired
    session on a wall screen) sends the whole page to the login form instead of swapping
    the login form into the grid."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if request.user.is_authenticated:
            return view(request, *args, **kwargs)
        if request.htmx:
            current = urlsplit(request.htmx.current_url or "/")
            here = current.path + (f"?{current.query}" if current.query else "")
            response = HttpResponse(status=204)
            login = resolve_url(settings.LOGIN_URL)
            response["HX-Redirect"] = f"{login}?{urlencode({'next': here})}"
            return response
        return redirect_to_login(request.get_full_path())

    return wrapper


# --- the grid ----------------------------------------------------------------------------


def _load_grid(request):
    filters = GridFilters.from_query(request.GET)
    now = timezone.now()
    # Other apps (alerts) annotate rows and add banners through portals.signals.
    annotate = signals.grid_annotator(request=request, filters=filters, now=now)
    grid = build_grid(
        filters=filters, base=customers_for_user(request.user), now=now, annotate=annotate
    )
    signals.grid_loaded.send(sender="portals", request=request, grid=grid)
    return grid


def _url_pattern(name: str, placeholder: str) -> str:
    """The URL `name` with `placeholder` where its one integer goes, or "" if the URL does not
    exist (its menu item is then left out)."""
    maker = url_maker(name)
    return maker(placeholder) if maker else ""


def _menu(request) -> dict:
    """The row menu's URL patterns, filled in by static/js/app.js when a menu opens (one menu
    template per page instead of one menu per row in every poll)."""
    can_refresh = request.user.has_perm(PERM_REFRESH)
    can_credentials = request.user.has_perm(PERM_CREDENTIALS)
    can_sync = request.user.has_perm(PERM_SYNC) and user_sees_all(request.user)
    menu = {"refresh": "", "create": "", "import": "", "revoke": ""}
    if can_refresh:
        menu["refresh"] = _url_pattern("portals:customer-refresh", "{pk}")
    if can_credentials:
        menu["create"] = _url_pattern("tokens:create", "{pk}")
        menu["import"] = _url_pattern("tokens:import", "{pk}")
        menu["revoke"] = _url_pattern("tokens:revoke", "{token}")
    return {
        "can_refresh": can_refresh,
        "can_credentials": can_credentials,
        "can_sync": can_sync,
        "menu": menu,
    }


def _with_query(name: str, query: str) -> str:
    path = reverse(name)
    return f"{path}?{query}" if query else path


def _grid_context(request, grid) -> dict:
    filters = grid.filters
    query = filters.querystring()
    return {
        "grid": grid,
        "filters": filters,
        "summary": grid.summary,
        "rows": grid.rows,
        "poll_seconds": poll_seconds(),
        "rows_url": _with_query("portals:grid-rows", query),
        "page_url": _with_query("portals:grid", query),
        "json_url": _with_query("portals:grid-json", query),
        "wall_url": _with_query(
            "portals:grid", filters.querystring(wall=None if filters.wall else 1)
        ),
        "clear_url": _with_query(
            "portals:grid", filters.querystring(status=None, q=None, problems=None)
        ),
        "sorts": SORTS,
        "status_options": _status_options(filters),
        "refresh_interval": settings.REFRESH_INTERVAL,
        "served_at": time_marker("n"),
        "version": VERSION_MARKER,
        "rows_html": ROWS_MARKER,
        "rows_attrs": ROWS_ATTRS_MARKER,
        **_menu(request),
    }


def _status_options(filters) -> list[tuple[str, str, bool]]:
    """(value, label, selected) for the status select; a bookmarked multi-status filter
    shows as one extra option."""
    chosen = [s for s in STATUS_SEVERITY if s in filters.statuses]
    options = [("", "All statuses", not chosen)]
    options += [
        (s.slug, status_label(s, customer_level=True), chosen == [s]) for s in STATUS_SEVERITY
    ]
    if len(chosen) > 1:
        label = ", ".join(status_label(s, customer_level=True) for s in chosen)
        options.append((",".join(s.slug for s in chosen), label, True))
    return options


@login_required
@require_GET
@gzip_page
@never_cache
def grid(request):
    """The cross-customer grid, worst first."""
    require_dashboard(request)
    grid = _load_grid(request)
    context = _grid_context(request, grid)
    outer, version = _render_live(request, context, grid)
    live = _complete(outer, version, grid)
    _remember_rows(version, grid)
    context["live"] = mark_safe(live)  # noqa: S308 - rendered above
    return render(request, "portals/grid.html", context)


@login_required_htmx
@require_GET
@gzip_page
@never_cache
def grid_rows(request):
    """The live part of the grid (summary and rows): what the page polls every few seconds."""
    require_dashboard(request)
    grid = _load_grid(request)
    context = _grid_context(request, grid)
    outer, version = _render_live(request, context, grid)
    held = request.headers.get("X-Grid-Version", "")
    if held == version:
        # The page already shows exactly this (its clock texts tick in the browser): nothing
        # to send, nothing to swap. The version is a digest of what this request read.
        response = HttpResponse(status=204)
    else:
        # Only the rows that differ from what the page holds, when we know what it holds.
        known = _rows_of(held, grid) if held else None
        response = HttpResponse(_complete(outer, version, grid, known=known, base=held))
        _remember_rows(version, grid)
    response["X-Grid-Version"] = version
    if request.htmx:
        response["HX-Replace-Url"] = context["page_url"]
    return response


def _render_live(request, context, grid) -> tuple[str, str]:
    """The live fragment without its rows, and its version: a digest of that markup (clock
    texts as markers) and of every row's markup digest, so equal versions mean equal content
    (the summary, every row in order, the filters)."""
    outer = render_to_string("portals/_grid_live.html", context, request)
    digest = hashlib.blake2b(outer.encode(), digest_size=16)
    digest.update(grid.rows_digest.encode())
    return outer, digest.hexdigest()


def _complete(outer: str, version: str, grid, *, known=None, base: str = "") -> str:
    """The fragment with its version, its rows and the clock texts of this response. With
    `known` (the row digests of the version `base` the page holds): only the rows that
    changed, and the order of all (static/js/app.js keeps the others from the page)."""
    if known is None:
        rows, attrs = grid.rows_html, ""
    else:
        rows = grid.changed_rows_html(known)
        attrs = f' data-base="{base}" data-order="{grid.rows_order}"'
    live = outer.replace(VERSION_MARKER, version).replace(ROWS_ATTRS_MARKER, attrs)
    return fill_times(live.replace(ROWS_MARKER, rows), grid.now)


ROWS_SEEN_SECONDS = 600


def _rows_key(version: str) -> str:
    return f"grid-rows:{version}"


def _remember_rows(version: str, grid) -> None:
    """What the rows of `version` are ("id:digest,…"), for the next polls of the pages that
    show it. The cache is a help, never a need: without it every poll gets every row."""
    with contextlib.suppress(Exception):
        cache.add(_rows_key(version), grid.rows_digest, ROWS_SEEN_SECONDS)


def _rows_of(version: str, grid) -> dict[str, str] | None:
    """{customer id: digest} of the rows a page with `version` shows, if remembered."""
    if not re.fullmatch(r"[0-9a-f]{32}", version):
        return None
    try:
        seen = cache.get(_rows_key(version))
    except Exception:  # a cache that is down: send every row
        return None
    if not seen:
        return None
    return dict(pair.split(":", 1) for pair in seen.split(","))


@login_required
@require_GET
@gzip_page
@never_cache
def grid_json(request):
    """The same rows for scripts and wall screens, with the same filters and sort."""
    require_dashboard(request)
    grid = _load_grid(request)
    return JsonResponse(grid.as_json())


# --- the customer page -----------------------------------------------------------------------


@login_required_htmx
@require_GET
@never_cache
def customer(request, pk):
    customer = get_customer_for_user(request, pk)
    page = build_customer_page(customer)
    signals.customer_page_loaded.send(sender="portals", request=request, page=page)
    can_credentials = request.user.has_perm(PERM_CREDENTIALS)
    context = {
        "page": page,
        "customer": customer,
        "can_refresh": request.user.has_perm(PERM_REFRESH),
        "can_credentials": can_credentials,
        "token_urls": _token_urls(customer, page.credentials) if can_credentials else {},
    }
    return render(request, "portals/customer.html", context)


def _token_urls(customer, credentials) -> dict:
    """The vault's URLs for this page; a URL the vault does not have hides its button."""
    per_customer = ("create", "import", "customer")
    per_credential = ("revoke", "forget", "test")
    makers = {name: url_maker(f"tokens:{name}") for name in per_customer + per_credential}
    for cred in credentials:
        cred.urls = {name: makers[name](cred.pk) for name in per_credential if makers[name]}
    urls = {name: makers[name](customer.pk) for name in per_customer if makers[name]}
    with contextlib.suppress(NoReverseMatch):
        urls["list"] = reverse("tokens:list")
    return urls


# --- buttons ---------------------------------------------------------------------------------


def _done(request, message: str, *, level=messages.SUCCESS):
    """After a button: htmx gets 204 with events (rows reload, a toast); a plain form post
    is redirected back where it came from, with the message."""
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Trigger"] = json.dumps(
            {"rows-changed": True, "toast": {"message": message, "level": level}}
        )
        return response
    messages.add_message(request, level, message)
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("portals:grid")
    return redirect(target)


@login_required
@require_POST
def customer_refresh(request, pk):
    """Refresh one customer now (queued to a worker; the grid shows the result when it lands)."""
    customer = get_customer_for_user(request, pk, perm=PERM_REFRESH)
    result = services.customer_refresh_now(customer_id=customer.pk, actor=request.user)
    level = messages.SUCCESS if result.queued else messages.ERROR
    return _done(request, result.message, level=level)


@login_required
@require_POST
def sync(request):
    """Read every MSP identity's customer list again (new customers appear, gone ones leave)."""
    require(request, PERM_SYNC)
    if not user_sees_all(request.user):
        denied(request, "sync needs an unlimited customer scope")
        raise AccessDenied
    reports = services.customers_sync_all(actor=request.user, ip=client_ip(request))
    message, ok = _sync_message(reports)
    return _done(request, message, level=messages.SUCCESS if ok else messages.ERROR)


def _sync_message(reports) -> tuple[str, bool]:
    if not reports:
        return "No MSP identity to sync with: connect one under Credentials.", False
    totals = {"created": 0, "deactivated": 0, "reactivated": 0, "updated": 0}
    for report in reports:
        for key in totals:
            totals[key] += getattr(report.result, key, 0) if report.result else 0
    changes = ", ".join(f"{n} {key}" for key, n in totals.items() if n) or "no change"
    failed = [f"{r.label}: {r.error}" for r in reports if r.error]
    if failed:
        return f"Customers synced ({changes}); failed: {'; '.join(failed)}", False
    return f"Customers synced: {changes}.", True
