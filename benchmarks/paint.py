"""Time until the grid is painted in Chromium, and what a poll costs the page (issue 7).

    .venv/bin/python benchmarks/paint.py --customers 1000 --groups 10
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python benchmarks/paint.py

Seeds the grid benchmark's database (benchmarks/grid.py), serves it with gunicorn (as
benchmarks/load.py does), logs in with Playwright driving Debian's Chromium (/usr/bin/chromium,
--no-sandbox --disable-gpu --disable-background-networking, 1440x900), then loads the grid
--loads times (the first load of each gunicorn worker renders every row; later ones find them
in the row cache) and reads the browser's own timing: navigation start to first contentful
paint (`fcp_ms`), to largest contentful paint (`lcp_ms`, PerformanceObserver), to
DOMContentLoaded and to the load event (`load_ms`); the server's part is `ttfb_ms`.

Then, scrolled to the middle of the grid, it measures polls: `poll_unchanged_ms` (the page
sends its version, the server answers 204, nothing is swapped) and `poll_changed_ms` (one
customer refreshed through portals.services.customer_store_groups before the poll, so the
answer is 200 and app.js replaces the changed row in place; `poll_changed_deltas` counts the
answers that carried only the changed rows), each from the request to the page being
updated; `scroll_moved_px` and `cls` (the layout-shift sum) over those polls must be 0.
The last line is one JSON object."""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

TIMING = """() => new Promise(resolve => {
  let lcp = 0;
  new PerformanceObserver(list => {
    for (const e of list.getEntries()) lcp = Math.max(lcp, e.startTime);
  }).observe({type: 'largest-contentful-paint', buffered: true});
  setTimeout(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const fcp = performance.getEntriesByName('first-contentful-paint')[0];
    resolve({
      ttfb_ms: nav.responseStart, response_end_ms: nav.responseEnd,
      dcl_ms: nav.domContentLoadedEventEnd, load_ms: nav.loadEventEnd,
      fcp_ms: fcp ? fcp.startTime : null, lcp_ms: lcp || null,
      transfer_bytes: nav.transferSize, rows: document.querySelectorAll('#rows .row').length,
    });
  }, 300);
})"""

WATCH = """() => {
  window.__cls = 0;
  new PerformanceObserver(list => {
    for (const e of list.getEntries()) if (!e.hadRecentInput) window.__cls += e.value;
  }).observe({type: 'layout-shift', buffered: false});
  window.__polls = [];
  document.addEventListener('htmx:beforeRequest', e => {
    if (e.detail.elt.id === 'grid-live') window.__t0 = performance.now();
  });
  document.addEventListener('htmx:afterRequest', e => {
    if (e.detail.elt.id !== 'grid-live') return;
    const status = e.detail.xhr.status;
    const delta = e.detail.xhr.responseText.includes(' data-order="');
    const bytes = e.detail.xhr.responseText.length;
    // app.js patches the rows inside htmx:beforeSwap, before afterRequest: the page is updated.
    requestAnimationFrame(() => window.__polls.push(
      {status, delta, bytes, ms: performance.now() - window.__t0}));
  });
}"""

POLL = """async () => {
  const n = window.__polls.length;
  htmx.trigger(document.getElementById('grid-live'), 'live-poll');
  const deadline = performance.now() + 30000;
  while (window.__polls.length === n) {
    if (performance.now() > deadline) throw new Error('no poll answered in 30 s');
    await new Promise(r => setTimeout(r, 10));
  }
  return window.__polls[n];
}"""


ON_SCREEN_DOWN = """() => [...document.querySelectorAll('#rows .row[data-status=down]')]
  .filter(r => { const b = r.getBoundingClientRect(); return b.top > 0 && b.bottom < innerHeight; })
  .map(r => Number(r.dataset.customer))"""


