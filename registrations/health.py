"""Health report for /healthz: database, broker, worker heartbeat, integrations."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection
from django.utils import timezone

from registrations.checks import missing_coder_settings, missing_twilio_settings
from registrations.models import Heartbeat, IntegrationStatus

logger = logging.getLogger(__name__)

WORKER_HEARTBEAT = "worker"
# The scheduler runs one-minute jobs 30-90 s late, so allow a few minutes before calling it stale.
HEARTBEAT_STALE_AFTER = timedelta(minutes=3)
# Probes run at most once a minute and may skip a late tick: older than this, a result is stale.
PROBE_STALE_AFTER = timedelta(minutes=5)


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


def probe_results() -> dict[str, IntegrationStatus]:
    """Return the worker's latest probe result of each integration (registrations.probes)."""
    try:
        return {row.name: row for row in IntegrationStatus.objects.all()}
    except Exception as exc:
        logger.warning("health: probe results unavailable: %s", type(exc).__name__)
        return {}


def is_stale(row: IntegrationStatus) -> bool:
    return row.checked_at is not None and timezone.now() - row.checked_at > PROBE_STALE_AFTER


def check_integration(
    missing: list[str], row: IntegrationStatus | None, *, with_version: bool = False
) -> dict[str, Any]:
    """Say whether an integration is configured and what its last probe found (no call made)."""
    report: dict[str, Any] = {"configured": not missing, "missing": missing}
    # A result from before the settings were removed says nothing about them now.
    last = row if not missing and row is not None and row.checked_at is not None else None
    if last is None or last.checked_at is None:
        detail = "not configured" if missing else "not checked yet"
        report |= {"ok": None, "detail": detail, "checked_at": None, "stale": False}
    else:
        report |= {
            "ok": last.ok,
            "detail": last.detail,
            "checked_at": last.checked_at.isoformat(),
            "stale": is_stale(last),
        }
    if with_version:
        report["version"] = (last.version or None) if last is not None else None
    return report


def health_report() -> tuple[bool, dict[str, Any]]:
    """Return (can_serve, report). The app can serve when the database and broker answer."""
    database = check_database()
    broker = check_broker() if database["ok"] or settings.REDIS_URL else {"ok": False}
    worker = check_worker() if database["ok"] else {"ok": False}
    probed = probe_results() if database["ok"] else {}
    twilio = check_integration(missing_twilio_settings(), probed.get("twilio"))
    coder = check_integration(missing_coder_settings(), probed.get("coder"), with_version=True)
    can_serve = database["ok"] and broker["ok"]
    # A configured integration that fails degrades the app; it never takes it down (texts are
    # still recorded, and messages wait until Twilio or Coder work again).
    working = all(i["configured"] and i["ok"] is not False for i in (twilio, coder))
    if not can_serve:
        status = "down"
    elif worker["ok"] and working:
        status = "ok"
    else:
        status = "degraded"
    return can_serve, {
        "status": status,
        "database": database,
        "broker": broker,
        "worker": worker,
        "twilio": twilio,
        "coder": coder,
        "time": timezone.now().isoformat(),
    }
