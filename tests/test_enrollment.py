"""Enrollment reads the session under its row lock, so an admin's end/extend always wins."""

from __future__ import annotations

from datetime import timedelta

from registrations import enrollment, session_lifecycle
from registrations.models import Account, InboundOutcome, Session
from tests.conftest import STUDENT_PHONE


def test_a_session_ended_after_it_was_read_enrolls_nobody(open_session, broker):
    stale_copy = Session.objects.get(pk=open_session.pk)
    session_lifecycle.end_session(open_session)

    result = enrollment.enroll(stale_copy, STUDENT_PHONE)

    assert result.outcome == InboundOutcome.CLOSED
    assert not Account.objects.exists()


def test_an_extension_made_after_the_read_sets_the_new_expiry(open_session, broker):
    stale_copy = Session.objects.get(pk=open_session.pk)
    session_lifecycle.extend_session(open_session, 60)

    result = enrollment.enroll(stale_copy, STUDENT_PHONE)

    open_session.refresh_from_db()
    assert result.outcome == InboundOutcome.PROVISIONED
    assert result.account.expires_at == open_session.expires_at
    assert result.account.expires_at > stale_copy.expires_at + timedelta(minutes=59)
