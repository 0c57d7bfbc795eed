"""Last seen in Coder: students who log in are counted, from a batched listing of Coder users."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from registrations import activity
from registrations.models import Account, AccountStatus
from tests.student import log_in, rename_in_coder

pytestmark = pytest.mark.django_db

SEEDED_PASSWORD = "Seeded-Password-1234"  # what FakeCoder.add_user gives a seeded user


@pytest.fixture
def students(open_session, coder_account):
    """Three live accounts with Coder users; the test decides who logs in."""
    return [
        coder_account(open_session, f"cs-student{n}", workspaces=0, phone=f"+1415555010{n}")
        for n in range(3)
    ]


def logged_in_by_email(fake_coder, account: Account) -> None:
    response = log_in(fake_coder.url, account.coder_email, SEEDED_PASSWORD)
    assert response.status_code == 201, response.text


def test_a_student_who_logs_in_is_seen_and_counted(students, fake_coder, client, instructor):
    logged_in_by_email(fake_coder, students[0])

    assert activity.poll_last_seen() == 1

    seen = {a.pk: a.coder_last_seen_at for a in Account.objects.all()}
    assert seen[students[0].pk] is not None
    assert seen[students[1].pk] is None and seen[students[2].pk] is None
    client.force_login(instructor)
    page = client.get(
        reverse("admin:registrations_session_page", args=[students[0].session_id])
    ).content.decode()
    assert '<strong id="count-logged-in">1</strong>' in page


def test_sessions_list_json_counts_logged_in_students(students, fake_coder):
    logged_in_by_email(fake_coder, students[0])
    logged_in_by_email(fake_coder, students[2])
    activity.poll_last_seen()

    out = StringIO()
    call_command("sessions", "list", "--json", stdout=out)

    [row] = json.loads(out.getvalue())
    assert row["logged_in"] == 2


def test_a_poll_costs_one_listing_whatever_the_number_of_students(
    open_session, coder_account, fake_coder
):
    accounts = [
        coder_account(open_session, f"cs-many{n:02}", workspaces=0, phone=f"+141555502{n:02}")
        for n in range(40)
    ]
    for account in accounts:
        logged_in_by_email(fake_coder, account)
    fake_coder.clear_log()

    assert activity.poll_last_seen() == 40

    [listing] = fake_coder.requests_log
    assert (listing.method, listing.path) == ("GET", "/api/v2/users")
    [query] = fake_coder.requests("GET", "/api/v2/users")[0].query["q"]
    assert query.startswith("lab.invalid last_seen_after:")


def test_no_live_session_means_no_request_to_coder(students, fake_coder):
    Account.objects.update(expires_at=timezone.now() - timedelta(minutes=1))

    assert activity.poll_last_seen() == 0
    assert fake_coder.requests_log == []


def test_accounts_being_deleted_are_not_updated(students, fake_coder):
    logged_in_by_email(fake_coder, students[0])
    Account.objects.filter(pk=students[0].pk).update(status=AccountStatus.SUSPENDING)

    assert activity.poll_last_seen() == 0
    assert Account.objects.get(pk=students[0].pk).coder_last_seen_at is None


def test_a_renamed_student_is_still_recognised_by_id(students, fake_coder):
    account = students[1]
    rename_in_coder(fake_coder, account.coder_user_id, "my-own-name")
    logged_in_by_email(fake_coder, account)

    assert activity.poll_last_seen() == 1
    assert Account.objects.get(pk=account.pk).coder_last_seen_at is not None
