"""The every-minute sweep: recovers work a dead worker or a lost task left behind."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from registrations import maintenance
from registrations.models import (
    Account,
    AccountStatus,
    DeletionReason,
    OutboundKind,
    OutboundMessage,
    OutboundStatus,
)
from tests.conftest import STUDENT_PHONE, queued_tasks

pytestmark = pytest.mark.django_db

ADVANCE = "registrations.tasks.advance_deletion"


def long_ago() -> datetime:
    return timezone.now() - timedelta(minutes=10)


def swept_tasks(broker, capture) -> list[tuple[str, tuple]]:
    with capture(execute=True):
        maintenance.sweep()
    return [(task["func"], task["args"]) for task in queued_tasks(broker)]


def test_row_left_mid_pipeline_by_a_crash_is_finished_by_sweeps(
    open_session, coder_account, fake_coder, sync_tasks, django_capture_on_commit_callbacks
):
    # The worker died after moving the row on: its task is gone, the row waits in the middle.
    account = coder_account(
        open_session, status=AccountStatus.DELETING_WORKSPACES, status_changed_at=long_ago(),
        deletion_requested_at=long_ago(), deletion_reason=DeletionReason.EXPIRED,
    )
    fake_coder.build_polls = 0

    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            maintenance.sweep()
        Account.objects.filter(pk=account.pk).update(next_attempt_at=timezone.now())

    account.refresh_from_db()
    assert (account.status, account.phone) == (AccountStatus.DELETED, None)
    assert fake_coder.live_users("lab.invalid") == []


def test_lease_of_a_killed_worker_expires_and_the_step_runs_again(
    open_session, coder_account, broker, django_capture_on_commit_callbacks
):
    account = coder_account(open_session, status=AccountStatus.SUSPENDING)
    Account.objects.filter(pk=account.pk).update(
        next_attempt_at=timezone.now() - timedelta(seconds=1)
    )

    # The sweep's deletion pass runs the step itself: no task needed.
    assert swept_tasks(broker, django_capture_on_commit_callbacks) == []
    account.refresh_from_db()
    assert account.status == AccountStatus.DELETING_WORKSPACES and account.suspended_at


def test_lease_still_running_is_left_alone(
    open_session, coder_account, broker, django_capture_on_commit_callbacks
):
    account = coder_account(open_session, status=AccountStatus.DELETING_USER)
    Account.objects.filter(pk=account.pk).update(
        next_attempt_at=timezone.now() + timedelta(seconds=30)
    )

    assert swept_tasks(broker, django_capture_on_commit_callbacks) == []


def test_task_enqueued_moments_ago_is_not_sent_twice(
    open_session, coder_account, broker, django_capture_on_commit_callbacks
):
    coder_account(open_session, status=AccountStatus.SUSPENDING)  # NULL: its task is queued

    assert swept_tasks(broker, django_capture_on_commit_callbacks) == []


def test_lost_task_is_sent_again_once_stale(
    open_session, coder_account, broker, django_capture_on_commit_callbacks
):
    account = coder_account(
        open_session, status=AccountStatus.SUSPENDING, status_changed_at=long_ago()
    )

    assert swept_tasks(broker, django_capture_on_commit_callbacks) == [(ADVANCE, (account.pk,))]


def test_deletion_requested_during_provisioning_is_handed_over(
    open_session, coder_account, broker, django_capture_on_commit_callbacks
):
    # Provisioning finished (active) after the account was revoked, and sent no credentials.
    account = coder_account(
        open_session, deletion_requested_at=long_ago(), deletion_reason=DeletionReason.REVOKED
    )

    assert swept_tasks(broker, django_capture_on_commit_callbacks) == []
    account.refresh_from_db()
    assert account.status == AccountStatus.DELETING_WORKSPACES and account.suspended_at


@pytest.mark.parametrize("status", [AccountStatus.REQUESTED, AccountStatus.PROVISIONING])
def test_stale_requested_and_provisioning_rows_are_redriven_by_provisioning(
    open_session, broker, django_capture_on_commit_callbacks, status
):
    account = Account.objects.create(
        session=open_session, phone=STUDENT_PHONE, status=status,
        expires_at=open_session.expires_at, status_changed_at=long_ago(),
    )

    with django_capture_on_commit_callbacks(execute=True):
        report = maintenance.sweep()

    assert report["provisioning"] == 1
    assert [(t["func"], t["args"]) for t in queued_tasks(broker)] == [
        ("registrations.tasks.provision_account", (account.pk,))
    ]
    account.refresh_from_db()
    assert account.status == AccountStatus.REQUESTED


def test_sms_due_for_retry_is_sent_again(open_session, broker, django_capture_on_commit_callbacks):
    message = OutboundMessage.objects.create(
        phone=STUDENT_PHONE, kind=OutboundKind.WARNING, body="Save your work",
        status=OutboundStatus.RETRY, next_attempt_at=timezone.now() - timedelta(seconds=1),
    )

    with django_capture_on_commit_callbacks(execute=True):
        report = maintenance.sweep()

    assert report["sms"] == 1
    assert [(t["func"], t["args"]) for t in queued_tasks(broker)] == [
        ("registrations.tasks.send_sms", (message.pk,))
    ]


def test_credentials_sms_interrupted_mid_send_loses_the_number_of_a_purged_account(
    open_session, broker
):
    # Cleanup purged the account while its credentials SMS was being sent (and kept the number
    # on that message for the send); the worker then died, so the sweep closes the message.
    account = Account.objects.create(
        session=open_session, phone=None, status=AccountStatus.DELETED,
        expires_at=open_session.expires_at, purged_at=timezone.now(),
    )
    message = OutboundMessage.objects.create(
        account=account, phone=STUDENT_PHONE, kind=OutboundKind.CREDENTIALS,
        body="Password: ********", status=OutboundStatus.SENDING,
    )
    OutboundMessage.objects.filter(pk=message.pk).update(updated_at=long_ago())

    maintenance.sweep()

    message.refresh_from_db()
    assert (message.status, message.phone) == (OutboundStatus.FAILED, None)


def test_sweep_reports_what_it_redrove(open_session, coder_account, broker):
    coder_account(open_session, status=AccountStatus.SUSPENDING, status_changed_at=long_ago())
    coder_account(open_session, "cs-other", phone="+14155550188",
                  deletion_requested_at=long_ago(), deletion_reason=DeletionReason.DONE)

    assert maintenance.sweep() == {
        "claims_released": 0, "provisioning": 0, "sms": 0, "expired": 0, "deletion_started": 1,
        "deletion_redriven": 1, "suspended": 1, "workspace_checks": 1, "users_deleted": 0,
        "errors": 0,
    }
