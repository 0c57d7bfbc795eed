"""Account lifecycle events: ready, failed and deleted reach every configured notifier once."""

from __future__ import annotations

import logging

import pytest

from registrations import deletion, events, provisioning
from registrations.models import Account, AccountStatus, DeletionReason
from tests.conftest import STUDENT_PHONE

pytestmark = pytest.mark.django_db

HEARD: list[events.AccountEvent] = []


def record(event: events.AccountEvent) -> None:
    """A notifier, as a deployment would add one: a function taking the event."""
    HEARD.append(event)


def explode(event: events.AccountEvent) -> None:
    raise RuntimeError("a broken notifier")


@pytest.fixture
def heard(settings) -> list[events.AccountEvent]:
    HEARD.clear()
    settings.ACCOUNT_NOTIFIERS = [
        "tests.test_lifecycle_events.explode",  # first: it must not stop the others
        "tests.test_lifecycle_events.record",
        "registrations.notifiers.log.notify",
    ]
    return HEARD


@pytest.fixture
def account(open_session, fake_coder, fake_twilio) -> Account:
    return Account.objects.create(
        session=open_session, phone=STUDENT_PHONE, expires_at=open_session.expires_at
    )


def test_a_provisioned_account_is_announced_ready_once(account, heard, caplog):
    caplog.set_level(logging.INFO, logger="registrations.lifecycle")

    provisioning.provision(account.pk)
    provisioning.provision(account.pk)  # a duplicate task announces nothing more

    assert heard == [
        events.AccountEvent(events.AccountEventKind.READY, account.pk, account.session_id)
    ]
    assert f"account {account.pk} of session {account.session_id}: ready" in caplog.text
    assert STUDENT_PHONE not in caplog.text
    assert Account.objects.get(pk=account.pk).status == AccountStatus.ACTIVE


def test_a_failed_account_is_announced_with_why(account, heard, fake_coder, caplog):
    fake_coder.fail_next(1, 400, method="POST", path_prefix="/api/v2/users")

    provisioning.provision(account.pk)

    [event] = heard
    assert (event.kind, event.account_id) == (events.AccountEventKind.FAILED, account.pk)
    assert "400" in event.detail
    failed = [r for r in caplog.records if r.name == "registrations.lifecycle"]
    assert [r.levelno for r in failed] == [logging.WARNING]


def test_a_deleted_account_is_announced_with_its_reason(
    open_session, coder_account, heard, django_capture_on_commit_callbacks
):
    account = coder_account(open_session, workspaces=0)

    with django_capture_on_commit_callbacks(execute=True):
        deletion.request_deletion(account, DeletionReason.REVOKED)
    while account.status != AccountStatus.DELETED:
        Account.objects.filter(pk=account.pk).update(next_attempt_at=None)
        with django_capture_on_commit_callbacks(execute=True):
            deletion.advance(account.pk)
        account.refresh_from_db()

    assert heard == [
        events.AccountEvent(
            events.AccountEventKind.DELETED, account.pk, account.session_id, "revoked"
        )
    ]
