"""Settings come from the environment: DATABASE_URL and REDIS_URL switch database and broker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import json
from django.conf import settings
import django
django.setup()
print(json.dumps({
    "engine": settings.DATABASES["default"]["ENGINE"],
    "name": str(settings.DATABASES["default"]["NAME"]),
    "options": settings.DATABASES["default"].get("OPTIONS", {}),
    "conn_max_age": settings.DATABASES["default"].get("CONN_MAX_AGE"),
    "q": {k: v for k, v in settings.Q_CLUSTER.items()},
    "debug": settings.DEBUG,
    "secret": settings.SECRET_KEY,
}))
"""


def load_settings(**env: str) -> dict | str:
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "REDIS_URL", "DEBUG", "SECRET_KEY"))
    }
    environment.update({"DJANGO_SETTINGS_MODULE": "classroom_sms.settings", "ENV_FILE": "", **env})
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=environment, capture_output=True, text=True
    )
    if done.returncode:
        return done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_defaults_are_sqlite_in_wal_mode_and_the_orm_broker():
    loaded = load_settings(SECRET_KEY="x")
    assert loaded["engine"] == "registrations.sqlite"  # Django's, waiting for locks in short steps
    assert loaded["name"].endswith("var/db.sqlite3")
    assert loaded["options"]["transaction_mode"] == "IMMEDIATE"
    assert "journal_mode=WAL" in loaded["options"]["init_command"]
    assert loaded["q"]["orm"] == "default" and "redis" not in loaded["q"]
    assert loaded["debug"] is False


def test_database_url_switches_to_postgresql_with_persistent_connections():
    loaded = load_settings(SECRET_KEY="x", DATABASE_URL="postgres://u:p@db.example:5432/classroom")
    # Django's, checking a kept connection without a round trip (registrations/postgresql).
    assert loaded["engine"] == "registrations.postgresql"
    assert loaded["name"] == "classroom"
    # Persistent for as long as they work: each is health-checked as a request starts.
    assert loaded["conn_max_age"] is None


def test_conn_max_age_limits_a_connections_life_when_given():
    assert load_settings(SECRET_KEY="x", CONN_MAX_AGE="300")["conn_max_age"] == 300
    assert load_settings(SECRET_KEY="x", CONN_MAX_AGE="0")["conn_max_age"] == 0
    assert load_settings(SECRET_KEY="x", CONN_MAX_AGE="none")["conn_max_age"] is None


def test_redis_url_switches_the_broker_to_redis():
    loaded = load_settings(SECRET_KEY="x", REDIS_URL="redis://cache.example:6379/2")
    assert loaded["q"]["redis"] == "redis://cache.example:6379/2"
    assert "orm" not in loaded["q"]


def test_q_cluster_times_out_tasks_before_the_broker_redelivers_them():
    q = load_settings(SECRET_KEY="x")["q"]
    assert q["timeout"] < q["retry"]
    assert 0 < q["max_attempts"] <= 5
    assert q["catch_up"] is False


def test_secret_key_is_required_without_debug():
    assert "SECRET_KEY must be set" in load_settings()


def test_debug_generates_a_development_secret_key():
    loaded = load_settings(DEBUG="1")
    assert loaded["debug"] is True
    assert loaded["secret"].startswith("dev-insecure-")


def test_production_settings_pass_check_deploy():
    environment = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DEBUG")
    }
    environment.update(
        DJANGO_SETTINGS_MODULE="classroom_sms.settings",
        ENV_FILE="",
        SECRET_KEY="k" * 30 + "-production-secret-key-with-enough-entropy-9f8a7",
        ALLOWED_HOSTS="sms.example.edu",
        PUBLIC_BASE_URL="https://sms.example.edu",
    )
    done = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "check",
            "--deploy",
            "--fail-level",
            "WARNING",
            "--tag",
            "security",
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout
