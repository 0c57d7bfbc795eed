"""Editing a session's expiry in the admin moves its live accounts' expiry too (they copy it when
they are created); an expiry moved into the past ends the session and deletes its accounts."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.contrib.messages import get_messages
from django.utils import timezone

from registrations import expiry
from registrations.models import Account, AccountStatus, DeletionReason, SessionState
from tests.conftest import make_account, queued_tasks
from tests.test_session_validation import form_data

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(client, instructor):
    client.force_login(instructor)
    return client


def change_url(session) -> str:
    return f"/admin/registrations/session/{session.pk}/change/"


def edit(client, session, **times: datetime):
    """Post the change form with the session's current values and `times` replaced."""
    data = form_data(session.classroom, session.phrase, capacity=str(session.capacity))
    for name in ("opens_at", "closes_at", "expires_at"):
        moment = times.get(name, getattr(session, name))
        data[f"{name}_0"], data[f"{name}_1"] = f"{moment:%Y-%m-%d}", f"{moment:%H:%M:%S}"
    response = client.post(change_url(session), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    return response


def said(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def student(session, number: int, **fields) -> Account:
    fields.setdefault("status", AccountStatus.ACTIVE)
    fields.setdefault("coder_username", f"cs-e{number}")
    return make_account(session, fields.pop("phone", f"+1415555020{number}"), **fields)


def test_a_later_expiry_reaches_every_live_account_and_they_are_warned_again(
    alice, open_session
):
    warned = student(open_session, 1, warned_at=timezone.now())
    revoked = student(
        open_session,
        2,
        status=AccountStatus.SUSPENDING,
        deletion_reason=DeletionReason.REVOKED,
        deletion_requested_at=timezone.now(),
    )
    gone = student(open_session, 3, status=AccountStatus.DELETED, phone=None)
    old = open_session.expires_at
    later = (old + timedelta(hours=2)).replace(microsecond=0)

    response = edit(alice, open_session, expires_at=later)

    for row in (warned, revoked, gone):
        row.refresh_from_db()
    assert (warned.expires_at, warned.warned_at) == (later, None)
    assert revoked.expires_at == gone.expires_at == old
    assert "The new expiry applies to 1 account." in said(response)
    # The expire job follows the account's time, not the old one.
    assert expiry.expire_due(old + timedelta(minutes=1)) == 0
    assert expiry.expire_due(later + timedelta(seconds=1)) == 1


def test_an_earlier_expiry_deletes_the_accounts_at_the_new_time(alice, open_session):
    account = student(open_session, 1)
    sooner = (timezone.now() + timedelta(hours=1)).replace(microsecond=0)

    edit(alice, open_session, expires_at=sooner)

    account.refresh_from_db()
    assert account.expires_at == sooner
    assert expiry.expire_due(sooner + timedelta(seconds=1)) == 1
    account.refresh_from_db()
    assert account.deletion_reason == DeletionReason.EXPIRED


def test_an_expiry_moved_into_the_past_ends_the_session_and_starts_deleting(
    alice, open_session, broker, django_capture_on_commit_callbacks
):
    account = student(open_session, 1)
    now = timezone.now().replace(microsecond=0)

    with django_capture_on_commit_callbacks(execute=True):
        response = edit(
            alice,
            open_session,
            opens_at=now - timedelta(hours=2),
            closes_at=now - timedelta(hours=1),
            expires_at=now - timedelta(minutes=1),
        )

    open_session.refresh_from_db()
    account.refresh_from_db()
    assert open_session.state == SessionState.ENDED and open_session.ended_at
    assert (account.status, account.deletion_reason) == (
        AccountStatus.SUSPENDING,
        DeletionReason.ENDED,
    )
    tasks = {(t["func"], t["args"]) for t in queued_tasks(broker)}
    assert tasks == {("registrations.tasks.advance_deletion", (account.pk,))}
    assert "The new expiry has passed: 1 account being deleted." in said(response)


def test_editing_anything_else_leaves_the_accounts_alone(alice, open_session):
    account = student(open_session, 1, expires_at=open_session.expires_at, warned_at=None)
    data = form_data(open_session.classroom, open_session.phrase, capacity="77")
    for name in ("opens_at", "closes_at", "expires_at"):
        moment = getattr(open_session, name)
        data[f"{name}_0"], data[f"{name}_1"] = f"{moment:%Y-%m-%d}", f"{moment:%H:%M:%S}"
    Account.objects.filter(pk=account.pk).update(warned_at=timezone.now())

    alice.post(change_url(open_session), data)

    account.refresh_from_db()
    open_session.refresh_from_db()
    assert open_session.capacity == 77
    assert account.warned_at is not None
