"""The worker's minute heartbeat probes Coder and Twilio and stores what they answered."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from registrations import tasks
from registrations.models import IntegrationStatus
from tests.conftest import TWILIO_SID

pytestmark = pytest.mark.django_db

ACCOUNT_PATH = f"/2010-04-01/Accounts/{TWILIO_SID}.json"


def status(name: str) -> IntegrationStatus:
    return IntegrationStatus.objects.get(name=name)


@pytest.fixture
def coder_only(fake_coder, settings):
    settings.TWILIO_ACCOUNT_SID = ""
    return fake_coder


def test_a_good_coder_token_is_ok_with_the_version(coder_only):
    tasks.heartbeat()
    coder = status("coder")
    assert (coder.ok, coder.detail, coder.version) == (True, "", "v2.28.0-fake")
    assert coder.checked_at is not None
    paths = [r.path for r in coder_only.requests_log]
    assert paths == ["/api/v2/buildinfo", "/api/v2/users/me"]


def test_a_wrong_coder_token_is_reported_as_rejected(coder_only, settings):
    settings.CODER_SESSION_TOKEN = "not-the-token"
    tasks.heartbeat()
    coder = status("coder")
    assert (coder.ok, coder.detail, coder.problem) == (False, "token rejected (401)", "rejected")
    # The version needs no token, so it is known all the same.
    assert coder.version == "v2.28.0-fake"


def test_a_token_of_a_user_who_is_not_an_owner_is_reported(coder_only):
    coder_only.owner.roles = []
    tasks.heartbeat()
    coder = status("coder")
    assert (coder.ok, coder.detail) == (False, "token user is not an owner")


def test_coder_down_is_not_reachable(coder_only):
    coder_only.stop()
    tasks.heartbeat()
    coder = status("coder")
    assert coder.ok is False
    assert coder.detail.startswith("not reachable")
    assert coder.problem == "unreachable"


def test_the_probe_runs_at_most_once_a_minute(coder_only):
    tasks.heartbeat()
    tasks.heartbeat()
    assert len(coder_only.requests_log) == 2  # one probe: buildinfo and users/me
    IntegrationStatus.objects.update(claimed_at=timezone.now() - timedelta(seconds=61))
    tasks.heartbeat()
    assert len(coder_only.requests_log) == 4


def test_a_fixed_token_is_ok_at_the_next_minute(coder_only, settings):
    settings.CODER_SESSION_TOKEN = "not-the-token"
    tasks.heartbeat()
    settings.CODER_SESSION_TOKEN = coder_only.token
    IntegrationStatus.objects.update(claimed_at=timezone.now() - timedelta(seconds=61))
    tasks.heartbeat()
    assert (status("coder").ok, status("coder").detail) == (True, "")


def test_good_twilio_credentials_are_ok(fake_twilio, settings):
    settings.CODER_URL = ""
    tasks.heartbeat()
    twilio = status("twilio")
    assert (twilio.ok, twilio.detail) == (True, "")
    assert [(m, p) for m, p, _ in fake_twilio.requests_log] == [("GET", ACCOUNT_PATH)]


def test_wrong_twilio_credentials_are_reported_as_rejected(fake_twilio, settings):
    settings.CODER_URL = ""
    settings.TWILIO_AUTH_TOKEN = "not-the-token"
    tasks.heartbeat()
    twilio = status("twilio")
    assert twilio.ok is False
    assert twilio.detail == "credentials rejected (401, code 20003)"


def test_twilio_down_is_not_reachable(fake_twilio, settings):
    settings.CODER_URL = ""
    fake_twilio.stop()
    tasks.heartbeat()
    assert status("twilio").ok is False
    assert status("twilio").detail.startswith("not reachable")


def test_unconfigured_integrations_are_not_probed(settings):
    settings.CODER_URL = ""
    settings.TWILIO_ACCOUNT_SID = ""
    tasks.heartbeat()
    assert not IntegrationStatus.objects.exists()


def test_no_token_is_stored(fake_coder, fake_twilio):
    tasks.heartbeat()
    stored = " ".join(str(row) for row in IntegrationStatus.objects.values_list())
    assert fake_coder.token not in stored and fake_twilio.auth_token not in stored
