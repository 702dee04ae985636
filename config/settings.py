"""Tenter settings. Everything comes from the environment (django-environ) with development defaults.

With DEBUG off the app refuses to start unless SECRET_KEY and FIELD_ENCRYPTION_KEYS are set.
"""

import ipaddress
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import environ
from csp.constants import NONE, SELF
from django.core.exceptions import ImproperlyConfigured

from config import cluster as cluster_settings

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").exists():
    env.read_env(str(BASE_DIR / ".env"))

DEBUG = env.bool("DEBUG", default=True)

# Development-only fallbacks: never valid when DEBUG is off (checked below).
_DEV_SECRET_KEY = "dev-insecure-secret-key-do-not-use-in-production"
_DEV_FIELD_KEY = "ZGV2LW9ubHktZmllbGQta2V5LWRvLW5vdC11c2UtISE="

SECRET_KEY = env.str("SECRET_KEY", default=_DEV_SECRET_KEY if DEBUG else "")
# Fernet keys, newest first, comma separated. Older keys still decrypt; `manage.py rotate_encryption_keys`
# re-encrypts everything with the newest one.
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[_DEV_FIELD_KEY] if DEBUG else [])

if not DEBUG:
    if not SECRET_KEY or SECRET_KEY == _DEV_SECRET_KEY:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    if not FIELD_ENCRYPTION_KEYS or _DEV_FIELD_KEY in FIELD_ENCRYPTION_KEYS:
        raise ImproperlyConfigured("FIELD_ENCRYPTION_KEYS must be set when DEBUG is off.")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# Behind a reverse proxy that sets X-Forwarded-For (the last hop is the proxy's view of the client).
USE_X_FORWARDED_FOR = env.bool("USE_X_FORWARDED_FOR", default=False)

INSTALLED_APPS = [
    "config.apps.TenterAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "csp",
    "core",
    "userconfig",
    "projects",
    "sandboxes",
    "github",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "config.apps.AllauthGitHubConfig",
    "reconcile",
    "kubesim",
    "fakegithub",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "core.middleware.InputGuardMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "allauth.account.middleware.AccountMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "csp.middleware.CSPMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "config.middleware.FriendlyNotFoundMiddleware",
]

ROOT_URLCONF = "config.urls"
DEFAULT_EXCEPTION_REPORTER = "core.debug.SafeExceptionReporter"
WSGI_APPLICATION = "config.wsgi.application"

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
                "config.views.dashboard_links",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/tenter"),
}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DATABASES["default"].setdefault("TEST", {})["NAME"] = env.str("TEST_DATABASE_NAME", default="test_tenter")

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "userconfig.User"
LOGIN_URL = "/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/login/"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}

# --- Production security: `manage.py check --deploy` is clean with DEBUG off, nothing silenced ---------
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env.bool("SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
# Behind a TLS-terminating proxy set USE_X_FORWARDED_FOR (X-Forwarded-Proto is trusted then). Probes and
# the in-cluster metrics scrape may use plain HTTP.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if USE_X_FORWARDED_FOR else None
SILENCED_SYSTEM_CHECKS: list[str] = []

# Content-Security-Policy (django-csp): the dashboard loads only its own static files; the terminal is
# an iframe on the sandbox's HTTPS host. The API docs page (Swagger UI) is served from our static files too.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "frame-src": ["https:"],
        "frame-ancestors": [NONE],
        "form-action": [SELF],
        "base-uri": [SELF],
        "object-src": [NONE],
    },
}

# Who may read /metrics and the OpenAPI schema and docs. Private (the default with DEBUG off): staff
# users signed in, or for /metrics "Authorization: Bearer <METRICS_TOKEN>". Setting METRICS_TOKEN always
# makes /metrics private.
METRICS_PUBLIC = env.bool("METRICS_PUBLIC", default=DEBUG)
API_SCHEMA_PUBLIC = env.bool("API_SCHEMA_PUBLIC", default=DEBUG)

REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")

# The cache (rate limits: API throttles, sign-in attempts) lives in Redis so every process shares it. Tests
# give each session its own key prefix (tests/conftest.py).
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env.str("CACHE_URL", default=REDIS_URL),
        "KEY_PREFIX": env.str("CACHE_KEY_PREFIX", default="tenter"),
        "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
    }
}

# API rate limits per user (core/throttles.py): reads, and lifecycle writes (POST/DELETE on projects, their
# actions and databases). DRF's rate syntax: "<n>/<second|minute|hour|day>".
API_THROTTLE_RATES = {
    "read": env.str("API_THROTTLE_READS", default="600/minute"),
    "lifecycle_write": env.str("API_THROTTLE_WRITES", default="60/minute"),
}
# Dashboard sign-in: after this many failures within the window, for one account or from one address,
# sign-in is refused (429 with Retry-After) until the window ends.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
LOGIN_FAILURE_WINDOW_SECONDS = env.int("LOGIN_FAILURE_WINDOW_SECONDS", default=15 * 60)

# --- Django REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "userconfig.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_THROTTLE_CLASSES": ["core.throttles.ReadThrottle", "core.throttles.LifecycleWriteThrottle"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["core.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "core.schema.AutoSchema",
    "EXCEPTION_HANDLER": "core.drf.exception_handler",
    "DEFAULT_PAGINATION_CLASS": "core.drf.Pagination",
    "PAGE_SIZE": 50,
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Tenter API",
    "DESCRIPTION": "Control plane for AI coding sandboxes on Kubernetes. Lifecycle calls record intent "
    "and return 202; reconciliation happens in the background.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI is served by the app itself (drf-spectacular-sidecar), so the docs work offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["core.access.SchemaAccess"],
    "ENUM_NAME_OVERRIDES": {
        "ResourceStatusEnum": "sandboxes.models.ResourceStatus",
        "ProjectStatusEnum": "projects.models.ProjectStatus",
        "TaskStatusEnum": "projects.models.TaskStatus",
    },
}

# --- Celery ------------------------------------------------------------------------------------------
# https://docs.celeryq.dev/en/stable/userguide/configuration.html
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_TASK_DEFAULT_QUEUE = env.str("CELERY_QUEUE", default="tenter")
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SOFT_TIME_LIMIT = 60
CELERY_TASK_TIME_LIMIT = 90
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Short broker timeouts: a broker that is down or a network path that drops packets must cost seconds,
# never minutes (the Redis client waits forever by default). The worker's BRPOP returns every second,
# well within the socket timeout.
CELERY_BROKER_CONNECTION_TIMEOUT = env.float("BROKER_CONNECT_TIMEOUT", default=2.0)
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": 300,
    "socket_connect_timeout": CELERY_BROKER_CONNECTION_TIMEOUT,
    "socket_timeout": env.float("BROKER_SOCKET_TIMEOUT", default=10.0),
}
# Kicks (core/kick.py) are published by one background thread per process on their own connection:
# one attempt, these timeouts, no retry. A request only puts a kick on this bounded queue.
KICK_BROKER_TIMEOUT = env.float("KICK_BROKER_TIMEOUT", default=1.0)
KICK_QUEUE_SIZE = env.int("KICK_QUEUE_SIZE", default=1000)
KICK_BACKOFF_SECONDS = env.float("KICK_BACKOFF_SECONDS", default=5.0)
# How long a coalesced kick counts as waiting on the broker at most (a lost task costs this, then the
# next kick is sent; the sweep finds the rows anyway).
KICK_PENDING_SECONDS = env.int("KICK_PENDING_SECONDS", default=5)
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# Celery's Django fixup closes the DB connection after every task unless told to reuse it.
CELERY_DB_REUSE_MAX = env.int("CELERY_DB_REUSE_MAX", default=100)

