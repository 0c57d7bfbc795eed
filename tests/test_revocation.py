"""Revoking from admin and texting DONE both go through request_deletion and the same pipeline."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from registrations import deletion, expiry, maintenance
from registrations.models import Account, AccountStatus, DeletionReason, OutboundKind
from tests.conftest import STUDENT_PHONE, queued_tasks

pytestmark = pytest.mark.django_db

DELETED_SMS = (
    "Your Coder account cs-student and its workspaces have been deleted. "
    "Thank you for taking part, and happy coding!"
)


def finish(account: Account, capture) -> Account:
    """Let time pass until the pipeline is done (builds end within one poll here)."""
    for _ in range(5):
        account.refresh_from_db()
        if account.status == AccountStatus.DELETED:
            break
        Account.objects.filter(pk=account.pk).update(next_attempt_at=timezone.now())
        with capture(execute=True):
            deletion.advance(account.pk)
    account.refresh_from_db()
    return account


def coder_calls(fake_coder) -> list[tuple[str, str]]:
    return [(r.method, r.path.split("/")[3]) for r in fake_coder.requests_log]


PIPELINE_CALLS = [
    ("PUT", "users"),  # suspend
    ("GET", "users"),  # the user's current name, by id: workspace search takes a name
    ("GET", "workspaces"),
    ("POST", "workspaces"),  # delete build
    ("GET", "users"),
    ("GET", "workspaces"),
    ("DELETE", "users"),
]


def test_admin_revoke_deletes_from_coder_and_texts_the_student(
    client, instructor, open_session, coder_account, fake_coder, fake_twilio, sync_tasks,
    django_capture_on_commit_callbacks,
):
    account = coder_account(open_session)
    fake_coder.build_polls = 0
    client.force_login(instructor)

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:registrations_account_changelist"),
            {"action": "revoke_accounts", "_selected_action": [account.pk], "confirm": "yes"},
        )
    assert response.status_code == 302
    account = finish(account, django_capture_on_commit_callbacks)

    assert account.deletion_reason == DeletionReason.REVOKED
    assert (account.status, account.phone) == (AccountStatus.DELETED, None)
    assert coder_calls(fake_coder) == PIPELINE_CALLS
    assert [m["body"] for m in fake_twilio.messages_to(STUDENT_PHONE)] == [DELETED_SMS]


def test_done_text_takes_the_same_path(
    send_sms, open_session, coder_account, fake_coder, fake_twilio, sync_tasks,
    django_capture_on_commit_callbacks,
):
    account = coder_account(open_session)
    fake_coder.build_polls = 0

    with django_capture_on_commit_callbacks(execute=True):
        response = send_sms("DONE")
    assert "being deleted" in response.content.decode()
    account = finish(account, django_capture_on_commit_callbacks)

    assert account.deletion_reason == DeletionReason.DONE
    assert (account.status, account.phone) == (AccountStatus.DELETED, None)
    assert coder_calls(fake_coder) == PIPELINE_CALLS
    assert [m["body"] for m in fake_twilio.messages_to(STUDENT_PHONE)] == [DELETED_SMS]


def test_expiry_deletes_without_a_goodbye_text(
    open_session, coder_account, fake_coder, django_capture_on_commit_callbacks
):
    account = coder_account(open_session, expires_at=timezone.now() - timedelta(seconds=1))
    fake_coder.build_polls = 0

    expiry.expire_due()
    account = finish(account, django_capture_on_commit_callbacks)

    assert account.status == AccountStatus.DELETED
    assert not account.outbound_messages.filter(kind=OutboundKind.DELETED).exists()


def test_second_request_is_a_no_op_and_the_first_reason_wins(
    open_session, coder_account, broker, django_capture_on_commit_callbacks
):
    account = coder_account(open_session)

    with django_capture_on_commit_callbacks(execute=True):
        assert deletion.request_deletion(account, DeletionReason.REVOKED) is True
        assert deletion.request_deletion(account, DeletionReason.DONE) is False

    assert account.deletion_reason == DeletionReason.REVOKED
    assert account.status == AccountStatus.SUSPENDING
    assert [(t["func"], t["args"]) for t in queued_tasks(broker)] == [
        ("registrations.tasks.advance_deletion", (account.pk,))
    ]


def test_deleted_account_cannot_be_revoked(open_session):
    account = Account.objects.create(
        session=open_session, status=AccountStatus.DELETED, expires_at=open_session.expires_at
    )

    assert deletion.request_deletion(account, DeletionReason.REVOKED) is False
    assert account.deletion_requested_at is None


def test_revoke_during_provisioning_marks_it_and_the_sweep_deletes_the_coder_user(
    open_session, coder_account, fake_coder, fake_twilio, sync_tasks,
    django_capture_on_commit_callbacks,
):
    # Provisioning saved the username and created the user; then its worker died.
    account = coder_account(open_session, status=AccountStatus.PROVISIONING)
    fake_coder.build_polls = 0

    assert deletion.request_deletion(account, DeletionReason.REVOKED) is True
    assert account.status == AccountStatus.PROVISIONING  # its task still owns the row
    Account.objects.filter(pk=account.pk).update(
        status_changed_at=timezone.now() - timedelta(minutes=10)
    )
    with django_capture_on_commit_callbacks(execute=True):
        maintenance.sweep()
    account = finish(account, django_capture_on_commit_callbacks)

    assert account.status == AccountStatus.DELETED
    assert fake_coder.live_users("lab.invalid") == []
    assert not account.outbound_messages.filter(kind=OutboundKind.CREDENTIALS).exists()
