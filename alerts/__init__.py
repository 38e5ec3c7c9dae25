"""Alerts, acknowledgements, availability and exports (issue 9).

Depends on portals and tokens; portals never imports it: it listens to portals.signals
(customers_refreshed, grid_loading, grid_loaded, customer_page_loaded).

- Alerts (alerts.services): after every refresh the engine observes the customer's status
  as the grid shows it (Stale counts as Unknown) and its top monitor groups. A new status
  alerts once it held ALERT_HOLD_REFRESHES refreshes (or a channel's own hold); the first
  observation is the baseline. Problems (Down, Critical, Trouble, Configuration Error,
  Stale) that are new or worse alert; a recovery goes to the channels that were told of the
  problem. Channels: email, a JSON webhook (optionally HMAC-signed), Slack (`text` +
  `blocks`), Teams (an Adaptive Card); routed by portals.CustomerGroup (no groups: every
  customer). Delivered by Celery (`alerts.tasks.deliver(delivery_id)`) with full-jitter
  retries; each attempt is logged (time, HTTP status, error) on the channel's page.
- Flapping: ALERT_FLAP_CHANGES observed changes within ALERT_FLAP_WINDOW flag the subject
  on the grid, hold its alerts and send one "flapping" and one "settled" notice.
- Acknowledgements (customer or group; optional expiry) sort a problem below the others,
  show who and when, and silence its alerts (a customer acknowledgement covers its groups).
  One ends by itself when its subject recovers (a non-problem status) or gets worse than
  acknowledged (judged when the change would alert with the global hold); an improvement
  that is still a problem keeps it. Mutes (maintenance) silence a customer until an end
  time. Both are audited (tokens.AuditAction ALERT_*), expiries by the minute's sweep.
- Site24x7-side trouble: when at least ALERT_UPSTREAM_MIN_CUSTOMERS and ALERT_UPSTREAM_RATIO
  of one data centre's recently refreshed customers last failed with a transient/upstream
  error, an incident opens: one banner on the grid, one notice, and those customers' Stale
  alerts are suppressed (logged as such); its end sends one "recovered" notice.
- Availability (alerts.availability): from portals.StatusChange; available = the
  AVAILABILITY_UP_STATUSES (Up); downtime = Down and Critical; Maintenance, Suspended,
  Discovery and time without fresh data (alerts.DataGap) are left out of the denominator,
  as Site24x7 leaves maintenance out. Per customer and group over 24 h / 7 d / 30 d on the
  customer page, as a grid column (?avail=24h|7d|30d), and as the monthly CSV report.
- "Since you last looked": alerts.UserSeen, written on full grid page loads (at most once a
  minute); customers whose worst status changed after the end of the user's previous visit
  (loads less than SEEN_VISIT_GAP apart are one visit) stand out until "mark all as seen".
- /metrics: Prometheus text format behind METRICS_TOKEN (bearer) or METRICS_ALLOWED_IPS.

Secrets: webhook URLs and signing secrets are sealed with tokens.services.secret_seal and
opened only by tokens.services.secret_open for the one request; pages show the last four
characters; errors are built from HTTP statuses and scrubbed response text, never from an
exception that could quote the URL; tasks carry delivery ids only. Key rotation:
`manage.py rotate_token_keys` (or `rotate_alert_secrets` alone)."""