# --- Reconciliation ----------------------------------------------------------------------------------
RECONCILE_BATCH_SIZE = env.int("RECONCILE_BATCH_SIZE", default=50)
RECONCILE_LEASE_SECONDS = env.float("RECONCILE_LEASE_SECONDS", default=60.0)
RECONCILE_SWEEP_SECONDS = env.float("RECONCILE_SWEEP_SECONDS", default=2.0)
# How often the warm pools are refilled (a bounded round each time).
WARM_POOL_REFILL_SECONDS = env.float("WARM_POOL_REFILL_SECONDS", default=5.0)
RECONCILE_KICK_ON_COMMIT = env.bool("RECONCILE_KICK_ON_COMMIT", default=True)
RECONCILE_POLL_SECONDS = env.float("RECONCILE_POLL_SECONDS", default=1.0)
RECONCILE_BACKOFF_BASE_SECONDS = env.float("RECONCILE_BACKOFF_BASE_SECONDS", default=1.0)
RECONCILE_BACKOFF_MAX_SECONDS = env.float("RECONCILE_BACKOFF_MAX_SECONDS", default=60.0)
# Fairness: at most this many rows of one owner (per kind) under lease at once while other owners' rows
# wait (spare room in a batch goes to whoever waited), and as many lanes of a batch on one owner's cluster;
# a time budget for each step (every request of the step shares it) well inside the lease.
RECONCILE_USER_CONCURRENCY = env.int("RECONCILE_USER_CONCURRENCY", default=4)
# How many steps of a claimed batch one worker runs at once (threads doing the Kubernetes requests).
RECONCILE_ACT_CONCURRENCY = env.int("RECONCILE_ACT_CONCURRENCY", default=8)
RECONCILE_STEP_BUDGET_SECONDS = env.float("RECONCILE_STEP_BUDGET_SECONDS", default=15.0)
# How long a resource may stay in a transitional status before it moves to ERROR.
STATUS_DEADLINES = {
    "CREATING": timedelta(minutes=env.float("DEADLINE_CREATING_MINUTES", default=2)),
    "STARTING": timedelta(minutes=env.float("DEADLINE_STARTING_MINUTES", default=10)),
    "UPDATING": timedelta(minutes=env.float("DEADLINE_UPDATING_MINUTES", default=10)),
    "STOPPING": timedelta(minutes=env.float("DEADLINE_STOPPING_MINUTES", default=5)),
    "TERMINATING": timedelta(minutes=env.float("DEADLINE_TERMINATING_MINUTES", default=10)),
}
# Project tasks (reconcile/project_tasks.py): the lease of one attempt (longer than the exec timeout),
# attempts before FAILED, jittered exponential backoff between attempts, the time limit of one script,
# and how often a task waiting for its prerequisites (a stopped sandbox) is looked at without a kick.
TASK_EXEC_TIMEOUT_SECONDS = env.float("TASK_EXEC_TIMEOUT_SECONDS", default=120.0)
TASK_LEASE_SECONDS = env.float("TASK_LEASE_SECONDS", default=TASK_EXEC_TIMEOUT_SECONDS + 60.0)
TASK_MAX_ATTEMPTS = env.int("TASK_MAX_ATTEMPTS", default=3)
TASK_BACKOFF_BASE_SECONDS = env.float("TASK_BACKOFF_BASE_SECONDS", default=5.0)
TASK_BACKOFF_MAX_SECONDS = env.float("TASK_BACKOFF_MAX_SECONDS", default=300.0)
TASK_WAIT_POLL_SECONDS = env.float("TASK_WAIT_POLL_SECONDS", default=30.0)
TASK_OUTPUT_TAIL_CHARS = env.int("TASK_OUTPUT_TAIL_CHARS", default=4000)
# A row waiting for a usable kubeconfig (none stored, its check failing, or now pointing at another
# cluster) stops its status's clock, and gives up after this long.
KUBECONFIG_WAIT_DEADLINE = timedelta(minutes=env.float("DEADLINE_KUBECONFIG_WAIT_MINUTES", default=30))
# How often a row waiting for a usable kubeconfig looks again.
KUBECONFIG_WAIT_RETRY_SECONDS = env.float("KUBECONFIG_WAIT_RETRY_SECONDS", default=10.0)
KUBECONFIG_CHECK_MINUTES = env.float("KUBECONFIG_CHECK_MINUTES", default=15)
ORPHAN_DELETE_AFTER_MINUTES = env.float("ORPHAN_DELETE_AFTER_MINUTES", default=0)  # 0 = report only
# A running sandbox with no activity (dashboard visits, terminal/file opens, "keep running", heartbeats
# from inside it) for this long is stopped; projects may override it (0 = never). 0 here = off.
IDLE_STOP_MINUTES = env.float("IDLE_STOP_MINUTES", default=60)

