"""A worker killed mid-provisioning never leaves a student without credentials."""

from __future__ import annotations

from datetime import timedelta

import pytest
import responses
from django.utils import timezone
from django_q.exceptions import TimeoutException

from registrations import maintenance, provisioning
from registrations.models import Account, AccountStatus, OutboundKind
from tests.conftest import STUDENT_PHONE, TWILIO_SID

MESSAGES_URL = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"


def kill_the_task(request: object) -> None:
    raise TimeoutException("Task exceeded maximum timeout value")


@pytest.fixture
def twilio(twilio_settings, fake_coder):
    twilio_settings.TWILIO_API_BASE_URL = ""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        mock.add_passthru(fake_coder.url)
        yield mock


def test_kill_while_texting_credentials_is_recovered_with_a_new_password(
    open_session, fake_coder, twilio, settings, sync_tasks, django_capture_on_commit_callbacks
):
    settings.STALE_AFTER_SECONDS = 0  # the sweep's lease on a killed task runs out at once
    account = Account.objects.create(
        session=open_session, phone=STUDENT_PHONE, expires_at=open_session.expires_at
    )
    # django-q2 kills a task by raising inside it: here, while the credentials SMS is in flight.
    twilio.add_callback(responses.POST, MESSAGES_URL, callback=kill_the_task)
    with pytest.raises(TimeoutException):
        provisioning.provision(account.pk)
    account.refresh_from_db()
    assert account.status == AccountStatus.ACTIVE and account.credentials_sent_at is None

    twilio.remove(responses.POST, MESSAGES_URL)
    twilio.post(MESSAGES_URL, status=201, json={"sid": "SM" + "b" * 32, "status": "queued"})
    with django_capture_on_commit_callbacks(execute=True):
        maintenance.sweep(timezone.now() + timedelta(seconds=1))

    account.refresh_from_db()
    assert account.credentials_sent_at is not None
    sent = account.outbound_messages.filter(kind=OutboundKind.CREDENTIALS, twilio_sid__isnull=False)
    assert sent.count() == 1
    assert "Your Coder account is ready" in sent.get().body
    assert len(fake_coder.live_users()) == 1
