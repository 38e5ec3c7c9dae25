"""Settings for msp_dashboard: one file, every value from the environment (django-environ).

`.env` is read when present. Secrets have no defaults outside the demo and the tests, where
they are generated once into `var/` (git ignores it)."""

import os
import secrets
import sys
from pathlib import Path

import environ
from cryptography.fernet import Fernet

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

VAR_DIR = Path(env("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

TESTING = "pytest" in sys.modules
DEMO = env.bool("DEMO", default=False)
DEBUG = env.bool("DEBUG", default=False)


def _generated_secret(name: str, make) -> str:
    """A secret kept under var/ for the demo and the tests; never used in production."""
    path = VAR_DIR / name
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


_LOCAL = DEMO or TESTING or DEBUG
SECRET_KEY = env("SECRET_KEY", default=None)
if not SECRET_KEY and _LOCAL:
    SECRET_KEY = _generated_secret("secret_key", lambda: secrets.token_urlsafe(50))
# FIELD_ENCRYPTION_KEYS: comma-separated Fernet keys, first is primary. A missing or bad value
# stops start-up through a system check (tokens/checks.py), not here, so the message is clear.
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])
# Production may keep the keys in a file readable by the service user only (mode 0400),
# one key per line or comma-separated, instead of the environment.
if _keys_file := env("FIELD_ENCRYPTION_KEYS_FILE", default=""):
    FIELD_ENCRYPTION_KEYS = Path(_keys_file).read_text().replace(",", " ").split()
if not FIELD_ENCRYPTION_KEYS and _LOCAL:
    FIELD_ENCRYPTION_KEYS = [
        _generated_secret("field_encryption_key", lambda: Fernet.generate_key().decode())
    ]

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "django_htmx",
    "tokens",
    "portals",
    "alerts",  # issue 9: alerts, acknowledgements, availability, exports, /metrics
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "msp_dashboard.urls"
WSGI_APPLICATION = "msp_dashboard.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker threads and beat share one file: WAL, a busy timeout, and write locks
    # taken at BEGIN so two writers queue instead of failing with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # Tests use a file too, one per test process: the default shared-cache in-memory database
    # fails at once with "database table is locked" when worker threads write concurrently.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            # Django's RedisCache, keeping its Redis client (msp_dashboard/cache.py).
            "BACKEND": "msp_dashboard.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": env("CACHE_KEY_PREFIX", default="msp"),
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
else:
    # Shared by every process of the demo (web, worker, beat) with no server to run.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(VAR_DIR / "cache"),
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "portals:grid"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = DEBUG or DEMO or TESTING