def refresh_one(pk: int, flip: bool) -> None:
    """One customer refreshed through the real write path: its first Up group turns Trouble
    (or, with `flip` False, that Trouble group turns Up again). Its worst status, Down, and so
    its place in the grid stay as they are."""
    from django.utils import timezone

    from msp_dashboard.site24x7 import GroupStatus, Status
    from portals.models import MonitorGroup
    from portals.services import customer_store_groups

    groups = [
        GroupStatus(
            g.group_id,
            g.name,
            Status(g.status) if g.status >= 0 else Status.UP,
            g.monitors,
            g.error_monitors,
            g.top_group,
        )  # fmt: skip
        for g in MonitorGroup.objects.filter(customer_id=pk).order_by("group_id")
    ]
    old, new = (Status.UP, Status.TROUBLE) if flip else (Status.TROUBLE, Status.UP)
    i = next((i for i, g in enumerate(groups) if g.status is old and g.top_group), None)
    if i is not None:
        g = groups[i]
        groups[i] = GroupStatus(g.group_id, g.name, new, g.monitors, 1 if flip else 0, True)
    customer_store_groups(customer_id=pk, groups=groups, started=timezone.now())


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers")
    parser.add_argument("--threads", type=int, default=1, help="gunicorn threads a worker")
    parser.add_argument("--loads", type=int, default=6)
    parser.add_argument("--polls", type=int, default=5, help="of each kind")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    # Playwright's sync API runs an event loop in this thread; the few ORM writes between
    # browser steps are synchronous and safe.
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop gunicorn on the way out
    from benchmarks import grid as g
    from benchmarks._common import emit, machine, say
    from benchmarks.load import Gunicorn, make_user

    url = g.configure()
    g.prepare_database(url)
    from django.db import connection

    g.empty_database()
    g.seed(args.customers, args.groups)
    make_user()
    server = Gunicorn(workers=args.workers, threads=args.threads, log_name="gunicorn-paint.log")
    say(f"paint: {args.customers} x {args.groups}; gunicorn x {args.workers} {server.url}; "
        f"database {url}")  # fmt: skip
    try:
        figures = measure(server.url, args)
    finally:
        server.stop()
    figures.update(benchmark="paint", database=connection.vendor, database_url=url,
                   machine=machine(), customers=args.customers, groups=args.groups,
                   workers=args.workers)  # fmt: skip
    emit(figures)
    ok = figures["fcp_ms"]["p50"] is not None and figures["scroll_moved_px"] == 0
    return 0 if ok and figures["cls"] == 0 else 1


def measure(base: str, args) -> dict:
    from playwright.sync_api import sync_playwright

    from benchmarks._common import say
    from benchmarks.load import PASSWORD, USERNAME

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_context(viewport={"width": 1440, "height": 900}).new_page()
        page.goto(f"{base}/login/")
        page.fill("#id_username", USERNAME)
        page.fill("#id_password", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_selector("#grid-live", timeout=60_000)
        loads = []
        for i in range(args.loads):
            page.goto(f"{base}/", wait_until="load", timeout=60_000)
            loads.append(page.evaluate(TIMING))
            say(f"  load {i + 1}: " + ", ".join(f"{k} {v:.0f}" for k, v in loads[-1].items() if v))
        polls = watch_polls(page, args.polls)
        browser.close()
    figures = {
        key: summary([load[key] for load in loads])
        for key in ("ttfb_ms", "fcp_ms", "lcp_ms", "dcl_ms", "load_ms")
    }
    figures.update(polls, rows=loads[-1]["rows"], transfer_bytes=loads[-1]["transfer_bytes"],
                   loads=loads)  # fmt: skip
    for key in ("ttfb_ms", "fcp_ms", "lcp_ms", "dcl_ms", "load_ms"):
        say(f"{key:8} p50 {figures[key]['p50']} ms  max {figures[key]['max']} ms")
    say(f"poll unchanged {polls['poll_unchanged_ms']} ms, changed {polls['poll_changed_ms']} ms, "
        f"scroll moved {polls['scroll_moved_px']} px, CLS {polls['cls']}")  # fmt: skip
    return figures


def watch_polls(page, n: int) -> dict:
    """Scrolled to the middle: n polls with nothing changed, n with one customer refreshed."""
    from portals.models import Customer

    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight / 2)")
    page.wait_for_timeout(500)
    page.evaluate(WATCH)
    y0 = page.evaluate("window.scrollY")
    unchanged = [page.evaluate(POLL) for _ in range(n)]
    changed = []
    # Refresh customers whose rows are on screen, Down staying Down (no reordering).
    visible = page.evaluate(ON_SCREEN_DOWN)
    targets = visible or list(Customer.objects.values_list("pk", flat=True)[:n])
    for i in range(n):
        refresh_one(targets[(i // 2) % len(targets)], flip=i % 2 == 0)
        changed.append(page.evaluate(POLL))
    moved = page.evaluate("window.scrollY") - y0
    return {
        "poll_unchanged_ms": summary([p["ms"] for p in unchanged]),
        "poll_unchanged_status": sorted({p["status"] for p in unchanged}),
        "poll_changed_ms": summary([p["ms"] for p in changed]),
        "poll_changed_status": sorted({p["status"] for p in changed}),
        "poll_changed_deltas": sum(1 for p in changed if p["delta"]),
        "poll_changed_raw_bytes": summary([p["bytes"] for p in changed]),
        "scroll_moved_px": moved,
        "cls": round(page.evaluate("window.__cls"), 4),
    }


def summary(values: list) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"p50": None, "max": None, "all": []}
    return {
        "p50": round(statistics.median(values), 1),
        "max": round(max(values), 1),
        "all": [round(v, 1) for v in values],
    }


if __name__ == "__main__":
    raise SystemExit(main())
