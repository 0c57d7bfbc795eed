"""A Coder outage of any length within the bound costs students a wait, never their account."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from registrations import coder, provisioning
from registrations.models import Account, AccountStatus, OutboundKind
from tests.conftest import STUDENT_PHONE
from tests.student import logs_in

DOMAIN = "lab.invalid"
DELAYED = "Your Coder account is taking longer than usual to set up."
FAILED = "Sorry, we could not set up your Coder account."


@pytest.fixture
def services(fake_coder, fake_twilio, settings, monkeypatch):
    settings.CODER_EMAIL_DOMAIN = DOMAIN
    settings.PROVISION_GIVE_UP_HOURS = 6
    settings.PROVISION_RETRY_MAX_SECONDS = 120
    settings.PROVISION_DELAY_NOTICE_SECONDS = 300
    # No real pauses between the client's and the task's own quick retries.
    monkeypatch.setattr(coder.CoderClient, "_backoff", staticmethod(lambda attempt: 0.0))
    monkeypatch.setattr(provisioning, "INLINE_PAUSE_SECONDS", 0.0)
    return fake_coder, fake_twilio


@pytest.fixture
def account(open_session, services) -> Account:
    return Account.objects.create(
        session=open_session, phone=STUDENT_PHONE, expires_at=open_session.expires_at
    )


def bodies(fake_twilio) -> list[str]:
    return [m["body"] for m in fake_twilio.messages_to(STUDENT_PHONE)]


def wait_and_retry(account: Account, run_tasks, minutes: float) -> None:
    """Let `minutes` pass for the student (moved, not slept), then run the due retry."""
    earlier = timedelta(minutes=minutes)
    Account.objects.filter(pk=account.pk).update(
        created_at=account.created_at - earlier, next_attempt_at=timezone.now()
    )
    account.refresh_from_db()
    assert run_tasks(provisioning.redrive_stale, timezone.now()) == 1
    account.refresh_from_db()


def test_two_hours_of_coder_down_then_back_serves_the_student_with_one_delay_sms(
    account, services, run_tasks
):
    fake_coder, fake_twilio = services
    fake_coder.stop()  # connection refused, on every route
    run_tasks(provisioning.provision, account.pk)
    for _ in range(12):  # two hours, far past the five attempts that used to fail a student
        wait_and_retry(account, run_tasks, minutes=10)
        assert account.status == AccountStatus.REQUESTED
        assert "no response" in account.last_error
    assert account.attempts == 13
    assert bodies(fake_twilio) == [provisioning.texts.DELAYED_TEXT]

    fake_coder.start()
    wait_and_retry(account, run_tasks, minutes=1)

    assert (account.status, account.last_error) == (AccountStatus.ACTIVE, "")
    delayed, credentials = bodies(fake_twilio)
    assert delayed.startswith(DELAYED) and logs_in(fake_coder.url, credentials)
    assert [u["username"] for u in fake_coder.live_users(DOMAIN)] == [account.coder_username]


def test_the_backoff_is_capped_so_service_resumes_minutes_after_coder_returns(
    account, services, run_tasks
):
    fake_coder, _ = services
    fake_coder.fail_next(10**6, 503)
    run_tasks(provisioning.provision, account.pk)
    for _ in range(8):
        wait_and_retry(account, run_tasks, minutes=2)
        wait = account.next_attempt_at - timezone.now()
        assert timedelta(seconds=0) < wait <= timedelta(seconds=120 * 1.25 + 1)


def test_hundreds_of_attempts_still_wait_at_most_the_cap(account, services, run_tasks):
    fake_coder, _ = services
    fake_coder.stop()
    Account.objects.filter(pk=account.pk).update(attempts=500)  # hours of a long outage
    run_tasks(provisioning.provision, account.pk)
    account.refresh_from_db()
    assert account.status == AccountStatus.REQUESTED
    assert account.next_attempt_at - timezone.now() <= timedelta(seconds=120 * 1.25 + 1)


def test_a_short_blip_sends_no_delay_sms(account, services, run_tasks):
    fake_coder, fake_twilio = services
    fake_coder.fail_next(2, 503, method="POST", path_prefix="/api/v2/users")
    run_tasks(provisioning.provision, account.pk)
    wait_and_retry(account, run_tasks, minutes=1)
    assert account.status == AccountStatus.ACTIVE
    assert [b for b in bodies(fake_twilio) if b.startswith(DELAYED)] == []


def test_a_create_carried_out_behind_a_5xx_before_the_outage_is_adopted_once(
    account, services, run_tasks
):
    fake_coder, fake_twilio = services
    # Coder carries out the create, but the answers are 502s; then it goes away for an hour.
    fake_coder.fail_next(2, 502, method="POST", path_prefix="/api/v2/users", after=True)
    run_tasks(provisioning.provision, account.pk)
    account.refresh_from_db()
    fake_coder.stop()
    for _ in range(6):
        wait_and_retry(account, run_tasks, minutes=10)
    fake_coder.start()
    wait_and_retry(account, run_tasks, minutes=1)

    assert account.status == AccountStatus.ACTIVE
    assert [u["username"] for u in fake_coder.live_users(DOMAIN)] == [account.coder_username]
    credentials = account.outbound_messages.filter(kind=OutboundKind.CREDENTIALS)
    assert credentials.filter(twilio_sid__isnull=False).count() == 1
    assert logs_in(fake_coder.url, bodies(fake_twilio)[-1])


def test_coder_trouble_past_the_bound_fails_once_and_tells_the_student(
    account, services, run_tasks
):
    fake_coder, fake_twilio = services
    fake_coder.fail_next(10**6, 503, method="POST", path_prefix="/api/v2/users")
    run_tasks(provisioning.provision, account.pk)
    account.refresh_from_db()
    wait_and_retry(account, run_tasks, minutes=6 * 60 + 1)

    assert account.status == AccountStatus.FAILED
    assert account.last_error.startswith("Gave up after 6.0 hours of Coder errors: ")
    assert [b[:46] for b in bodies(fake_twilio)] == [FAILED]
    assert provisioning.redrive_stale(timezone.now() + timedelta(hours=1)) == 0


def test_retries_stop_at_the_accounts_expiry(account, services, run_tasks):
    fake_coder, _ = services
    fake_coder.stop()
    Account.objects.filter(pk=account.pk).update(
        expires_at=timezone.now() + timedelta(seconds=20)
    )
    run_tasks(provisioning.provision, account.pk)
    account.refresh_from_db()
    # Never a retry after the account is gone: the expiry tells a student never served.
    assert account.status == AccountStatus.REQUESTED
    assert account.next_attempt_at <= account.expires_at


def test_a_request_coder_rejects_as_invalid_fails_at_once(account, services, run_tasks):
    fake_coder, fake_twilio = services
    fake_coder.fail_next(1, 400, method="POST", path_prefix="/api/v2/users")
    run_tasks(provisioning.provision, account.pk)
    account.refresh_from_db()
    assert (account.status, account.attempts) == (AccountStatus.FAILED, 1)
    assert [b[:46] for b in bodies(fake_twilio)] == [FAILED]


def test_an_admin_retry_starts_afresh(account, services):
    Account.objects.filter(pk=account.pk).update(
        status=AccountStatus.FAILED, attempts=9, interruptions=2,
        delay_notified_at=timezone.now(), claimed_by="worker/gone/1/x",
    )
    account.refresh_from_db()
    assert provisioning.retry_failed(account)
    account.refresh_from_db()
    assert (account.attempts, account.interruptions, account.delay_notified_at) == (0, 0, None)
    assert account.claimed_by == ""
