"""Ending a session expires every account now and starts the pipeline; extending moves every
account's expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from registrations import expiry, session_lifecycle
from registrations.models import (
    Account,
    AccountStatus,
    DeletionReason,
    OutboundKind,
    OutboundMessage,
    SessionState,
)
from tests.conftest import make_session, queued_tasks

pytestmark = pytest.mark.django_db


def account(session, number: int, **fields) -> Account:
    fields.setdefault("status", AccountStatus.ACTIVE)
    fields.setdefault("coder_username", f"cs-s{number}")
    fields.setdefault("expires_at", session.expires_at)
    fields.setdefault("phone", f"+1415555010{number}")
    return Account.objects.create(session=session, **fields)


def test_end_session_expires_everyone_now_and_starts_the_pipeline(
    open_session, broker, django_capture_on_commit_callbacks
):
    active = account(open_session, 1)
    unborn = account(open_session, 2, status=AccountStatus.REQUESTED, coder_username="")
    provisioning = account(open_session, 3, status=AccountStatus.PROVISIONING)
    revoked = account(open_session, 4, status=AccountStatus.SUSPENDING,
                      deletion_reason=DeletionReason.REVOKED,
                      deletion_requested_at=timezone.now() - timedelta(minutes=1))
    gone = account(open_session, 5, status=AccountStatus.DELETED, phone=None)

    with django_capture_on_commit_callbacks(execute=True):
        assert session_lifecycle.end_session(open_session) == 3

    open_session.refresh_from_db()
    assert open_session.state == SessionState.ENDED
    assert open_session.ended_at and open_session.expires_at <= timezone.now()
    for row in (active, unborn, provisioning, revoked, gone):
        row.refresh_from_db()
    assert (active.status, active.deletion_reason) == (AccountStatus.SUSPENDING, "ended")
    assert (unborn.status, unborn.phone) == (AccountStatus.DELETED, None)
    assert provisioning.status == AccountStatus.PROVISIONING  # its task hands it over
    assert provisioning.deletion_requested_at is not None
    assert revoked.deletion_reason == DeletionReason.REVOKED
    assert gone.deletion_requested_at is None
    assert all(a.expires_at <= timezone.now() for a in (active, provisioning, revoked))
    tasks = {(t["func"], t["args"]) for t in queued_tasks(broker)}
    (notice,) = OutboundMessage.objects.filter(account=unborn)
    assert tasks == {
        ("registrations.tasks.advance_deletion", (active.pk,)),
        ("registrations.tasks.send_sms", (notice.pk,)),
    }
    # The student who texted in time but was never set up is told, not left in silence.
    assert notice.kind == OutboundKind.FAILURE
    assert notice.body.startswith("Sorry, this class session ended before your Coder account")


def test_ending_a_session_that_has_not_opened_keeps_its_times_valid(classroom):
    later = timezone.now() + timedelta(hours=1)
    session = make_session(classroom, opens_at=later, closes_at=later + timedelta(minutes=30),
                           expires_at=later + timedelta(hours=2))

    session_lifecycle.end_session(session)

    session.refresh_from_db()
    assert session.opens_at < session.closes_at <= session.expires_at <= timezone.now()
    assert session.state == SessionState.ENDED


def test_ending_a_big_class_sends_a_batch_now_and_leaves_the_rest_due(
    open_session, settings, broker, django_capture_on_commit_callbacks
):
    settings.CLEANUP_BATCH_SIZE = 2
    for number in range(5):
        account(open_session, number)

    with django_capture_on_commit_callbacks(execute=True):
        assert session_lifecycle.end_session(open_session) == 5

    assert len(queued_tasks(broker)) == 2
    assert Account.objects.filter(status=AccountStatus.SUSPENDING).count() == 5
    assert Account.objects.filter(next_attempt_at__lte=timezone.now()).count() == 3


def test_extend_moves_the_session_and_every_live_accounts_expiry(open_session):
    before = open_session.expires_at
    warned = account(open_session, 1, warned_at=timezone.now())
    requested = account(open_session, 2, status=AccountStatus.REQUESTED, coder_username="")
    leaving = account(open_session, 3, deletion_requested_at=timezone.now(),
                      deletion_reason=DeletionReason.DONE, status=AccountStatus.SUSPENDING)

    session_lifecycle.extend_session(open_session, 45)

    open_session.refresh_from_db()
    for row in (warned, requested, leaving):
        row.refresh_from_db()
    assert open_session.expires_at == before + timedelta(minutes=45)
    assert warned.expires_at == requested.expires_at == before + timedelta(minutes=45)
    assert warned.warned_at is None  # warned again before the new expiry
    assert leaving.expires_at == before


def test_extended_account_is_warned_again_with_its_new_time(classroom):
    session = make_session(classroom, expires_at=timezone.now() + timedelta(minutes=40))
    student = account(session, 1, expires_at=timezone.now() + timedelta(minutes=5),
                      warned_at=timezone.now())

    session_lifecycle.extend_session(session, 30)
    assert expiry.warn_due() == 0
    Account.objects.filter(pk=student.pk).update(
        expires_at=timezone.now() + timedelta(minutes=8)  # time passes
    )

    assert expiry.warn_due() == 1
    assert "in 8 min" in student.outbound_messages.get().body


@pytest.mark.parametrize("minutes", [0, -5])
def test_extend_needs_a_positive_number_of_minutes(open_session, minutes):
    with pytest.raises(ValidationError):
        session_lifecycle.extend_session(open_session, minutes)


def test_ended_session_cannot_be_extended(open_session):
    session_lifecycle.end_session(open_session)

    with pytest.raises(ValidationError, match="ended"):
        session_lifecycle.extend_session(open_session, 30)
