"""Replies come from the number the student texted, so the conversation stays in one thread."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from registrations import expiry, sms
from registrations.models import Account, AccountStatus, OutboundKind
from tests.conftest import OUR_NUMBER, STUDENT_PHONE, make_account

SECOND_NUMBER = "+14155550999"
SERVICE_SID = "MG" + "3" * 32


@pytest.fixture
def services(fake_coder, fake_twilio, settings):
    settings.TWILIO_OWN_NUMBERS = [SECOND_NUMBER]
    return fake_twilio


def test_a_student_who_texted_a_second_number_hears_back_from_it(
    open_session, services, send_sms, sync_tasks, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        assert send_sms("python lab 3", To=SECOND_NUMBER).status_code == 200
    account = Account.objects.get()
    assert account.status == AccountStatus.ACTIVE
    Account.objects.filter(pk=account.pk).update(expires_at=timezone.now() + timedelta(minutes=5))

    with django_capture_on_commit_callbacks(execute=True):
        assert expiry.warn_due() == 1

    sent = services.messages_to(STUDENT_PHONE)
    assert [m["from"] for m in sent] == [SECOND_NUMBER, SECOND_NUMBER]
    assert account.login_email in sent[0]["body"]  # the credentials, then the warning


def test_the_texted_number_wins_over_the_messaging_service(
    open_session, services, settings, send_sms, sync_tasks, django_capture_on_commit_callbacks
):
    settings.TWILIO_MESSAGING_SERVICE_SID = SERVICE_SID
    with django_capture_on_commit_callbacks(execute=True):
        send_sms("python lab 3", To=SECOND_NUMBER)
    [credentials] = services.messages_to(STUDENT_PHONE)
    assert (credentials["from"], credentials["messaging_service_sid"]) == (SECOND_NUMBER, None)


def test_an_invited_student_hears_from_the_configured_sender(
    open_session, services, sync_tasks, django_capture_on_commit_callbacks
):
    account = make_account(open_session, source="invite")
    with django_capture_on_commit_callbacks(execute=True):
        sms.queue_sms(phone=STUDENT_PHONE, kind=OutboundKind.NOTICE, body="Hi", account=account)
    [message] = services.messages_to(STUDENT_PHONE)
    assert message["from"] == OUR_NUMBER
