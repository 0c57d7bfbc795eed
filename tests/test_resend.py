"""Resending credentials: a new password is set in Coder and texted, within a rate limit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from registrations import provisioning
from registrations.coder import get_client
from registrations.models import Account, AccountStatus, OutboundKind, OutboundMessage
from tests.conftest import STUDENT_PHONE
from tests.student import credentials_from_sms, log_in, logs_in

DOMAIN = "lab.invalid"


@pytest.fixture
def services(fake_coder, fake_twilio, settings):
    settings.CODER_EMAIL_DOMAIN = DOMAIN
    settings.RESEND_LIMIT_PER_HOUR = 2
    return fake_coder, fake_twilio


@pytest.fixture
def active(open_session, services) -> Account:
    account = Account.objects.create(
        session=open_session, phone=STUDENT_PHONE, expires_at=open_session.expires_at
    )
    provisioning.provision(account.pk)
    account.refresh_from_db()
    assert account.status == AccountStatus.ACTIVE
    return account


def texts_to_student(fake_twilio) -> list[str]:
    return [m["body"] for m in fake_twilio.messages_to(STUDENT_PHONE)]


def password_in(body: str) -> str:
    return credentials_from_sms(body)[1]


def test_resend_sets_a_new_password_in_coder_and_texts_it(active, services, run_tasks):
    fake_coder, fake_twilio = services
    old_password = password_in(texts_to_student(fake_twilio)[0])
    assert run_tasks(provisioning.request_resend, active)
    body = texts_to_student(fake_twilio)[-1]
    assert body.startswith("New Coder password.")
    new_password = password_in(body)
    [put] = fake_coder.requests("PUT", f"/api/v2/users/{active.coder_user_id}/password")
    assert put.body == {"password": new_password}
    assert logs_in(fake_coder.url, body)
    assert log_in(fake_coder.url, active.coder_email, old_password).status_code == 401
    active.refresh_from_db()
    assert (active.resend_count, active.next_attempt_at) == (1, None)
    assert active.last_resent_at is not None


def test_resend_is_rate_limited_per_account(active, services, run_tasks):
    _, fake_twilio = services
    assert run_tasks(provisioning.request_resend, active)
    assert run_tasks(provisioning.request_resend, active)
    assert not run_tasks(provisioning.request_resend, active)
    assert len(texts_to_student(fake_twilio)) == 3  # the first SMS and two resends
    # An hour later the student may ask again.
    OutboundMessage.objects.filter(kind=OutboundKind.CREDENTIALS).update(
        created_at=timezone.now() - timedelta(minutes=61)
    )
    assert run_tasks(provisioning.request_resend, active)


def test_admin_resend_is_not_limited_by_the_student_limit(active, services, run_tasks):
    _, fake_twilio = services
    for _ in range(3):
        assert run_tasks(provisioning.request_resend, active, by_admin=True)
    assert len(texts_to_student(fake_twilio)) == 4


def test_a_resend_already_on_its_way_is_not_doubled(active, services, broker):
    fake_coder, _ = services
    assert provisioning.request_resend(active)
    assert provisioning.request_resend(active)
    active.refresh_from_db()
    assert active.resend_count == 1


def test_repeat_text_of_the_phrase_resends(open_session, send_sms, services, run_tasks):
    fake_coder, fake_twilio = services
    run_tasks(send_sms, "python lab 3")
    run_tasks(send_sms, "python lab 3")
    first, second = texts_to_student(fake_twilio)
    account = Account.objects.get()
    assert account.resend_count == 1
    assert logs_in(fake_coder.url, second)
    assert not logs_in(fake_coder.url, first)


def test_resend_keyword_resends(open_session, send_sms, services, run_tasks):
    fake_coder, fake_twilio = services
    run_tasks(send_sms, "python lab 3")
    run_tasks(send_sms, "RESEND")
    assert Account.objects.get().resend_count == 1
    assert logs_in(fake_coder.url, texts_to_student(fake_twilio)[-1])
    assert len(texts_to_student(fake_twilio)) == 2


def test_coder_rate_limit_delays_the_resend_until_the_sweep(active, services, run_tasks):
    fake_coder, fake_twilio = services
    fake_coder.fail_next(1, 429, method="PUT", retry_after=30)
    assert run_tasks(provisioning.request_resend, active)
    active.refresh_from_db()
    assert active.next_attempt_at > timezone.now() + timedelta(seconds=25)
    assert "429" in active.last_error
    assert len(texts_to_student(fake_twilio)) == 1

    Account.objects.filter(pk=active.pk).update(next_attempt_at=timezone.now())
    assert run_tasks(provisioning.redrive_stale, timezone.now()) == 1
    body = texts_to_student(fake_twilio)[-1]
    assert logs_in(fake_coder.url, body)
    active.refresh_from_db()
    assert (active.next_attempt_at, active.last_error) == (None, "")


def test_only_active_accounts_can_resend(active, services):
    Account.objects.filter(pk=active.pk).update(status=AccountStatus.SUSPENDING)
    assert not provisioning.request_resend(active)


@pytest.fixture
def never_texted(open_session, services, run_tasks) -> Account:
    """An account set up in Coder whose first credentials SMS Twilio kept refusing."""
    fake_coder, fake_twilio = services
    account = Account.objects.create(
        session=open_session, phone=STUDENT_PHONE, expires_at=open_session.expires_at
    )
    fake_twilio.fail_next(10, 503)
    run_tasks(provisioning.provision, account.pk)
    fake_twilio.clear_failures()
    account.refresh_from_db()
    assert (account.status, account.credentials_sent_at) == (AccountStatus.ACTIVE, None)
    assert account.next_attempt_at is not None  # the recovery (a new password) is scheduled
    return account


def failure_texts(fake_twilio) -> list[str]:
    return [b for b in texts_to_student(fake_twilio) if b.startswith("Sorry, we could not")]


def test_recovery_that_gives_up_tells_the_student_and_fails_the_account(
    never_texted, services, run_tasks
):
    fake_coder, fake_twilio = services
    long_ago = timezone.now() - timedelta(hours=1)
    Account.objects.filter(pk=never_texted.pk).update(
        provisioned_at=long_ago, created_at=long_ago, next_attempt_at=timezone.now()
    )

    run_tasks(provisioning.redrive_stale, timezone.now())

    never_texted.refresh_from_db()
    assert never_texted.status == AccountStatus.FAILED
    assert "No credentials SMS ever reached the student" in never_texted.last_error
    assert len(failure_texts(fake_twilio)) == 1
    assert not fake_coder.requests("PUT", "/api/v2/users/")  # no pointless new password


def test_recovery_refused_by_coder_for_good_tells_the_student(never_texted, services, run_tasks):
    fake_coder, fake_twilio = services
    fake_coder.fail_next(1, 400, method="PUT", path_prefix="/api/v2/users/")
    Account.objects.filter(pk=never_texted.pk).update(next_attempt_at=timezone.now())

    run_tasks(provisioning.redrive_stale, timezone.now())

    never_texted.refresh_from_db()
    assert never_texted.status == AccountStatus.FAILED
    assert "New password not set" in never_texted.last_error
    assert len(failure_texts(fake_twilio)) == 1
    # An admin's retry then sets the account up again and texts working credentials.
    assert provisioning.retry_failed(never_texted)
    run_tasks(provisioning.provision, never_texted.pk)
    body = texts_to_student(fake_twilio)[-1]
    assert logs_in(fake_coder.url, body)


def test_an_opted_out_phone_keeps_its_password(active, services, run_tasks, send_sms):
    fake_coder, fake_twilio = services
    send_sms("STOP")

    assert not run_tasks(provisioning.request_resend, active)
    send_sms("RESEND")

    assert not fake_coder.requests("PUT", "/api/v2/users/")
    assert len(texts_to_student(fake_twilio)) == 1  # only the first credentials
    active.refresh_from_db()
    assert (active.resend_count, active.next_attempt_at) == (0, None)


def test_a_user_deleted_in_coder_directly_gets_no_dead_credentials(active, services, run_tasks):
    fake_coder, fake_twilio = services
    # An operator deleted the user in Coder's own UI. Coder still finds a deleted user by id
    # (GetUserByID does not filter deleted rows), so a password change by id would "work".
    assert get_client().delete_user(active.coder_user_id)
    fake_coder.clear_log()

    assert run_tasks(provisioning.request_resend, active)

    active.refresh_from_db()
    assert not fake_coder.requests("PUT", f"/api/v2/users/{active.coder_user_id}/password")
    assert (active.status, active.deletion_reason) == (AccountStatus.DELETED, "gone")
    assert active.phone is None
    last = texts_to_student(fake_twilio)[-1]
    assert last == (
        f"Your Coder account {active.coder_username} and its workspaces have been deleted. "
        "Thank you for taking part, and happy coding!"
    )
    assert "Password" not in last
