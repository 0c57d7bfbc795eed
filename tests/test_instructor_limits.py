"""Limits on instructor accounts: daily test messages and invites, seats per session, and the
countries invites and test messages may go to."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from registrations.instructor_limits import allowed_countries
from registrations.models import Account, AccountSource, OutboundKind, OutboundMessage, Session
from tests.conftest import make_account
from tests.test_cli_sessions import create
from tests.test_session_validation import ADD_URL, form_data

pytestmark = pytest.mark.django_db

UK_PHONE = "+447400123456"


@pytest.fixture
def alice(client, instructor, broker):
    client.force_login(instructor)
    return client


def page_url(session, view: str) -> str:
    return reverse(f"admin:registrations_session_{view}", args=[session.pk])


def non_field_errors(response) -> list[str]:
    return list(response.context["form"].non_field_errors())


def sent_tests(session, count: int, hours_ago: float = 1) -> None:
    for _ in range(count):
        OutboundMessage.objects.create(
            phone="+14155550166",
            kind=OutboundKind.TEST,
            body="hi",
            session=session,
            created_at=timezone.now() - timedelta(hours=hours_ago),
        )


def test_the_daily_test_message_limit_refuses_the_next_one(alice, open_session, settings):
    settings.INSTRUCTOR_DAILY_TEST_MESSAGES = 2
    sent_tests(open_session, 2)
    response = alice.post(
        page_url(open_session, "test_message"), {"phone": "+14155550166", "body": "x"}
    )
    assert non_field_errors(response) == [
        "Daily test message limit reached (2 in 24 hours). Try again later."
    ]
    assert OutboundMessage.objects.count() == 2


def test_test_messages_older_than_a_day_do_not_count(alice, open_session, settings):
    settings.INSTRUCTOR_DAILY_TEST_MESSAGES = 2
    sent_tests(open_session, 2, hours_ago=25)
    response = alice.post(
        page_url(open_session, "test_message"), {"phone": "+14155550166", "body": "x"}
    )
    assert response.status_code == 302
    assert OutboundMessage.objects.count() == 3


def test_a_new_classroom_does_not_reset_the_limit(alice, open_session, instructor, settings):
    from registrations.models import Classroom
    from tests.conftest import make_session

    settings.INSTRUCTOR_DAILY_TEST_MESSAGES = 1
    sent_tests(open_session, 1)
    fresh = make_session(Classroom.objects.create(name="Fresh", owner=instructor), "fresh lab")
    response = alice.post(page_url(fresh, "test_message"), {"phone": "+14155550166", "body": "x"})
    assert response.status_code == 200 and OutboundMessage.objects.count() == 1


def test_superusers_have_no_daily_test_message_limit(client, superuser, open_session, settings):
    settings.INSTRUCTOR_DAILY_TEST_MESSAGES = 0
    client.force_login(superuser)
    response = client.post(
        page_url(open_session, "test_message"), {"phone": "+14155550166", "body": "x"}
    )
    assert response.status_code == 302
    assert OutboundMessage.objects.count() == 1


def test_a_test_message_abroad_is_refused(alice, open_session, settings):
    settings.SMS_ALLOWED_COUNTRIES = ["US", "CA"]
    response = alice.post(page_url(open_session, "test_message"), {"phone": UK_PHONE, "body": "x"})
    assert non_field_errors(response) == [
        "Test messages go only to numbers in CA, US (SMS_ALLOWED_COUNTRIES)."
    ]
    assert not OutboundMessage.objects.exists()


def test_an_invite_past_the_daily_limit_invites_nobody(alice, open_session, settings):
    settings.INSTRUCTOR_DAILY_INVITES = 3
    make_account(open_session, "+14155550101", source=AccountSource.INVITE)
    phones = "+14155550101\n+14155550102\n+14155550103\n+14155550104"
    response = alice.post(page_url(open_session, "invite"), {"phones": phones})
    assert non_field_errors(response) == [
        "Daily invite limit reached: you can invite 2 more students in the next 24 hours "
        "(at most 3 a day), and this list has 3 new. Nobody was invited; ask an administrator "
        "to invite more."
    ]
    assert Account.objects.count() == 1


def test_an_invite_within_the_limit_counts_only_new_numbers(alice, open_session, settings):
    settings.INSTRUCTOR_DAILY_INVITES = 3
    make_account(open_session, "+14155550101", source=AccountSource.INVITE)
    phones = "+14155550101\n+14155550102\n+14155550103"
    response = alice.post(page_url(open_session, "invite"), {"phones": phones})
    assert response.status_code == 302
    assert Account.objects.count() == 3


def test_invites_abroad_are_skipped_and_named(alice, open_session, settings):
    settings.SMS_ALLOWED_COUNTRIES = ["US"]
    response = alice.post(
        page_url(open_session, "invite"), {"phones": f"+14155550102\n{UK_PHONE}"}, follow=True
    )
    assert [str(m) for m in response.context["messages"]] == [
        f"Invited 1 phone number to “{open_session}”: 1 new account being created; "
        "1 number in a country we do not text (#2; allowed: US)."
    ]
    assert list(Account.objects.values_list("phone", flat=True)) == ["+14155550102"]


def test_allowed_countries_default_to_those_of_our_numbers(settings):
    settings.SMS_ALLOWED_COUNTRIES = []
    settings.TWILIO_FROM_NUMBER = "+16135550123"  # Ottawa
    settings.TWILIO_OWN_NUMBERS = [UK_PHONE]
    settings.PHONE_DEFAULT_REGION = "US"
    assert allowed_countries() == {"CA", "GB", "US"}


def test_the_admin_refuses_a_capacity_above_the_maximum(alice, classroom, settings):
    settings.SESSION_MAX_CAPACITY = 50
    response = alice.post(ADD_URL, form_data(classroom, capacity="51"))
    assert response.context["adminform"].form.errors["capacity"] == [
        "At most 50 students per session (SESSION_MAX_CAPACITY)."
    ]
    assert not Session.objects.exists()


def test_the_cli_refuses_a_capacity_above_the_maximum(instructor, settings):
    settings.SESSION_MAX_CAPACITY = 50
    with pytest.raises(CommandError, match="At most 50 students per session"):
        create("--capacity", "51")
    assert not Session.objects.exists()
