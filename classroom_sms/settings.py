"""Settings for classroom-sms, read from the environment (see .env.example)."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import django_stubs_ext
import environ
from django.core.exceptions import ImproperlyConfigured

# Let the classes django-stubs types as generic be subscripted at run time too
# (admin.ModelAdmin[Account], forms.ModelForm[Session]): it only adds __class_getitem__.
django_stubs_ext.monkeypatch(include_builtins=False)

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# Variables already in the environment win over .env (read_env only sets missing ones).
# ENV_FILE="" reads no file at all (the test settings do this).
_env_file = env.str("ENV_FILE", default=str(BASE_DIR / ".env"))
if _env_file and Path(_env_file).is_file():
    environ.Env.read_env(_env_file)

# Core
DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (see .env.example).")
    # A fresh key per process is fine for development; sessions just don't survive restarts.
    SECRET_KEY = "dev-insecure-" + secrets.token_urlsafe(40)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_TZ = True
# Display formats that name the zone of every time shown (classroom_sms/formats).
FORMAT_MODULE_PATH = ["classroom_sms.formats"]
USE_I18N = True
# The admin is in English; students' SMS are in their session's language (below).
LANGUAGE_CODE = "en-us"
# Our translations (locale/<code>/LC_MESSAGES/django.po), compiled to .mo by `make` and the image.
LOCALE_PATHS = [BASE_DIR / "locale"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=256 * 1024)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_q",
    "registrations",
]

MIDDLEWARE = [
    # First: it refuses oversized or unexpected bodies (Twilio paths, multipart uploads) from
    # their headers, before CSRF or a view reads request.POST and spools uploads to disk.
    "registrations.request_limits.RequestBodyLimitMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "classroom_sms.urls"
WSGI_APPLICATION = "classroom_sms.wsgi.application"

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

# Database: SQLite under var/ unless DATABASE_URL says otherwise.
(BASE_DIR / "var").mkdir(exist_ok=True)
DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'var' / 'db.sqlite3'}")
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Django's backend, whose writers wait for the write lock in steps of a few milliseconds
    # instead of SQLite's growing naps (registrations/sqlite/base.py).
    DATABASES["default"]["ENGINE"] = "registrations.sqlite"
    # Web, workers and the ORM broker all write: WAL lets readers run beside the writer, and
    # IMMEDIATE takes the write lock up front so a read transaction never fails to upgrade.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
elif DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Django's, checking a kept connection without a round trip to the server
    # (registrations/postgresql/base.py).
    DATABASES["default"]["ENGINE"] = "registrations.postgresql"
if DATABASES["default"]["ENGINE"] == "registrations.postgresql" and env.bool(
    "DATABASE_PREPARED_STATEMENTS", default=True
):
    # PostgreSQL parsed and planned each of a webhook's statements anew: that was 40% of the
    # server's CPU per webhook under a class burst. Parameters bound by the server let psycopg
    # prepare a statement once a connection has run it a few times (prepare_threshold, its
    # default of 5: one-off admin queries are never prepared). Off behind a pooler that
    # cannot keep prepared statements (PgBouncer in transaction mode before 1.21).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"server_side_binding": True, "prepare_threshold": 5}
    )
# Persistent connections roughly halve the webhook's latency under a burst, on SQLite too:
# django-q2's ORM broker closes a non-persistent connection before every enqueue, so each
# new student cost a reconnect (and its PRAGMAs) on top of the request's own connection.
# Kept for good by default ("none"): each is checked as a request or task starts
# (CONN_HEALTH_CHECKS) and replaced only when it broke. A limited age closed every thread's
# connection after an idle spell, so the next class's burst paid a reconnect per web thread
# and per worker, and on PostgreSQL a new server process for each, while students waited.
_conn_max_age = env.str("CONN_MAX_AGE", default="none").strip().lower()
DATABASES["default"]["CONN_MAX_AGE"] = None if _conn_max_age in ("", "none") else int(_conn_max_age)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Static files (WhiteNoise serves them in every mode, so dev and production take one path).
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# Security (production sits behind an HTTPS proxy that sets X-Forwarded-Proto)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
USE_X_FORWARDED_HOST = env.bool("USE_X_FORWARDED_HOST", default=False)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=not DEBUG)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=not DEBUG)
SESSION_COOKIE_HTTPONLY = True
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
# Admin login rate limit: this many failed logins per username and client address within the
# window, then every login for that pair is refused until the window has passed.
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
LOGIN_FAILURE_WINDOW_MINUTES = env.int("LOGIN_FAILURE_WINDOW_MINUTES", default=15)
# Per username from any address (an IPv6 client counts by its /64): after this many failures
# within the window, each further attempt waits 2**k seconds after the last failure, up to the
# cap, even with the right password. Slows guessing from many addresses without a hard lockout.
LOGIN_USERNAME_FAILURE_LIMIT = env.int("LOGIN_USERNAME_FAILURE_LIMIT", default=10)
LOGIN_USERNAME_DELAY_MAX_SECONDS = env.int("LOGIN_USERNAME_DELAY_MAX_SECONDS", default=300)
# Proxies in front of the app that append to X-Forwarded-For (0: use the socket's address).
NUM_PROXIES = env.int("NUM_PROXIES", default=0)

# Single sign-on for staff (OpenID Connect, registrations/sso.py): off unless the client id,
# its secret and the provider's issuer URL are all set. The provider's endpoints are read from
# <issuer>/.well-known/openid-configuration unless given one by one.
OIDC_RP_CLIENT_ID = env.str("OIDC_RP_CLIENT_ID", default="")
OIDC_RP_CLIENT_SECRET = env.str("OIDC_RP_CLIENT_SECRET", default="")
OIDC_OP_ISSUER = env.str("OIDC_OP_ISSUER", default="").rstrip("/")
OIDC_OP_AUTHORIZATION_ENDPOINT = env.str("OIDC_OP_AUTHORIZATION_ENDPOINT", default="")
OIDC_OP_TOKEN_ENDPOINT = env.str("OIDC_OP_TOKEN_ENDPOINT", default="")
OIDC_OP_USER_ENDPOINT = env.str("OIDC_OP_USER_ENDPOINT", default="")
OIDC_OP_JWKS_ENDPOINT = env.str("OIDC_OP_JWKS_ENDPOINT", default="")
OIDC_RP_SIGN_ALGO = env.str("OIDC_RP_SIGN_ALGO", default="RS256")
OIDC_RP_SCOPES = env.str("OIDC_RP_SCOPES", default="openid email profile")
# Send the client secret in an Authorization: Basic header instead of the form body.
OIDC_TOKEN_USE_BASIC_AUTH = env.bool("OIDC_TOKEN_USE_BASIC_AUTH", default=False)
# The login button reads "Log in with <OIDC_PROVIDER_NAME>".
OIDC_PROVIDER_NAME = env.str("OIDC_PROVIDER_NAME", default="SSO")
# Roles from the provider's groups, read again at every login: a member of an instructor group
# is an instructor, of an admin group a superuser; anyone else is refused (and an account that
# lost its groups loses its admin access).
OIDC_GROUPS_CLAIM = env.str("OIDC_GROUPS_CLAIM", default="groups")
OIDC_INSTRUCTOR_GROUPS = env.list("OIDC_INSTRUCTOR_GROUPS", default=[])
OIDC_ADMIN_GROUPS = env.list("OIDC_ADMIN_GROUPS", default=[])
# A single sign-on login lasts this long; then the provider is asked again (and the groups
# with it), so someone removed from their group loses access within this time.
OIDC_SESSION_HOURS = env.float("OIDC_SESSION_HOURS", default=12.0)
# mozilla-django-oidc's own settings: a timeout on every call to the provider (it has none by
# default), PKCE, and no unsigned tokens ever.
OIDC_TIMEOUT = env.float("OIDC_TIMEOUT", default=10.0)
OIDC_USE_PKCE = True
OIDC_ALLOW_UNSECURED_JWT = False
_oidc_required = {
    "OIDC_RP_CLIENT_ID": OIDC_RP_CLIENT_ID,
    "OIDC_RP_CLIENT_SECRET": OIDC_RP_CLIENT_SECRET,
    "OIDC_OP_ISSUER": OIDC_OP_ISSUER,
}
OIDC_ENABLED = all(_oidc_required.values())
if any(_oidc_required.values()) and not OIDC_ENABLED:
    # Half a configuration would silently leave single sign-on off.
    _missing = ", ".join(name for name, value in _oidc_required.items() if not value)
    raise ImproperlyConfigured(f"Single sign-on needs {_missing} too (see .env.example).")
# Off: the admin's username/password form refuses every login; only single sign-on remains.
# Management commands (createsuperuser, createinstructor) still work.
PASSWORD_LOGIN = env.bool("PASSWORD_LOGIN", default=True)
AUTHENTICATION_BACKENDS = [
    # Without password login, a backend that checks permissions but accepts no password.
    "django.contrib.auth.backends.ModelBackend"
    if PASSWORD_LOGIN
    else "registrations.sso.NoPasswordBackend",
    *(["registrations.sso.OidcBackend"] if OIDC_ENABLED else []),
]

# Public URL Twilio calls; used for signature validation and status callbacks.
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="").rstrip("/")

# Twilio
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN", default="")
TWILIO_FROM_NUMBER = env.str("TWILIO_FROM_NUMBER", default="")
TWILIO_MESSAGING_SERVICE_SID = env.str("TWILIO_MESSAGING_SERVICE_SID", default="")
# Extra numbers of ours (pooled numbers); never answered, to avoid reply loops.
TWILIO_OWN_NUMBERS = env.list("TWILIO_OWN_NUMBERS", default=[])
TWILIO_TIMEOUT = env.float("TWILIO_TIMEOUT", default=10.0)
# For tests and benchmarks only: send Twilio REST calls to a fake server.
TWILIO_API_BASE_URL = env.str("TWILIO_API_BASE_URL", default="").rstrip("/")
# Region used to read local numbers that students text without a country code.
PHONE_DEFAULT_REGION = env.str("PHONE_DEFAULT_REGION", default="US")

# Coder
CODER_URL = env.str("CODER_URL", default="").rstrip("/")
CODER_SESSION_TOKEN = env.str("CODER_SESSION_TOKEN", default="")
CODER_ORGANIZATION = env.str("CODER_ORGANIZATION", default="")
CODER_EMAIL_DOMAIN = env.str("CODER_EMAIL_DOMAIN", default="lab.invalid")
CODER_USERNAME_PREFIX = env.str("CODER_USERNAME_PREFIX", default="cs")
# This installation's mark in the login email of every Coder user it creates
# (<username>.<id>@<domain>): reconcile deletes only users carrying it. Deployments sharing one
# Coder (staging and production, two departments) must each keep a distinct, stable id.
# Unset: derived from SECRET_KEY (registrations/credentials.py), so set it before rotating the key.
DEPLOYMENT_ID = env.str("DEPLOYMENT_ID", default="").strip().lower()
if DEPLOYMENT_ID and not re.fullmatch(r"[a-z0-9]{3,12}", DEPLOYMENT_ID):
    raise ImproperlyConfigured("DEPLOYMENT_ID must be 3-12 lowercase letters or digits.")
CODER_TIMEOUT = env.float("CODER_TIMEOUT", default=10.0)

# Languages of students' SMS: a session picks one (code, name as its speakers write it).
# English is the source text; every other language needs locale/<code>/LC_MESSAGES/django.po.
STUDENT_LANGUAGES = [("en", "English"), ("es", "Español")]
# The language of new sessions, and of replies to texts that match no session.
DEFAULT_STUDENT_LANGUAGE = env.str("DEFAULT_STUDENT_LANGUAGE", default="en").strip().lower()
if DEFAULT_STUDENT_LANGUAGE not in dict(STUDENT_LANGUAGES):
    raise ImproperlyConfigured(
        "DEFAULT_STUDENT_LANGUAGE must be one of: "
        + ", ".join(code for code, _ in STUDENT_LANGUAGES)
    )

# Behaviour
ENROLL_MINUTES_DEFAULT = env.int("ENROLL_MINUTES_DEFAULT", default=30)
LIFETIME_MINUTES_DEFAULT = env.int("LIFETIME_MINUTES_DEFAULT", default=180)
INBOUND_THROTTLE_COUNT = env.int("INBOUND_THROTTLE_COUNT", default=10)
INBOUND_THROTTLE_MINUTES = env.int("INBOUND_THROTTLE_MINUTES", default=5)
RESEND_LIMIT_PER_HOUR = env.int("RESEND_LIMIT_PER_HOUR", default=3)
# Limits on instructor accounts, so a stolen login cannot send SMS abroad or create thousands
# of Coder users: test messages and invites per instructor in any 24 hours (superusers are
# exempt), seats per session (everyone), and the countries invites and test messages may go
# to (ISO region codes; empty: those of our own numbers and PHONE_DEFAULT_REGION).
INSTRUCTOR_DAILY_TEST_MESSAGES = env.int("INSTRUCTOR_DAILY_TEST_MESSAGES", default=20)
INSTRUCTOR_DAILY_INVITES = env.int("INSTRUCTOR_DAILY_INVITES", default=200)
SESSION_MAX_CAPACITY = env.int("SESSION_MAX_CAPACITY", default=500)
SMS_ALLOWED_COUNTRIES = [c.upper() for c in env.list("SMS_ALLOWED_COUNTRIES", default=[])]
# Coder trouble (down, timing out, 5xx, 429) never fails an enrollment early: provisioning is
# retried, backing off from the base to the cap (short, so all are served minutes after Coder
# is back), until PROVISION_GIVE_UP_HOURS after the text and never past the account's expiry.
# A student still waiting after PROVISION_DELAY_NOTICE_SECONDS is texted once that it is
# delayed. Attempts cut short by a dying worker fail the account after MAX_INTERRUPTIONS.
PROVISION_GIVE_UP_HOURS = env.float("PROVISION_GIVE_UP_HOURS", default=6.0)
PROVISION_RETRY_BASE_SECONDS = env.float("PROVISION_RETRY_BASE_SECONDS", default=30.0)
PROVISION_RETRY_MAX_SECONDS = env.float("PROVISION_RETRY_MAX_SECONDS", default=120.0)
PROVISION_DELAY_NOTICE_SECONDS = env.int("PROVISION_DELAY_NOTICE_SECONDS", default=300)
PROVISION_MAX_INTERRUPTIONS = env.int("PROVISION_MAX_INTERRUPTIONS", default=5)
# A row left in an in-between state this long, by a worker that had no heartbeat, is re-driven.
STALE_AFTER_SECONDS = env.int("STALE_AFTER_SECONDS", default=180)
# Worker liveness (registrations/liveness.py): each worker stamps a heartbeat every BEAT
# seconds (0: off, claims then end by lease only); one silent for DEAD_AFTER seconds (several
# beats) is dead, and what it held is handed on at once. One worker at a time runs the sweep
# every SWEEP seconds (0: only the scheduled minute sweep).
WORKER_BEAT_SECONDS = env.float("WORKER_BEAT_SECONDS", default=3.0)
WORKER_DEAD_AFTER_SECONDS = env.float("WORKER_DEAD_AFTER_SECONDS", default=15.0)
WORKER_SWEEP_SECONDS = env.float("WORKER_SWEEP_SECONDS", default=10.0)
# Worker processes run this much nicer than web processes (0: the same priority), so a class
# burst's provisioning never makes the students' webhooks wait for CPU.
WORKER_NICENESS = env.int("WORKER_NICENESS", default=10)
RETENTION_DAYS = env.int("RETENTION_DAYS", default=30)
# Keyed hashes of seen MessageSids outlive the message log by far: a captured signed request
# (say, a DONE) replayed after its log row is gone is still refused.
MESSAGE_SID_RETENTION_DAYS = env.int("MESSAGE_SID_RETENTION_DAYS", default=400)
# Reconcile refuses (unless `reconcile --force`) a run that would delete more than this many
# users AND more than this share (percent) of the users it recognises as ours: a wrong
# DEPLOYMENT_ID, domain or database would otherwise delete live students.
RECONCILE_MAX_DELETES = env.int("RECONCILE_MAX_DELETES", default=20)
RECONCILE_MAX_DELETE_PERCENT = env.int("RECONCILE_MAX_DELETE_PERCENT", default=50)
# Deletion pipeline: accounts each expire/sweep run hands to workers (each costs 2-3 Coder
# requests, so two runs a minute stay well under Coder's 512 requests/minute), seconds between
# looks at deleting workspaces, and failed delete builds retried before an admin must "orphan".
CLEANUP_BATCH_SIZE = env.int("CLEANUP_BATCH_SIZE", default=80)
CLEANUP_POLL_SECONDS = env.int("CLEANUP_POLL_SECONDS", default=15)
# Deletion passes (registrations/deletion.py run_pass, every WORKER_SWEEP_SECONDS): Coder calls
# that name one user or workspace run this many at once (each such route has its own rate
# limit in Coder), and each pass takes at most this many accounts per step.
CLEANUP_CONCURRENCY = env.int("CLEANUP_CONCURRENCY", default=8)
CLEANUP_PASS_SIZE = env.int("CLEANUP_PASS_SIZE", default=2000)
# Coder's API rate limit per client and route (its --api-rate-limit, 512 by default; 0: don't
# pace). Requests on the shared routes (create user, list workspaces, find a template) are
# paced across every process to stay under it (registrations/rate_budget.py).
CODER_RATE_LIMIT = env.int("CODER_RATE_LIMIT", default=512)
WORKSPACE_DELETE_MAX_FAILURES = env.int("WORKSPACE_DELETE_MAX_FAILURES", default=3)
# Who hears that an account is ready, failed or deleted (registrations/events.py): dotted
# paths of notify(event) functions.
ACCOUNT_NOTIFIERS = env.list(
    "ACCOUNT_NOTIFIERS",
    default=[
        "registrations.notifiers.log.notify",
        "registrations.notifiers.instructor_alerts.notify",
    ],
)
# Failure alerts (registrations/notifiers/instructor_alerts.py): the classroom's owner and
# co-instructors get one email per session listing the accounts that failed, at most one per
# ALERT_DIGEST_MINUTES, so a class failing together is one email, not one per student.
FAILURE_ALERTS = env.bool("FAILURE_ALERTS", default=True)
ALERT_DIGEST_MINUTES = env.int("ALERT_DIGEST_MINUTES", default=5)

# Email: EMAIL_URL picks the backend (smtp+tls://user:pass@host:587, consolemail:// prints).
globals().update(env.email_url("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="classroom-sms@localhost")

# Error reporting: Sentry, off unless SENTRY_DSN is set. Events are scrubbed of phone numbers,
# SMS bodies and passwords before they leave the process (registrations/error_reporting.py).
SENTRY_DSN = env.str("SENTRY_DSN", default="")
SENTRY_ENVIRONMENT = env.str("SENTRY_ENVIRONMENT", default="production")
SENTRY_RELEASE = env.str("SENTRY_RELEASE", default="")
SENTRY_TRACES_SAMPLE_RATE = env.float("SENTRY_TRACES_SAMPLE_RATE", default=0.0)
# Off by default: a stack frame's locals can hold an SMS body under any name, which no scrubber
# can recognise by shape (phones, passwords and tokens it can).
SENTRY_INCLUDE_LOCAL_VARIABLES = env.bool("SENTRY_INCLUDE_LOCAL_VARIABLES", default=False)
if SENTRY_DSN:
    from registrations.error_reporting import init_sentry

    init_sentry(
        SENTRY_DSN,
        environment=SENTRY_ENVIRONMENT,
        release=SENTRY_RELEASE,
        traces_sample_rate=SENTRY_TRACES_SAMPLE_RATE,
        include_local_variables=SENTRY_INCLUDE_LOCAL_VARIABLES,
    )

# Metrics: /metrics (Prometheus) answers only requests bearing this token; unset = 404.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")

# django-q2
REDIS_URL = env.str("REDIS_URL", default="")
# Successful tasks kept for the admin's "Successful tasks" list (failures are all kept);
# 0 keeps them all, -1 none (django-q2's save_limit).
Q_SAVE_LIMIT = env.int("Q_SAVE_LIMIT", default=1000)
Q_CLUSTER = {
    "name": env.str("Q_CLUSTER_NAME", default="classroom-sms"),
    # Tasks are I/O-bound: provisioning a student waits some 200 ms on Coder and Twilio for
    # a few ms of CPU, so a class burst is served as fast as workers x 5 students a second
    # (README, Performance). Forked workers share most memory (about 20 MB each of their own);
    # each holds a database connection.
    "workers": env.int("Q_WORKERS", default=16),
    # A task is killed after `timeout` s; `retry` must exceed it or the ORM broker re-delivers
    # a task that is still running. 120 s covers a task's worst case against a hung Coder
    # (bounded client retries of 10 s calls); the sweep's STALE_AFTER_SECONDS stays above it.
    "timeout": 120,
    "retry": 180,
    # Redeliveries of a crashing task are bounded; the sweep re-drives rows from the database.
    "max_attempts": 3,
    # Small prefetch: a killed cluster loses what it pulled from Redis (the sweep recovers it).
    "queue_limit": env.int("Q_QUEUE_LIMIT", default=16),
    # Periodic jobs never replay missed runs after downtime; the next run catches up itself.
    "catch_up": False,
    # Successes are saved without django-q2's pruning, which locks and loads every saved
    # success on each task it saves; the sweep keeps the newest Q_SAVE_LIMIT instead.
    "save_limit": -1 if Q_SAVE_LIMIT < 0 else 0,
    "ack_failures": True,
    "poll": 0.1,
    "label": "Background tasks",
    # django-q2 configures its own logger from this.
    "log_level": env.str("Q_LOG_LEVEL", default="INFO"),
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# Logging: no phone numbers, bodies or passwords are ever logged by our code.
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # Query strings may hold a full phone number (the account search): never logged.
    "filters": {"no_query_strings": {"()": "registrations.log_filters.DropQueryStrings"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        # twilio-python logs every request (URL, headers, phone numbers) at INFO.
        "twilio": {"level": "WARNING"},
        # runserver logs each request line whole; django.request names paths (a guard only).
        "django.server": {
            "handlers": ["console"],
            "level": "INFO",
            "filters": ["no_query_strings"],
            "propagate": False,
        },
        "django.request": {"filters": ["no_query_strings"]},
    },
}
