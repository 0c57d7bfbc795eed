"""The expiry warning: one SMS, the session's warn_minutes before expiry, saying when and to
save work; 0 minutes turns it off."""

from __future__ import annotations

import zoneinfo
from datetime import timedelta

import pytest
from django.utils import timezone

from registrations import expiry
from registrations.models import (
    Account,
    AccountStatus,
    OptOut,
    OutboundKind,
    OutboundMessage,
    OutboundStatus,
)
from tests.conftest import STUDENT_PHONE, make_session

pytestmark = pytest.mark.django_db


def account_expiring_in(session, minutes: float, phone: str = STUDENT_PHONE, **fields) -> Account:
    fields.setdefault("status", AccountStatus.ACTIVE)
    fields.setdefault("coder_username", "cs-kavepi")
    return Account.objects.create(
        session=session, phone=phone,
        expires_at=timezone.now() + timedelta(minutes=minutes), **fields,
    )


def warnings() -> list[OutboundMessage]:
    return list(OutboundMessage.objects.filter(kind=OutboundKind.WARNING))


def test_warning_reaches_twilio_saying_when_and_to_save_work(
    open_session, fake_twilio, sync_tasks, django_capture_on_commit_callbacks
):
    open_session.time_zone = "America/New_York"
    open_session.save()
    account = account_expiring_in(open_session, 9.5)

    with django_capture_on_commit_callbacks(execute=True):
        assert expiry.warn_due() == 1

    [sent] = fake_twilio.messages_to(STUDENT_PHONE)
    local = account.expires_at.astimezone(zoneinfo.ZoneInfo("America/New_York"))
    assert sent["body"] == (
        f"Your Coder account cs-kavepi will be deleted in 10 min "
        f"({local:%a %b} {local.day} {local:%H:%M %Z}). Save your work somewhere else now."
    )
    assert sent["num_segments"] == 1
    account.refresh_from_db()
    assert account.warned_at is not None


def test_warning_is_sent_once(open_session):
    account_expiring_in(open_session, 5)

    assert expiry.warn_due() == 1
    assert expiry.warn_due() == 0
    assert len(warnings()) == 1


def test_no_warning_before_the_window_opens(open_session):
    account_expiring_in(open_session, 11)

    assert expiry.warn_due() == 0
    assert warnings() == []


def test_each_session_uses_its_own_warn_minutes(classroom):
    early = make_session(classroom, "python lab 4", warn_minutes=30)
    late = make_session(classroom, "python lab 5", warn_minutes=5)
    warned = account_expiring_in(early, 20, phone="+14155550101")
    account_expiring_in(late, 20, phone="+14155550102", coder_username="cs-tomadu")

    assert expiry.warn_due() == 1
    assert [m.account_id for m in warnings()] == [warned.pk]
    assert "in 20 min" in warnings()[0].body


def test_zero_warn_minutes_turns_the_warning_off(classroom):
    session = make_session(classroom, warn_minutes=0)
    account_expiring_in(session, 1)

    assert expiry.warn_due() == 0
    assert warnings() == []


def test_session_override_text_is_used(open_session):
    open_session.warning_message = "Lab closes in {minutes} min. Push your code to GitHub!"
    open_session.save()
    account_expiring_in(open_session, 3)

    expiry.warn_due()

    assert warnings()[0].body == "Lab closes in 3 min. Push your code to GitHub!"


@pytest.mark.parametrize(
    "fields",
    [
        {"status": AccountStatus.PROVISIONING},
        {"status": AccountStatus.FAILED},
        {"status": AccountStatus.SUSPENDING, "deletion_requested_at": timezone.now()},
        {"deletion_requested_at": timezone.now()},
    ],
    ids=["provisioning", "failed", "being-deleted", "deletion-requested"],
)
def test_only_active_accounts_not_being_deleted_are_warned(open_session, fields):
    account_expiring_in(open_session, 5, **fields)

    assert expiry.warn_due() == 0
    assert warnings() == []


def test_expired_account_is_not_warned(open_session):
    account_expiring_in(open_session, -1)

    assert expiry.warn_due() == 0


def test_opted_out_phone_is_marked_warned_but_nothing_is_sent(
    open_session, broker, django_capture_on_commit_callbacks
):
    OptOut.objects.create(phone=STUDENT_PHONE)
    account = account_expiring_in(open_session, 5)

    with django_capture_on_commit_callbacks(execute=True):
        assert expiry.warn_due() == 1
        assert expiry.warn_due() == 0

    account.refresh_from_db()
    assert account.warned_at is not None
    assert [m.status for m in warnings()] == [OutboundStatus.OPTED_OUT]
    assert broker.queue_size() == 0
