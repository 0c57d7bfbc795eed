"""/healthz reports database, broker, worker heartbeat and integrations."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from registrations.health import stamp_heartbeat
from registrations.models import Heartbeat

pytestmark = pytest.mark.django_db


def test_healthy_app_with_recent_heartbeat_reports_ok(client, settings):
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN = "AC1", "token"
    settings.TWILIO_FROM_NUMBER = "+15005550006"
    settings.CODER_URL, settings.CODER_SESSION_TOKEN = "https://coder.test", "token"
    stamp_heartbeat()
    response = client.get("/healthz")
    assert response.status_code == 200
    report = response.json()
    assert report["status"] == "ok"
    assert report["database"]["ok"] and report["broker"]["ok"] and report["worker"]["ok"]
    assert report["twilio"]["configured"] and report["coder"]["configured"]


def test_missing_heartbeat_and_settings_is_degraded_but_serving(client, settings):
    settings.CODER_URL = ""
    response = client.get("/healthz")
    assert response.status_code == 200
    report = response.json()
    assert report["status"] == "degraded"
    assert report["worker"] == {"ok": False, "last_heartbeat": None, "age_seconds": None}
    assert "CODER_URL" in report["coder"]["missing"]


def test_stale_heartbeat_is_reported(client):
    Heartbeat.objects.create(name="worker", beat_at=timezone.now() - timedelta(minutes=10))
    worker = client.get("/healthz").json()["worker"]
    assert worker["ok"] is False
    assert worker["age_seconds"] >= 600


def test_unreachable_broker_answers_503(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"]["ok"] is False
    assert response.json()["status"] == "down"


def test_health_endpoint_is_get_only(client):
    assert client.post("/healthz").status_code == 405


def test_worker_start_stamps_the_heartbeat():
    from django_q.signals import post_spawn

    post_spawn.send(sender="django_q", proc_name="Worker-1")
    assert Heartbeat.objects.get(name="worker").beat_at > timezone.now() - timedelta(seconds=5)
