"""Database constraints hold the invariants even when code forgets them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from registrations.models import Account, AccountStatus, InboundMessage, Session, SessionState
from tests.conftest import make_session

pytestmark = pytest.mark.django_db


def account(session: Session, phone: str | None = "+14155550100", **fields) -> Account:
    return Account.objects.create(
        session=session, phone=phone, expires_at=session.expires_at, **fields
    )


def test_one_account_per_phone_per_session(open_session):
    account(open_session)
    with pytest.raises(IntegrityError), transaction.atomic():
        account(open_session)


def test_purged_phones_are_null_and_never_collide(open_session):
    account(open_session, phone=None, status=AccountStatus.DELETED)
    account(open_session, phone=None, status=AccountStatus.DELETED)
    assert Account.objects.filter(phone__isnull=True).count() == 2


def test_empty_string_phone_is_rejected(open_session):
    with pytest.raises(IntegrityError), transaction.atomic():
        account(open_session, phone="")


def test_status_must_be_a_known_value(open_session):
    with pytest.raises(IntegrityError), transaction.atomic():
        account(open_session, status="bogus")


def test_message_sid_is_unique():
    InboundMessage.objects.create(message_sid="SM1", outcome="provisioned")
    with pytest.raises(IntegrityError), transaction.atomic():
        InboundMessage.objects.create(message_sid="SM1", outcome="duplicate")


def test_live_coder_usernames_are_unique_but_deleted_ones_may_repeat(open_session):
    account(open_session, phone="+14155550101", coder_username="cs-abc", status="deleted")
    account(open_session, phone="+14155550102", coder_username="cs-abc", status="active")
    with pytest.raises(IntegrityError), transaction.atomic():
        account(open_session, phone="+14155550103", coder_username="cs-abc", status="active")


def test_session_times_must_be_ordered(classroom):
    now = timezone.now()
    with pytest.raises(IntegrityError), transaction.atomic():
        Session.objects.create(
            classroom=classroom,
            phrase="late lab",
            opens_at=now,
            closes_at=now - timedelta(1),
            expires_at=now + timedelta(1),
        )


def test_phrase_is_stored_as_typed_and_matched_normalised(classroom):
    session = make_session(classroom, phrase="  Python   Lab 3! ")
    assert session.phrase == "  Python   Lab 3! "
    assert session.phrase_normalized == "python lab 3"


def test_session_state_follows_its_times(classroom):
    session = make_session(classroom)
    now = timezone.now()
    assert session.state_at(now) == SessionState.OPEN
    assert session.state_at(session.opens_at - timedelta(seconds=1)) == SessionState.SCHEDULED
    assert session.state_at(session.closes_at) == SessionState.CLOSED
    assert session.state_at(session.expires_at) == SessionState.ENDED


def test_str_representations_are_readable(open_session):
    row = account(open_session, coder_username="cs-kite")
    assert str(open_session) == "CS 101 · python lab 3"
    assert str(row) == "cs-kite"
    assert row.masked_phone == "+•••••••••00"