# Security defaults that hold everywhere; production adds HTTPS-only values from the env.
SESSION_COOKIE_HTTPONLY = True
# Sessions in the database, read through the cache: a page costs no session query (the wall
# screen polls every few seconds); with the cache down they are read from the database.
SESSION_ENGINE = "msp_dashboard.sessions"
SESSION_COOKIE_AGE = env.int("SESSION_COOKIE_AGE", default=12 * 3600)
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
HTTPS = env.bool("HTTPS", default=False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS and env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_HSTS_SECONDS = 31536000 if HTTPS else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
if env.bool("BEHIND_PROXY", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# --- Site24x7 ---------------------------------------------------------------------------
# Overrides point the client at the bundled simulator (tests, demo) or a proxy.
SITE24X7_API_URL = env("SITE24X7_API_URL", default="")
SITE24X7_ACCOUNTS_URL = env("SITE24X7_ACCOUNTS_URL", default="")
SITE24X7_DATA_CENTRE = env("SITE24X7_DATA_CENTRE", default="US")
SITE24X7_CONNECT_TIMEOUT = env.float("SITE24X7_CONNECT_TIMEOUT", default=3.05)
SITE24X7_READ_TIMEOUT = env.float("SITE24X7_READ_TIMEOUT", default=10.0)
# Real credentials for `make run` without the simulator (imported into the vault at start).
SITE24X7_MSP_AUTHTOKEN = env("SITE24X7_MSP_AUTHTOKEN", default="")
SITE24X7_CLIENT_ID = env("SITE24X7_CLIENT_ID", default="")
SITE24X7_CLIENT_SECRET = env("SITE24X7_CLIENT_SECRET", default="")
SITE24X7_REFRESH_TOKEN = env("SITE24X7_REFRESH_TOKEN", default="")
# Calls allowed per credential and endpoint in a window (REL-08); Site24x7's published
# example throttle is 50 per 5 minutes, so the default stays well below it.
SITE24X7_CALL_BUDGET = env.int("SITE24X7_CALL_BUDGET", default=40)
SITE24X7_CALL_BUDGET_WINDOW = env.int("SITE24X7_CALL_BUDGET_WINDOW", default=300)

# --- Site24x7 switches (issue 10) -------------------------------------------------------
# What the public docs leave open; `manage.py site24x7_probe` says which values a real account
# needs (docs/connecting-a-real-account.md). Checked at start-up (tokens.upstream, system check).
# Status source per auth generation: monitor_groups_status | current_status.
SITE24X7_LEGACY_STATUS_SOURCE = env(
    "SITE24X7_LEGACY_STATUS_SOURCE", default="monitor_groups_status"
)
SITE24X7_OAUTH_STATUS_SOURCE = env("SITE24X7_OAUTH_STATUS_SOURCE", default="current_status")
# How a round reads OAuth customers: per_customer (one status call each) | msp_wide (one
# GET /api/msp/customers/monitors/status per MSP identity and round, for large MSPs; customers
# missing from its answer, or every customer when it fails other than transiently, fall back
# to their own call). portals.wide.
SITE24X7_OAUTH_REFRESH_SOURCE = env("SITE24X7_OAUTH_REFRESH_SOURCE", default="per_customer")
# How the customer is selected: param (?zaid= / ?zaaid=) | cookie (clientportal= / zaaid=).
SITE24X7_ZAID_VIA = env("SITE24X7_ZAID_VIA", default="param")
SITE24X7_ZAAID_VIA = env("SITE24X7_ZAAID_VIA", default="cookie")
# The version in `Accept: application/json; version=<v>` (Terraform's provider sends 2.1).
SITE24X7_ACCEPT_VERSION = env("SITE24X7_ACCEPT_VERSION", default="2.0")
# Call budget per endpoint, e.g. "current_status=40,monitor_groups_status=40"; endpoints not
# named use SITE24X7_CALL_BUDGET. Read through tokens.upstream.call_budget_for(endpoint).
SITE24X7_CALL_BUDGETS = env.dict("SITE24X7_CALL_BUDGETS", default={})

# --- Refresh ------------------------------------------------------------------------------
REFRESH_INTERVAL = env.int("REFRESH_INTERVAL", default=300)
REFRESH_CONCURRENCY = env.int("REFRESH_CONCURRENCY", default=32)
# Part of the interval over which one round's refreshes start (0..1): spreads the load on
# Site24x7 and on the worker. 0 starts them all at once (the benchmarks measure a round so).
REFRESH_STAGGER_FRACTION = env.float("REFRESH_STAGGER_FRACTION", default=0.5)
# Customers per refresh message (portals.services.batch_size_for): 0 picks it from the round,
# one per message up to 4 x REFRESH_CONCURRENCY due customers, then up to 10; each customer is
# still leased, fetched, stored and retried on its own. Fewer messages, less worker CPU.
REFRESH_BATCH_SIZE = env.int("REFRESH_BATCH_SIZE", default=0)
REFRESH_MAX_RETRIES = env.int("REFRESH_MAX_RETRIES", default=3)
REFRESH_BACKOFF_BASE = env.float("REFRESH_BACKOFF_BASE", default=2.0)
REFRESH_BACKOFF_MAX = env.float("REFRESH_BACKOFF_MAX", default=300.0)
BREAKER_THRESHOLD = env.int("BREAKER_THRESHOLD", default=5)
BREAKER_PAUSE = env.int("BREAKER_PAUSE", default=15 * 60)
BREAKER_PAUSE_MAX = env.int("BREAKER_PAUSE_MAX", default=3600)
SYNC_INTERVAL = env.int("SYNC_INTERVAL", default=3600)
# Rendered grid rows kept in each web process (one per customer and version): 1,000 customers
# and a few filters fit; each row is a few kilobytes.
GRID_ROW_CACHE_SIZE = env.int("GRID_ROW_CACHE_SIZE", default=6000)

# --- Celery -------------------------------------------------------------------------------
TASK_TIME_LIMIT = env.int("TASK_TIME_LIMIT", default=45)
TASK_SOFT_TIME_LIMIT = env.int("TASK_SOFT_TIME_LIMIT", default=30)
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    # kombu's Redis transport, surviving a Redis restart with messages in hand (celery.py).
    CELERY_BROKER_TRANSPORT = "msp_dashboard.celery:RedisTransport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # REL-11: longer than a task's hard limit plus the longest back-off plus one interval.
        "visibility_timeout": TASK_TIME_LIMIT + int(REFRESH_BACKOFF_MAX) + REFRESH_INTERVAL + 600,
        "socket_connect_timeout": 5,
        "socket_timeout": 10,
        "retry_on_timeout": True,
    }
else:
    _broker_dir = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    # kombu's transport with atomic writes and claims (see msp_dashboard/celery.py).
    CELERY_BROKER_TRANSPORT = "msp_dashboard.celery:FilesystemTransport"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# One cap on refreshes running at once per worker (the Procfile passes the same number).
CELERY_WORKER_CONCURRENCY = REFRESH_CONCURRENCY
# Early ack (REL-09): a refresh lost with a killed worker is replaced by the next round; its
# lease expires by itself. No acks_late, so no redelivery loops.
CELERY_TASK_ACKS_LATE = False
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_MAX_RETRIES = None
# Keep worker threads' database connections across tasks (Celery's Django fixup otherwise
# closes them around every task); CONN_MAX_AGE and CONN_HEALTH_CHECKS govern them instead,
# applied around each task by msp_dashboard/celery.py. PostgreSQL's max_connections must allow
# REFRESH_CONCURRENCY connections per worker, plus the web server's.
CELERY_DB_REUSE_MAX = 1_000_000_000
CELERY_TASK_TIME_LIMIT = TASK_TIME_LIMIT
CELERY_TASK_SOFT_TIME_LIMIT = TASK_SOFT_TIME_LIMIT
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE = {
    "refresh-due": {
        "task": "portals.tasks.refresh_due",
        "schedule": float(REFRESH_INTERVAL),
        "options": {"expires": float(REFRESH_INTERVAL)},
    },
    "sync-customers": {
        "task": "portals.tasks.sync_customers",
        "schedule": float(SYNC_INTERVAL),
        "options": {"expires": float(SYNC_INTERVAL)},
    },
}

# --- Logging ------------------------------------------------------------------------------
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # urllib3 logs every URL it opens; keep it quiet (SEC-11). The client never puts a
        # secret in a URL, so DEBUG here would still leak nothing, but it is noise.
        "urllib3": {"level": "WARNING"},
        "django.db.backends": {"level": "INFO"},
    },
}

