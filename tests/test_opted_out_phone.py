"""A phone that texted STOP gets no Coder user and no new password (nothing could reach it),
and the message log says why."""

from __future__ import annotations

import pytest
from django.urls import reverse

from registrations.models import (
    Account,
    AccountStatus,
    InboundMessage,
    InboundOutcome,
    OutboundMessage,
)
from tests.conftest import make_account

pytestmark = pytest.mark.django_db

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
LABEL = "Phone has opted out (STOP); nothing created or sent"


def last_message() -> InboundMessage:
    return InboundMessage.objects.order_by("-pk").first()


def test_an_opted_out_phone_texting_the_phrase_gets_nothing(
    open_session, send_sms, fake_coder, sync_tasks, django_capture_on_commit_callbacks
):
    send_sms("STOP")

    with django_capture_on_commit_callbacks(execute=True):
        response = send_sms("python lab 3")

    assert response.content.decode() == EMPTY_TWIML
    assert not Account.objects.exists()
    assert not fake_coder.requests("POST")
    assert not OutboundMessage.objects.exists()
    message = last_message()
    assert (message.outcome, message.session) == (InboundOutcome.OPTED_OUT_PHRASE, open_session)
    assert message.get_outcome_display() == LABEL


def test_resend_from_an_opted_out_phone_sets_no_new_password(
    open_session, send_sms, broker, django_capture_on_commit_callbacks
):
    account = make_account(open_session, status=AccountStatus.ACTIVE, coder_username="cs-k7pw3m")
    send_sms("STOP")

    with django_capture_on_commit_callbacks(execute=True) as queued:
        assert send_sms("RESEND").content.decode() == EMPTY_TWIML
        assert send_sms("python lab 3").content.decode() == EMPTY_TWIML

    assert queued == []
    account.refresh_from_db()
    assert (account.resend_count, account.last_resent_at) == (0, None)
    assert last_message().outcome == InboundOutcome.OPTED_OUT_PHRASE


def test_after_start_the_phrase_enrolls_again(open_session, send_sms):
    send_sms("STOP")
    send_sms("START")

    send_sms("python lab 3")

    assert last_message().outcome == InboundOutcome.PROVISIONED
    assert Account.objects.get().session == open_session


def test_done_still_deletes_an_opted_out_phones_account(open_session, send_sms):
    account = make_account(open_session, status=AccountStatus.ACTIVE, coder_username="cs-k7pw3m")
    send_sms("STOP")

    send_sms("DONE")

    account.refresh_from_db()
    assert account.deletion_requested_at is not None
    assert last_message().outcome == InboundOutcome.DONE


def test_the_instructor_sees_why_in_the_message_log(open_session, send_sms, client, instructor):
    send_sms("STOP")
    send_sms("python lab 3")
    client.force_login(instructor)

    page = client.get(reverse("admin:registrations_inboundmessage_changelist"))

    assert page.status_code == 200
    assert LABEL in page.content.decode()