# A kubeconfig with `insecure-skip-tls-verify: true` is refused unless this is on (a lab cluster).
KUBECONFIG_ALLOW_INSECURE_TLS = env.bool("KUBECONFIG_ALLOW_INSECURE_TLS", default=False)
KUBE_CONNECT_TIMEOUT = env.float("KUBE_CONNECT_TIMEOUT", default=3.0)
KUBE_READ_TIMEOUT = env.float("KUBE_READ_TIMEOUT", default=10.0)
KUBE_CLIENT_CACHE_SIZE = env.int("KUBE_CLIENT_CACHE_SIZE", default=100)
# Egress policy of the workers' cluster connections (reconcile/kube/egress.py): public addresses only,
# plus these networks (comma-separated CIDRs, e.g. "10.0.0.0/8,fd00::/8" for on-prem clusters). Tests
# and `make run` allow 127.0.0.0/8 for kubesim. A bad CIDR stops the process at start.
KUBE_EGRESS_ALLOW_CIDRS = [
    str(ipaddress.ip_network(cidr.strip(), strict=False))
    for cidr in env.list("KUBE_EGRESS_ALLOW_CIDRS", default=[])
    if cidr.strip()
]
# The kubeconfig check: total time budget, its own (connect, read) timeouts, and at most one check
# per user per KUBECONFIG_CHECK_INTERVAL_SECONDS (a save inside the window schedules one later check).
KUBECONFIG_CHECK_BUDGET_SECONDS = env.float("KUBECONFIG_CHECK_BUDGET_SECONDS", default=15.0)
KUBECONFIG_CHECK_TIMEOUTS = (
    env.float("KUBECONFIG_CHECK_CONNECT_TIMEOUT", default=3.0),
    env.float("KUBECONFIG_CHECK_READ_TIMEOUT", default=5.0),
)
KUBECONFIG_CHECK_INTERVAL_SECONDS = env.float("KUBECONFIG_CHECK_INTERVAL_SECONDS", default=30.0)

# --- Sandbox and database defaults (the reference's values) ----------------------------------------
RUNTIME_IMAGE = env.str("RUNTIME_IMAGE", default="docker.io/limbo2342/fullstack-web-runtime:sha-ca2470e")
FILEBROWSER_IMAGE = env.str("FILEBROWSER_IMAGE", default="filebrowser/filebrowser:v2-s6")
INGRESS_DOMAIN = env.str("INGRESS_DOMAIN", default="")
# A STARTING sandbox whose pod has a problem that will not fix itself (the image cannot be pulled or is
# invalid, the container cannot be configured, or it crashed POD_CRASH_RESTARTS times) goes to ERROR
# once it has been starting this long, instead of waiting for the STARTING deadline.
POD_FAILURE_GRACE_SECONDS = env.float("POD_FAILURE_GRACE_SECONDS", default=60)
POD_CRASH_RESTARTS = env.int("POD_CRASH_RESTARTS", default=3)
KUBEBLOCKS_API_VERSION = env.str("KUBEBLOCKS_API_VERSION", default="apps.kubeblocks.io/v1")
DATABASE_STORAGE_CLASS = env.str("DATABASE_STORAGE_CLASS", default="")