# --- Security (issue 6) -------------------------------------------------------------------
# Roles, login throttling, sessions, headers, production validation and the health check.
# One block on purpose: docs/production.md explains each value.
from datetime import timedelta  # noqa: E402
from ipaddress import ip_address  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

from django.core.exceptions import ImproperlyConfigured  # noqa: E402

# The admin site that audits refused entries; django-axes (login throttling) and django-csp.
INSTALLED_APPS = [
    "msp_dashboard.apps.AdminConfig" if app == "django.contrib.admin" else app
    for app in INSTALLED_APPS
] + ["axes", "csp"]
_after = MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware") + 1
MIDDLEWARE = [
    "msp_dashboard.middleware.RealIPMiddleware",  # first: everything below reads REMOTE_ADDR
    *MIDDLEWARE[:1],  # SecurityMiddleware
    "csp.middleware.CSPMiddleware",
    *MIDDLEWARE[1:_after],
    "msp_dashboard.middleware.SessionTimeoutMiddleware",
    "msp_dashboard.middleware.ActorMiddleware",
    "msp_dashboard.middleware.PrivateCacheMiddleware",
    *MIDDLEWARE[_after:],
    "axes.middleware.AxesMiddleware",  # last, as django-axes requires
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",  # refuses a locked-out login before any password check
    "portals.accounts.RoleBackend",  # ModelBackend, permissions in one query (PERF-01)
]
BEHIND_PROXY = env.bool("BEHIND_PROXY", default=False)

