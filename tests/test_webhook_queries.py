"""The webhook makes at most MAX_QUERIES queries on every path, however many sessions and accounts.

Counted as Django counts them (CaptureQueriesContext) around one signed POST, in a real
transaction as in production (transaction=True: the webhook's atomic block is a BEGIN, not a
savepoint inside the test's transaction), and with its on-commit work run: on the default ORM
broker the enqueue of a task is an INSERT on the same connection and counts too. On SQLite the
BEGIN IMMEDIATE counts as well; on PostgreSQL + Redis neither is a query.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from registrations.models import (
    Account,
    AccountStatus,
    InboundMessage,
    InboundOutcome,
    OptOut,
    Session,
)
from tests.conftest import make_session

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

MAX_QUERIES = 6
FILL_SESSIONS = 1000
FILL_ACCOUNTS_PER_SESSION = 20


def fill_database(classroom) -> None:
    """Add 1000 closed sessions (some sharing the tested phrases), their accounts and logs."""
    now = timezone.now()
    phrases = ("python lab 3", "rust lab", "go lab")
    Session.objects.bulk_create(
        Session(
            classroom=classroom,
            phrase=phrase,
            phrase_normalized=phrase,
            opens_at=now - timedelta(days=n + 2),
            closes_at=now - timedelta(days=n + 1),
            expires_at=now - timedelta(days=n),
        )
        for n in range(FILL_SESSIONS)
        for phrase in [phrases[n % 3] if n % 2 else f"lab {n}"]
    )
    accounts = Account.objects.bulk_create(
        Account(
            session_id=session_id,
            phone=f"+1415556{n:04d}",
            status=AccountStatus.ACTIVE,
            expires_at=now,
        )
        for session_id in Session.objects.values_list("pk", flat=True)
        for n in range(FILL_ACCOUNTS_PER_SESSION)
    )
    InboundMessage.objects.bulk_create(
        InboundMessage(
            message_sid=f"SMfill{account.pk}",
            phone=account.phone,
            received_at=now,
            outcome=InboundOutcome.PROVISIONED,
        )
        for account in accounts
    )


# Replies are rendered in the session's language: read with the rest, never by a query more.
@pytest.fixture(params=["en", "es"])
def sessions(classroom, request) -> dict[str, Session]:
    now = timezone.now()
    language = request.param
    scheduled = make_session(classroom, phrase="rust lab", opens_at=now + timedelta(days=1),
                             closes_at=now + timedelta(days=1, hours=1),
                             expires_at=now + timedelta(days=2), language=language)  # fmt: skip
    full = make_session(classroom, phrase="go lab", capacity=0, language=language)
    return {
        "open": make_session(classroom, language=language),
        "scheduled": scheduled,
        "full": full,
    }


def give_account(session: Session, phone: str, status: str = AccountStatus.ACTIVE) -> None:
    Account.objects.create(
        session=session,
        phone=phone,
        status=status,
        coder_username="cs-" + phone[-6:],
        expires_at=session.expires_at,
    )


def fill_window(phone: str, count: int) -> None:
    InboundMessage.objects.bulk_create(
        InboundMessage(
            message_sid=f"SMprior{phone[1:]}x{n}", phone=phone, outcome=InboundOutcome.KEYWORD
        )
        for n in range(count)
    )


def sid_of(path: str, first: int) -> str:
    return "SM" + "".join(c for c in path if c.isalnum()) + str(first)


def count_paths(send_sms: Callable, sessions: dict[str, Session], settings, first: int) -> dict:
    """Queries of one webhook per path, each from a phone that has not texted before."""
    counts: dict[str, int] = {}
    numbers = iter(range(first, first + 100))

    def send(path: str, body: str, phone: str | None = None, sid: str | None = None) -> str:
        phone = phone or f"+1415555{next(numbers):04d}"
        with CaptureQueriesContext(connection) as captured:
            response = send_sms(body, phone=phone, sid=sid or sid_of(path, first))
        assert response.status_code == 200, path
        counts[path] = len(captured)
        return phone

    new = send("new student", "python lab 3")
    send("repeat MessageSid", "python lab 3", new, sid=f"SMnewstudent{first}")
    Account.objects.filter(phone=new).update(status=AccountStatus.PROVISIONING)
    send("enrolled phone again (on its way)", "python lab 3", new)
    Account.objects.filter(phone=new).update(status=AccountStatus.ACTIVE)
    send("enrolled phone again (new password)", "python lab 3", new)
    send("enrolled phone again (password on its way)", "python lab 3", new)
    Account.objects.filter(phone=new).update(next_attempt_at=None)
    settings.RESEND_LIMIT_PER_HOUR, limit = 0, settings.RESEND_LIMIT_PER_HOUR
    send("enrolled phone again (rate-limited)", "python lab 3", new)
    settings.RESEND_LIMIT_PER_HOUR = limit
    send("wrong phrase", "no such phrase")
    send("not open yet", "rust lab")
    send("full", "go lab")
    for keyword in ("HELP", "STOP", "START", "RESEND", "DONE"):
        send(f"{keyword} (no account)", keyword)
    for keyword in ("RESEND", "DONE"):
        phone = f"+1415555{next(numbers):04d}"
        give_account(sessions["open"], phone)
        send(f"{keyword} (account)", keyword, phone)
    opted_out = f"+1415555{next(numbers):04d}"
    OptOut.objects.create(phone=opted_out)
    send("phrase from an opted-out phone", "python lab 3", opted_out)
    throttled = f"+1415555{next(numbers):04d}"
    fill_window(throttled, settings.INBOUND_THROTTLE_COUNT)
    send("throttled", "python lab 3", throttled)
    return counts


def test_every_webhook_path_makes_at_most_six_queries_with_few_or_many_rows(
    sessions, classroom, send_sms, settings, broker
):
    few = count_paths(send_sms, sessions, settings, first=1000)
    fill_database(classroom)
    many = count_paths(send_sms, sessions, settings, first=2000)

    assert Session.objects.count() > FILL_SESSIONS
    assert Account.objects.count() > FILL_SESSIONS * FILL_ACCOUNTS_PER_SESSION
    assert {path: n for path, n in few.items() if n > MAX_QUERIES} == {}
    assert few == many


def test_the_paths_counted_do_what_they_say(sessions, classroom, send_sms, settings, broker):
    count_paths(send_sms, sessions, settings, first=1000)

    logged = InboundMessage.objects.exclude(message_sid__startswith="SMprior")
    outcomes = dict(logged.values_list("message_sid", "outcome"))
    assert outcomes == {
        "SMnewstudent1000": InboundOutcome.PROVISIONED,
        "SMenrolledphoneagainonitsway1000": InboundOutcome.DUPLICATE,
        "SMenrolledphoneagainnewpassword1000": InboundOutcome.RESEND,
        "SMenrolledphoneagainpasswordonitsway1000": InboundOutcome.RESEND,
        "SMenrolledphoneagainratelimited1000": InboundOutcome.RESEND_LIMITED,
        "SMwrongphrase1000": InboundOutcome.WRONG_PHRASE,
        "SMnotopenyet1000": InboundOutcome.NOT_OPEN,
        "SMfull1000": InboundOutcome.FULL,
        "SMHELPnoaccount1000": InboundOutcome.KEYWORD,
        "SMSTOPnoaccount1000": InboundOutcome.OPT_OUT,
        "SMSTARTnoaccount1000": InboundOutcome.OPT_IN,
        "SMRESENDnoaccount1000": InboundOutcome.KEYWORD,
        "SMDONEnoaccount1000": InboundOutcome.DONE,
        "SMRESENDaccount1000": InboundOutcome.RESEND,
        "SMDONEaccount1000": InboundOutcome.DONE,
        "SMphrasefromanoptedoutphone1000": InboundOutcome.OPTED_OUT_PHRASE,
        "SMthrottled1000": InboundOutcome.THROTTLED,
    }