# --- How sandboxes meet the cluster: defaults that work on a stock cluster with ingress-nginx ---------
# (checked here, at start; `manage.py doctor` shows them and checks them against each cluster)
try:
    # IngressClass of every sandbox Ingress.
    INGRESS_CLASS = cluster_settings.dns_subdomain(
        "INGRESS_CLASS", env.str("INGRESS_CLASS", default="nginx"), allow_empty=False
    )
    # TLS Secret (in each namespace) for the sandbox hosts; empty = the controller's default certificate.
    INGRESS_TLS_SECRET = cluster_settings.dns_subdomain(
        "INGRESS_TLS_SECRET", env.str("INGRESS_TLS_SECRET", default="")
    )
    # The reference's server-snippet (larger header buffers): only when the controller allows snippets
    # (ingress-nginx >= 1.9 forbids them by default and rejects the whole Ingress).
    INGRESS_SERVER_SNIPPET = env.bool("INGRESS_SERVER_SNIPPET", default=False)
    # Extra annotations on every sandbox Ingress (JSON), e.g. {"cert-manager.io/cluster-issuer": "le"}.
    INGRESS_ANNOTATIONS = cluster_settings.ingress_annotations(
        "INGRESS_ANNOTATIONS",
        env.str("INGRESS_ANNOTATIONS", default=""),
        snippets_allowed=INGRESS_SERVER_SNIPPET,
    )
    # StorageClass of the sandbox volumes and of the database volumes; empty = the cluster's default.
    SANDBOX_STORAGE_CLASS = cluster_settings.dns_subdomain(
        "SANDBOX_STORAGE_CLASS", env.str("SANDBOX_STORAGE_CLASS", default="")
    )
    DATABASE_STORAGE_CLASS = cluster_settings.dns_subdomain("DATABASE_STORAGE_CLASS", DATABASE_STORAGE_CLASS)
    # Secrets (in each namespace) to pull the runtime and FileBrowser images with; comma-separated.
    RUNTIME_IMAGE_PULL_SECRETS = cluster_settings.names(
        "RUNTIME_IMAGE_PULL_SECRETS", env.list("RUNTIME_IMAGE_PULL_SECRETS", default=[])
    )
except cluster_settings.ClusterSettingError as exc:
    raise ImproperlyConfigured(str(exc)) from None

# Named sandbox sizes, smallest first (the first is the default at creation). "small" is the reference's
# sandbox (fulling §4.3, §4.11). Storage can only grow on a resize; every size has the same volume here
# because a StatefulSet's volume claim template cannot change (growing a volume is not reconciled yet).
SANDBOX_SIZES = {
    "small": {
        "cpu_request": "20m",
        "cpu_limit": "2000m",
        "memory_request": "25Mi",
        "memory_limit": "4096Mi",
        "storage_size": "10Gi",
    },
    "medium": {
        "cpu_request": "500m",
        "cpu_limit": "4",
        "memory_request": "1Gi",
        "memory_limit": "8Gi",
        "storage_size": "10Gi",
    },
    "large": {
        "cpu_request": "2",
        "cpu_limit": "8",
        "memory_request": "4Gi",
        "memory_limit": "16Gi",
        "storage_size": "10Gi",
    },
}

# --- Per-user quotas (defaults; projects.Quota overrides them per user) ----------------------------
QUOTA_MAX_PROJECTS = env.int("QUOTA_MAX_PROJECTS", default=20)
# sandboxes RUNNING, STARTING, CREATING or UPDATING
QUOTA_MAX_RUNNING_SANDBOXES = env.int("QUOTA_MAX_RUNNING_SANDBOXES", default=10)
QUOTA_MAX_DATABASES = env.int("QUOTA_MAX_DATABASES", default=10)
# the sum of cpu_request / memory_request of the user's sandboxes and databases (Kubernetes quantities)
QUOTA_MAX_CPU = env.str("QUOTA_MAX_CPU", default="32")
QUOTA_MAX_MEMORY = env.str("QUOTA_MAX_MEMORY", default="64Gi")