# Login throttling (SEC-06): 10 failures per username and IP lock that pair out for 15 min;
# the locked answer (429, the login form with one message) is the same for every username.
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=10)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_LOCKOUT_CALLABLE = "msp_dashboard.views.login_locked_out"
AXES_CLIENT_IP_CALLABLE = "portals.access.client_ip"
# Our own login lines (msp_dashboard.auth) say who, from where and when; axes's INFO chatter
# ("Deleted 0 failed login attempts" at every login) is kept out of the logs.
LOGGING["loggers"]["axes"] = {"level": "WARNING"}

# Sessions (SEC-05): idle timeout and absolute lifetime (msp_dashboard.middleware); any request
# of the session is activity, so a visible grid (it polls) keeps a wall screen logged in.
SESSION_IDLE_TIMEOUT = env.int("SESSION_IDLE_TIMEOUT", default=30 * 60)
SESSION_ABSOLUTE_TIMEOUT = min(env.int("SESSION_ABSOLUTE_TIMEOUT", default=12 * 3600), 12 * 3600)
SESSION_COOKIE_AGE = SESSION_ABSOLUTE_TIMEOUT
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True  # pages carry the token themselves (hx-headers); JS never reads it

# Headers (SEC-02). Content-Security-Policy: no inline script or style, no eval; data: images
# for the live favicon. The Django admin works under the same policy.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "frame-ancestors": ["'none'"],
        "form-action": ["'self'"],
    }
}
SECURE_HSTS_PRELOAD = HTTPS and env.bool("SECURE_HSTS_PRELOAD", default=False)
# security.W021 (HSTS preload): preloading commits the whole domain to HTTPS in browsers for
# months and is hard to undo, so it is the operator's decision (SECURE_HSTS_PRELOAD=1), not a
# default. The only silenced check (SEC-01).
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]

