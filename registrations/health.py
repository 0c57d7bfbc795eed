"""Health report for /healthz: database, broker, worker heartbeat, integrations."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from registrations.checks import missing_coder_settings, missing_twilio_settings
from registrations.models import Heartbeat

logger = logging.getLogger(__name__)

WORKER_HEARTBEAT = "worker"
# The scheduler runs one-minute jobs 30-90 s late, so allow a few minutes before calling it stale.
HEARTBEAT_STALE_AFTER = timedelta(minutes=3)


def stamp_heartbeat(name: str = WORKER_HEARTBEAT) -> None:
    Heartbeat.objects.update_or_create(name=name, defaults={"beat_at": timezone.now()})


def check_database() -> dict[str, Any]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return {"ok": True, "vendor": connection.vendor}
    except Exception as exc:
        logger.warning("health: database unavailable: %s", type(exc).__name__)
        return {"ok": False, "vendor": connection.vendor, "error": type(exc).__name__}


def check_broker() -> dict[str, Any]:
    if settings.REDIS_URL:
        try:
            import redis

            redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2).ping()
            return {"ok": True, "kind": "redis"}
        except Exception as exc:
            logger.warning("health: redis unavailable: %s", type(exc).__name__)
            return {"ok": False, "kind": "redis", "error": type(exc).__name__}
    # The ORM broker lives in the database.
    return {"ok": check_database()["ok"], "kind": "orm"}


def check_worker() -> dict[str, Any]:
    try:
        beat = Heartbeat.objects.filter(name=WORKER_HEARTBEAT).first()
    except Exception:
        return {"ok": False, "last_heartbeat": None, "age_seconds": None}
    if beat is None:
        return {"ok": False, "last_heartbeat": None, "age_seconds": None}
    age = timezone.now() - beat.beat_at
    return {
        "ok": age <= HEARTBEAT_STALE_AFTER,
        "last_heartbeat": beat.beat_at.isoformat(),
        "age_seconds": round(age.total_seconds(), 1),
    }


def health_report() -> tuple[bool, dict[str, Any]]:
    """Return (can_serve, report). The app can serve when the database and broker answer."""
    database = check_database()
    broker = check_broker() if database["ok"] or settings.REDIS_URL else {"ok": False}
    worker = check_worker() if database["ok"] else {"ok": False}
    twilio_missing = missing_twilio_settings()
    coder_missing = missing_coder_settings()
    can_serve = database["ok"] and broker["ok"]
    if not can_serve:
        status = "down"
    elif worker["ok"] and not twilio_missing and not coder_missing:
        status = "ok"
    else:
        status = "degraded"
    return can_serve, {
        "status": status,
        "database": database,
        "broker": broker,
        "worker": worker,
        "twilio": {"configured": not twilio_missing, "missing": twilio_missing},
        "coder": {"configured": not coder_missing, "missing": coder_missing},
        "time": timezone.now().isoformat(),
    }