SIGNUP_ENABLED = env.bool("SIGNUP_ENABLED", default=False)
# /metrics also answers "Authorization: Bearer <METRICS_TOKEN>" (see METRICS_PUBLIC above).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

# --- Continuous verification of RUNNING/STOPPED resources (reconcile/verify.py) ---------------------
# A round re-checks the VERIFY_BATCH_SIZE least recently verified rows of each kind; a crash-looping pod
# or a deleted object is noticed within about VERIFY_SWEEP_SECONDS when every row fits in one batch.
VERIFY_SWEEP_SECONDS = env.float("VERIFY_SWEEP_SECONDS", default=30.0)
VERIFY_BATCH_SIZE = env.int("VERIFY_BATCH_SIZE", default=200)
# Diagnostics panel (reconcile/diagnostics.py): a worker refreshes what is older than this on a visit;
# what it fetched is kept (and shown with its age) for DIAGNOSTICS_KEEP_SECONDS.
DIAGNOSTICS_FRESH_SECONDS = env.float("DIAGNOSTICS_FRESH_SECONDS", default=30.0)
DIAGNOSTICS_KEEP_SECONDS = env.int("DIAGNOSTICS_KEEP_SECONDS", default=600)

# --- Beat schedule: the guarantee behind the on-commit kicks ---------------------------------------
# The periods of the slower sweeps, in seconds (each task expires after twice its period); the due-row
# sweeps use RECONCILE_SWEEP_SECONDS and drift VERIFY_SWEEP_SECONDS.
DEADLINE_SWEEP_SECONDS = env.float("DEADLINE_SWEEP_SECONDS", default=15.0)
IDLE_SWEEP_SECONDS = env.float("IDLE_SWEEP_SECONDS", default=60.0)
ORPHAN_SWEEP_SECONDS = env.float("ORPHAN_SWEEP_SECONDS", default=300.0)
KUBECONFIG_CHECK_SWEEP_SECONDS = env.float("KUBECONFIG_CHECK_SWEEP_SECONDS", default=60.0)
CELERY_BEAT_SCHEDULE = {
    # Claim due sandboxes/databases in batches; each sweep re-enqueues itself while work remains.
    "sweep-sandboxes": {
        "task": "reconcile.sweep_sandboxes",
        "schedule": RECONCILE_SWEEP_SECONDS,
        "options": {"expires": RECONCILE_SWEEP_SECONDS * 2},
    },
    "sweep-databases": {
        "task": "reconcile.sweep_databases",
        "schedule": RECONCILE_SWEEP_SECONDS,
        "options": {"expires": RECONCILE_SWEEP_SECONDS * 2},
    },
    "sweep-project-tasks": {
        "task": "reconcile.sweep_project_tasks",
        "schedule": RECONCILE_SWEEP_SECONDS,
        "options": {"expires": RECONCILE_SWEEP_SECONDS * 2},
    },
    # Deadlines, drift and orphans: slower, reads every stable row once a minute at most.
    "sweep-deadlines": {
        "task": "reconcile.sweep_deadlines",
        "schedule": DEADLINE_SWEEP_SECONDS,
        "options": {"expires": DEADLINE_SWEEP_SECONDS * 2},
    },
    # Continuous verification (reconcile/verify.py): stable rows against the cluster, a batch per round.
    "sweep-drift": {
        "task": "reconcile.sweep_drift",
        "schedule": VERIFY_SWEEP_SECONDS,
        "options": {"expires": VERIFY_SWEEP_SECONDS * 2},
    },
    # Warm pools (projects/pools.py): refill each opted-in user's pools up to their policy's target.
    "refill-pools": {
        "task": "reconcile.refill_pools",
        "schedule": WARM_POOL_REFILL_SECONDS,
        "options": {"expires": WARM_POOL_REFILL_SECONDS * 2},
    },
    "sweep-idle": {
        "task": "reconcile.sweep_idle",
        "schedule": IDLE_SWEEP_SECONDS,
        "options": {"expires": IDLE_SWEEP_SECONDS * 2},
    },
    # Lists each namespace's Tenter objects (4 calls per user): every 5 minutes is plenty.
    "sweep-orphans": {
        "task": "reconcile.sweep_orphans",
        "schedule": ORPHAN_SWEEP_SECONDS,
        "options": {"expires": ORPHAN_SWEEP_SECONDS * 2},
    },
    "check-kubeconfigs": {
        "task": "reconcile.check_kubeconfigs",
        "schedule": KUBECONFIG_CHECK_SWEEP_SECONDS,
        "options": {"expires": KUBECONFIG_CHECK_SWEEP_SECONDS * 2},
    },
}

# --- Logging: structured, secrets never logged (see config/logging.py) ------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "redact": {"()": "config.logging.RedactSecretsFilter"},
        "routine": {"()": "config.logging.RoutineTaskFilter"},
    },
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["redact"]}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "kubernetes": {"level": "WARNING"},
        "urllib3": {"level": "WARNING"},
        # Beat sends a task every few seconds and the worker logs each one twice: routine, so at
        # debug level (config/logging.py), keeping `make run` readable. LOG_LEVEL=DEBUG shows them.
        "celery.beat": {"filters": ["routine"]},
        "celery.worker.strategy": {"filters": ["routine"]},
        "celery.app.trace": {"filters": ["routine"]},
    },
}

# --- Running as many replicas (deploy/, issue 18) ----------------------------------------------------
# Beat may run as several replicas: only the holder of this Redis lock sends the periodic tasks
# (config/beat.py). The key is per queue so that test sessions sharing a Redis never contend.
CELERY_BEAT_SCHEDULER = env.str("CELERY_BEAT_SCHEDULER", default="config.beat:LeaderScheduler")
BEAT_LEADER_REDIS_URL = env.str("BEAT_LEADER_REDIS_URL", default=CELERY_BROKER_URL)
BEAT_LEADER_KEY = env.str("BEAT_LEADER_KEY", default=f"tenter:beat-leader:{CELERY_TASK_DEFAULT_QUEUE}")
BEAT_LEADER_TTL_SECONDS = env.float("BEAT_LEADER_TTL_SECONDS", default=15.0)
# `manage.py migrate_locked` waits at most this long for another pod's migration to finish.
MIGRATE_LOCK_TIMEOUT_SECONDS = env.float("MIGRATE_LOCK_TIMEOUT_SECONDS", default=600.0)
# Observability: JSON logs on request (one object per line, with request_id and resource_id), the request
# id middleware (X-Request-ID in and out, carried into the Celery tasks a request causes), and
# prometheus-client in multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set (gunicorn and prefork
# workers: every process writes there, /metrics and the worker's metrics port read them all).
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured("LOG_FORMAT must be 'plain' or 'json'.")
_logging: dict[str, Any] = LOGGING
_logging["filters"]["context"] = {"()": "config.logging.ContextFilter"}
_logging["formatters"]["json"] = {"()": "config.logging.JsonFormatter"}
_logging["handlers"]["console"]["filters"] = ["redact", "context"]
_logging["handlers"]["console"]["formatter"] = LOG_FORMAT
MIDDLEWARE.insert(0, "core.middleware.RequestIdMiddleware")
if env.str("PROMETHEUS_MULTIPROC_DIR", default=""):
    os.makedirs(env.str("PROMETHEUS_MULTIPROC_DIR"), exist_ok=True)
