"""/healthz and the admin banner report database, broker, worker heartbeat and integrations:
configured or not, and whether the worker's last probe found them working."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from registrations import tasks
from registrations.health import stamp_heartbeat
from registrations.models import Heartbeat, IntegrationStatus

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


@pytest.fixture
def probed(fake_coder, fake_twilio):
    """Run the worker's heartbeat (and so its probe) against the fakes, then forget its requests."""

    def probe() -> None:
        tasks.heartbeat()
        fake_coder.clear_log()
        fake_twilio.clear()

    return probe


def test_healthz_reports_working_integrations_and_the_coder_version(client, probed):
    probed()
    report = client.get("/healthz").json()
    assert report["status"] == "ok"
    coder, twilio = report["coder"], report["twilio"]
    assert (coder["configured"], coder["ok"], coder["detail"]) == (True, True, "")
    assert (coder["version"], coder["stale"]) == ("v2.28.0-fake", False)
    assert coder["checked_at"] == IntegrationStatus.objects.get(name="coder").checked_at.isoformat()
    assert (twilio["configured"], twilio["ok"], twilio["stale"]) == (True, True, False)


def test_healthz_never_calls_coder_or_twilio(client, probed, fake_coder, fake_twilio):
    probed()
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    assert fake_coder.requests_log == [] and fake_twilio.requests_log == []


def test_a_rejected_token_degrades_but_never_takes_the_app_down(client, probed, settings):
    settings.CODER_SESSION_TOKEN = "not-the-token"
    probed()
    response = client.get("/healthz")
    assert response.status_code == 200
    report = response.json()
    assert report["status"] == "degraded"
    assert (report["coder"]["configured"], report["coder"]["ok"]) == (True, False)
    assert report["coder"]["detail"] == "token rejected (401)"


def test_rejected_twilio_credentials_degrade(client, probed, settings):
    settings.TWILIO_AUTH_TOKEN = "not-the-token"
    probed()
    report = client.get("/healthz").json()
    assert report["status"] == "degraded"
    assert report["twilio"]["ok"] is False
    assert report["twilio"]["detail"] == "credentials rejected (401, code 20003)"


def test_an_integration_never_probed_is_null(client, fake_coder):
    coder = client.get("/healthz").json()["coder"]
    assert (coder["configured"], coder["ok"], coder["checked_at"]) == (True, None, None)
    assert (coder["detail"], coder["version"]) == ("not checked yet", None)


def test_a_stale_probe_is_reported_as_such(client, probed):
    probed()
    IntegrationStatus.objects.update(checked_at=timezone.now() - timedelta(minutes=10))
    report = client.get("/healthz").json()
    assert report["coder"]["stale"] is True and report["twilio"]["stale"] is True
    assert report["coder"]["ok"] is True  # the last known answer, marked stale


def test_an_unconfigured_integration_ignores_old_probe_results(client, probed, settings):
    probed()
    settings.CODER_URL = ""
    coder = client.get("/healthz").json()["coder"]
    assert (coder["configured"], coder["ok"], coder["detail"]) == (False, None, "not configured")


def test_admin_says_coder_rejects_the_token(client, superuser, probed, settings):
    settings.CODER_SESSION_TOKEN = "not-the-token"
    probed()
    client.force_login(superuser)
    for url in (reverse("admin:index"), reverse("admin:registrations_session_dashboard")):
        content = client.get(url).content.decode()
        assert "Coder rejects the session token: check CODER_SESSION_TOKEN." in content
        assert "Twilio accepts our credentials." in content


def test_admin_says_twilio_rejects_our_credentials(client, superuser, probed, settings):
    settings.TWILIO_AUTH_TOKEN = "not-the-token"
    probed()
    client.force_login(superuser)
    content = client.get(reverse("admin:index")).content.decode()
    assert "Twilio rejects our credentials: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN." in (
        content
    )


def test_admin_shows_the_coder_version_when_it_works(client, superuser, probed):
    probed()
    client.force_login(superuser)
    content = client.get(reverse("admin:index")).content.decode()
    assert "Coder v2.28.0-fake accepts the session token." in content
    assert 'class="cs-warnings"' not in content


def test_admin_says_when_the_probe_is_stale(client, superuser, probed):
    probed()
    IntegrationStatus.objects.update(checked_at=timezone.now() - timedelta(minutes=10))
    client.force_login(superuser)
    content = client.get(reverse("admin:index")).content.decode()
    assert "Coder was last checked 10 minutes ago" in content
    assert "accepts the session token" not in content


def test_admin_says_coder_is_not_reachable(client, superuser, probed, fake_coder):
    fake_coder.stop()
    probed()
    client.force_login(superuser)
    content = client.get(reverse("admin:index")).content.decode()
    assert "Coder is not reachable: network error (ConnectionError)." in content