# Error reports (the 500 mail, the technical 500 page) hide every secret (SEC-09).
DEFAULT_EXCEPTION_REPORTER_FILTER = "msp_dashboard.reporting.SecretSafeExceptionReporterFilter"
# Error mail (500s) to ADMINS, e.g. ADMINS=ops@example.com, and EMAIL_URL, e.g.
# smtp+tls://user:pass@host:587  # pragma: allowlist secret
ADMINS = [(address.split("@")[0], address) for address in env.list("ADMINS", default=[])]
if env("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))
SERVER_EMAIL = env("SERVER_EMAIL", default="msp-dashboard@localhost")

# /healthz and its beat heartbeat (portals.health).
BEAT_HEARTBEAT_INTERVAL = env.int("BEAT_HEARTBEAT_INTERVAL", default=30)
HEALTHZ_STALE_FRACTION = env.float("HEALTHZ_STALE_FRACTION", default=0.25)
HEALTHZ_TIMEOUT = env.float("HEALTHZ_TIMEOUT", default=2.0)
CELERY_BEAT_SCHEDULE["beat-heartbeat"] = {
    "task": "portals.tasks.heartbeat",
    "schedule": float(BEAT_HEARTBEAT_INTERVAL),
    "options": {"expires": float(BEAT_HEARTBEAT_INTERVAL)},
}

# PRODUCTION=1: refuse to start with a configuration that is only fit for a laptop (SEC-15).
PRODUCTION = env.bool("PRODUCTION", default=False)


def _production_problems() -> list[str]:
    problems = []
    if DEBUG or DEMO:
        problems.append("DEBUG and DEMO must be off")
    if not SECRET_KEY or len(SECRET_KEY) < 50:
        problems.append("SECRET_KEY must be set, 50 characters or more")
    if not HTTPS:
        problems.append("HTTPS=1 is required (secure cookies, HSTS)")
    if not env("DATABASE_URL", default=""):
        problems.append("DATABASE_URL (PostgreSQL) is required")
    if "*" in ALLOWED_HOSTS:
        problems.append("ALLOWED_HOSTS must name the host, not '*'")
    broker = urlsplit(REDIS_URL)
    if broker.scheme not in ("redis", "rediss"):
        problems.append("REDIS_URL is required (the broker)")
    else:
        if not broker.password:
            example = "redis://user:password@host:6379/0"  # pragma: allowlist secret
            problems.append(f"REDIS_URL needs a password ({example})")
        if _public_host(broker.hostname or ""):
            problems.append("REDIS_URL must point at a private address, not a public one")
    return problems


def _public_host(host: str) -> bool:
    """A public IP literal (names are the operator's DNS: docs/production.md requires a
    private one)."""
    try:
        address = ip_address(host.strip("[]"))
    except ValueError:
        return False
    return address.is_global


if PRODUCTION and (_problems := _production_problems()):
    raise ImproperlyConfigured("PRODUCTION=1: " + "; ".join(_problems))


# --- Alerts (issue 9) -----------------------------------------------------------------------
# Alerts on status transitions (email, JSON webhook, Slack, Teams), acknowledgements and mutes,
# availability, CSV exports and /metrics: the `alerts` app (docs in alerts/__init__.py).
# A new status must hold for this many refreshes before it alerts (a channel may override it).
ALERT_HOLD_REFRESHES = max(1, env.int("ALERT_HOLD_REFRESHES", default=2))
# Flapping: this many observed changes within the window flag a customer or group on the grid
# and hold its alerts (one "flapping" notice instead) until it settles.
ALERT_FLAP_CHANGES = env.int("ALERT_FLAP_CHANGES", default=4)
ALERT_FLAP_WINDOW = env.int("ALERT_FLAP_WINDOW", default=3600)
# Deliveries: attempts in all (Celery retries with full-jitter back-off), outbound timeouts.
ALERT_MAX_ATTEMPTS = env.int("ALERT_MAX_ATTEMPTS", default=5)
ALERT_RETRY_BASE = env.float("ALERT_RETRY_BASE", default=10.0)
ALERT_RETRY_MAX = env.float("ALERT_RETRY_MAX", default=600.0)
ALERT_CONNECT_TIMEOUT = env.float("ALERT_CONNECT_TIMEOUT", default=3.05)
ALERT_READ_TIMEOUT = env.float("ALERT_READ_TIMEOUT", default=10.0)
# Plain-http webhook URLs (loopback listeners, an internal relay); https only by default.
ALERT_ALLOW_HTTP = env.bool("ALERT_ALLOW_HTTP", default=_LOCAL)
ALERT_EMAIL_FROM = env("ALERT_EMAIL_FROM", default=SERVER_EMAIL)
# The dashboard's public address, for links in alert messages (e.g. https://noc.example.com).
DASHBOARD_URL = env("DASHBOARD_URL", default="").rstrip("/")
# Site24x7-side trouble: at least this many customers and this share of one data centre's
# customers failing to refresh (transient/upstream errors) within the window open one incident.
ALERT_UPSTREAM_MIN_CUSTOMERS = env.int("ALERT_UPSTREAM_MIN_CUSTOMERS", default=3)
ALERT_UPSTREAM_RATIO = env.float("ALERT_UPSTREAM_RATIO", default=0.5)
ALERT_UPSTREAM_WINDOW = env.int("ALERT_UPSTREAM_WINDOW", default=2 * REFRESH_INTERVAL + 60)
# Events, deliveries and their attempt log are kept this many days.
ALERT_LOG_DAYS = env.int("ALERT_LOG_DAYS", default=30)
# "Since you last looked": a visit is a run of grid page loads less than this apart (seconds).
SEEN_VISIT_GAP = env.int("SEEN_VISIT_GAP", default=30 * 60)
# Availability: statuses that count as available; Down and Critical are downtime (outages);
# Maintenance, Suspended, Discovery and unknown/stale time are left out of the denominator.
AVAILABILITY_UP_STATUSES = env.list("AVAILABILITY_UP_STATUSES", default=["up"])
# /metrics (Prometheus text format): a bearer token and/or an IP allow-list (addresses or
# networks); with neither set, /metrics answers 403 to everyone.
METRICS_TOKEN = env("METRICS_TOKEN", default="")
METRICS_ALLOWED_IPS = env.list("METRICS_ALLOWED_IPS", default=[])
CELERY_BEAT_SCHEDULE["alerts-sweep"] = {
    "task": "alerts.tasks.sweep",
    "schedule": 60.0,
    "options": {"expires": 60.0},
}