# Workers serve their pod's metrics on this port (0 = off; deploy/base/worker.yaml sets 9100).
WORKER_METRICS_PORT = env.int("WORKER_METRICS_PORT", default=0)
# --- GitHub App (github/): import repositories into sandboxes ---------------------------------------
# The App's id and slug (its install page is {GITHUB_WEB_URL}/apps/{slug}/installations/new), its private
# key (a PEM, with literal \n allowed, or base64 of the PEM), the webhook secret, and the OAuth client of
# the App ("Request user authorization during installation": the callback then proves who installed it).
# GitHub Enterprise Server: GITHUB_API_URL=https://HOST/api/v3 and GITHUB_WEB_URL=https://HOST.
GITHUB_APP_ID = env.str("GITHUB_APP_ID", default="")
GITHUB_APP_SLUG = env.str("GITHUB_APP_SLUG", default="")
GITHUB_APP_PRIVATE_KEY = env.str("GITHUB_APP_PRIVATE_KEY", default="")
GITHUB_WEBHOOK_SECRET = env.str("GITHUB_WEBHOOK_SECRET", default="")
GITHUB_CLIENT_ID = env.str("GITHUB_CLIENT_ID", default="")
GITHUB_CLIENT_SECRET = env.str("GITHUB_CLIENT_SECRET", default="")
GITHUB_API_URL = env.str("GITHUB_API_URL", default="https://api.github.com")
GITHUB_WEB_URL = env.str("GITHUB_WEB_URL", default="https://github.com")
# Tenter's own calls to GitHub go through the egress policy too: public addresses, plus these networks
# (a GitHub Enterprise Server on a private address; tests and `make run` allow 127.0.0.0/8 for fakegithub).
GITHUB_EGRESS_ALLOW_CIDRS = [
    str(ipaddress.ip_network(cidr.strip(), strict=False))
    for cidr in env.list("GITHUB_EGRESS_ALLOW_CIDRS", default=[])
    if cidr.strip()
]
GITHUB_CONNECT_TIMEOUT = env.float("GITHUB_CONNECT_TIMEOUT", default=3.0)
GITHUB_READ_TIMEOUT = env.float("GITHUB_READ_TIMEOUT", default=10.0)
# How long the signed `state` of "Connect GitHub" stays valid.
GITHUB_STATE_MAX_AGE_SECONDS = env.int("GITHUB_STATE_MAX_AGE_SECONDS", default=3600)

# --- Sign in with GitHub (django-allauth's socialaccount flow only; userconfig/github_signin.py) --------
# On when GITHUB_CLIENT_ID is set (the OAuth client of the App above, or an OAuth App). Tenter keeps its own
# login page; allauth's account views (password login, sign-up, e-mail) are not routed. A new GitHub
# identity becomes a user only when SIGNUP_ENABLED; the access token is used once to read /user, never stored.
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
SOCIALACCOUNT_ADAPTER = "userconfig.github_signin.SocialAccountAdapter"
SOCIALACCOUNT_PROVIDERS: dict[str, Any] = {
    "github": {"provider_class": "userconfig.github_signin.GitHubProvider", "SCOPE": []}
}
SOCIALACCOUNT_ONLY = True
SOCIALACCOUNT_STORE_TOKENS = False
SOCIALACCOUNT_QUERY_EMAIL = False
SOCIALACCOUNT_EMAIL_AUTHENTICATION = False
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = False
SOCIALACCOUNT_EMAIL_VERIFICATION = "none"
SOCIALACCOUNT_EMAIL_REQUIRED = False
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_LOGIN_ON_GET = False
SOCIALACCOUNT_REAUTHENTICATION_REQUIRED = False
ACCOUNT_EMAIL_VERIFICATION = "none"
ACCOUNT_LOGIN_METHODS = {"username"}
ACCOUNT_SIGNUP_FIELDS = ["username*"]
ACCOUNT_UNIQUE_EMAIL = False
ACCOUNT_PREVENT_ENUMERATION = False
ACCOUNT_ADAPTER = "userconfig.github_signin.AccountAdapter"
