"""Extending a session texts every student the new expiry (unless the instructor says not to),
so no SMS a student keeps states a time that is no longer true; and the goodbye text is kind
and says what was deleted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from registrations import expiry_notice, texts
from registrations.models import AccountStatus, OptOut, OutboundKind, OutboundMessage
from tests.conftest import make_account, queued_tasks

pytestmark = pytest.mark.django_db

EXPIRES = datetime(2025, 3, 4, 22, 30, tzinfo=UTC)


def test_the_new_expiry_text_is_one_segment_in_the_session_zone(open_session):
    open_session.time_zone = "America/New_York"
    account = make_account(open_session, coder_username="cs-k7pw3m", expires_at=EXPIRES)
    text = texts.new_expiry_text(account)
    assert text == (
        "Good news: your instructor extended the class. Your Coder account cs-k7pw3m now "
        "expires Tue Mar 4 17:30 EST."
    )
    assert texts.is_gsm7(text) and texts.segments(text) == 1
    account.coder_username = "x" * 32  # the longest username Coder allows still fits
    assert texts.segments(texts.new_expiry_text(account)) == 1


def test_the_goodbye_is_kind_says_what_was_deleted_and_fits_one_segment(open_session):
    account = make_account(open_session, coder_username="cs-k7pw3m")
    text = texts.deleted_text(account)
    assert text == (
        "Your Coder account cs-k7pw3m and its workspaces have been deleted. "
        "Thank you for taking part, and happy coding!"
    )
    account.coder_username = "x" * 32
    assert texts.is_gsm7(texts.deleted_text(account))
    assert texts.segments(texts.deleted_text(account)) == 1


def test_notify_texts_each_student_holding_credentials_once(open_session, broker):
    active = make_account(open_session, coder_username="cs-aaaaaa", status=AccountStatus.ACTIVE)
    make_account(open_session, "+14155550124", status=AccountStatus.REQUESTED)
    make_account(open_session, "+14155550125", status=AccountStatus.FAILED)
    make_account(
        open_session,
        "+14155550126",
        coder_username="cs-bbbbbb",
        status=AccountStatus.SUSPENDING,
        deletion_requested_at=timezone.now(),
    )
    OptOut.objects.create(phone="+14155550127")
    make_account(open_session, "+14155550127", coder_username="cs-cccccc", status="active")

    assert expiry_notice.notify_new_expiry(open_session) == 1

    sent = OutboundMessage.objects.exclude(status="opted_out")
    assert [(m.account, m.kind) for m in sent] == [(active, OutboundKind.NOTICE)]
    assert "now expires" in sent.get().body


def test_extend_texts_the_new_expiry_when_asked(client, instructor, open_session, broker,
                                                 django_capture_on_commit_callbacks):
    client.force_login(instructor)
    account = make_account(open_session, coder_username="cs-aaaaaa", status="active")
    url = reverse("admin:registrations_session_extend", args=[open_session.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"minutes": "30", "notify": "on"}, follow=True)
    [text] = [str(m) for m in response.context["messages"]]
    new_expiry = open_session.expires_at + timedelta(minutes=30)
    assert text == (
        f"Extended “{open_session}” by 30 minutes: accounts now expire at "
        f"{new_expiry:%a %b} {new_expiry.day} {new_expiry:%Y, %H:%M} UTC. "
        "Texting the new expiry to 1 student."
    )
    message = OutboundMessage.objects.get()
    assert message.account == account and message.kind == OutboundKind.NOTICE
    assert [t["func"] for t in queued_tasks(broker)] == ["registrations.tasks.send_sms"]


def test_extend_without_the_box_ticked_texts_nobody_and_says_so(client, instructor, open_session):
    client.force_login(instructor)
    make_account(open_session, coder_username="cs-aaaaaa", status="active")
    url = reverse("admin:registrations_session_extend", args=[open_session.pk])
    response = client.post(url, {"minutes": "30"}, follow=True)
    [text] = [str(m) for m in response.context["messages"]]
    assert text.endswith("Students were not texted: their SMS still show the old expiry.")
    assert ".." not in text
    assert not OutboundMessage.objects.exists()
