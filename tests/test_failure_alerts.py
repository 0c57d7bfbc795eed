"""Failure alerts: the instructors are emailed one digest per session of the failed accounts."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.utils import timezone
from django_q.models import Schedule
from django_q.scheduler import scheduler

from registrations import provisioning
from registrations.models import Account, AccountStatus
from registrations.notifiers import instructor_alerts
from tests.conftest import PUBLIC_BASE_URL, make_session

PHONES = [f"+1415555{n:04d}" for n in range(10)]


@pytest.fixture
def alerts(settings, fake_coder, fake_twilio, sync_tasks):
    settings.ACCOUNT_NOTIFIERS = ["registrations.notifiers.instructor_alerts.notify"]
    settings.FAILURE_ALERTS = True
    settings.ALERT_DIGEST_MINUTES = 5
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    return fake_coder


@pytest.fixture
def co_taught(open_session, other_instructor):
    classroom = open_session.classroom
    classroom.co_instructors.add(other_instructor)
    # An instructor without an address is skipped, not an error.
    classroom.co_instructors.add(User.objects.create_user("carol", "", "pw", is_staff=True))
    return open_session


def fail_accounts(session, fake_coder, capture, phones=PHONES) -> list[Account]:
    fake_coder.fail_next(len(phones), 400, method="POST", path_prefix="/api/v2/users")
    accounts = []
    for phone in phones:
        account = Account.objects.create(
            session=session, phone=phone, expires_at=session.expires_at
        )
        with capture(execute=True):
            provisioning.provision(account.pk)
        accounts.append(account)
    pks = [a.pk for a in accounts]
    assert Account.objects.filter(pk__in=pks, status=AccountStatus.FAILED).count() == len(phones)
    return accounts


def fire_due_schedules() -> None:
    """Let the digest window pass and run django-q2's scheduler (tasks run inline)."""
    Schedule.objects.filter(name__startswith="failure-digest:").update(
        next_run=timezone.now() - timedelta(seconds=1)
    )
    scheduler()


def test_ten_failures_make_one_email_to_the_instructors_listing_all(
    co_taught, alerts, django_capture_on_commit_callbacks
):
    accounts = fail_accounts(co_taught, alerts, django_capture_on_commit_callbacks)
    [due] = Schedule.objects.filter(name=instructor_alerts.due_name(co_taught.pk))
    assert due.next_run > timezone.now() + timedelta(minutes=4)
    assert mail.outbox == []  # the window is waited out by the schedule, not a sleep

    fire_due_schedules()

    [email] = mail.outbox
    assert sorted(email.to) == ["alice@example.test", "bob@example.test"]
    for account in accounts:
        account.refresh_from_db()
        assert account.masked_phone in email.body
        assert account.last_error.splitlines()[0][:40] in email.body
    assert f"{PUBLIC_BASE_URL}/admin/" in email.body and f"/{co_taught.pk}/" in email.body
    assert not Schedule.objects.filter(name=instructor_alerts.due_name(co_taught.pk)).exists()


def test_no_phone_digits_beyond_the_mask_reach_the_email(
    open_session, alerts, django_capture_on_commit_callbacks
):
    fail_accounts(open_session, alerts, django_capture_on_commit_callbacks)
    fire_due_schedules()
    [email] = mail.outbox
    text = email.subject + email.body
    for phone in PHONES:
        assert phone not in text and phone[2:] not in text and phone[-4:] not in text


def test_the_next_digest_lists_only_new_failures(
    open_session, alerts, django_capture_on_commit_callbacks
):
    fail_accounts(open_session, alerts, django_capture_on_commit_callbacks, PHONES[:2])
    fire_due_schedules()
    fail_accounts(open_session, alerts, django_capture_on_commit_callbacks, PHONES[2:3])
    fire_due_schedules()
    first, second = mail.outbox
    assert len(re.findall(r"^- ", first.body, re.M)) == 2
    assert len(re.findall(r"^- ", second.body, re.M)) == 1


def test_a_digest_per_session(classroom, alerts, django_capture_on_commit_callbacks):
    one, two = make_session(classroom), make_session(classroom, phrase="python lab 4")
    fail_accounts(one, alerts, django_capture_on_commit_callbacks, PHONES[:1])
    fail_accounts(two, alerts, django_capture_on_commit_callbacks, PHONES[1:2])
    fire_due_schedules()
    assert len(mail.outbox) == 2


def test_failure_alerts_off_sends_nothing(
    open_session, alerts, settings, django_capture_on_commit_callbacks
):
    settings.FAILURE_ALERTS = False
    fail_accounts(open_session, alerts, django_capture_on_commit_callbacks)
    fire_due_schedules()
    assert mail.outbox == []
    assert not Schedule.objects.filter(name__startswith="failure-digest").exists()
