"""The webhook does a constant number of queries, however many sessions and accounts exist."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from registrations.models import Account, AccountStatus, InboundMessage, InboundOutcome, Session
from tests.conftest import make_session

# One bound for an empty database and a busy one. Savepoints count as queries here; in
# production the outermost one is a plain transaction.
MAX_QUERIES = 20
FEW_PHONE, MANY_PHONE = "+14155550101", "+14155550102"


def fill_database(classroom, sessions: int = 150, accounts_per_session: int = 20) -> None:
    """Add closed sessions (half sharing the tested phrases), their accounts and message logs."""
    now = timezone.now()
    rows = [
        Session(
            classroom=classroom,
            phrase=phrase,
            phrase_normalized=phrase,
            opens_at=now - timedelta(days=n + 2),
            closes_at=now - timedelta(days=n + 1),
            expires_at=now - timedelta(days=n),
        )
        for n in range(sessions)
        for phrase in (f"lab {n}", "python lab 3", "rust lab")
    ]
    Session.objects.bulk_create(rows)
    accounts = Account.objects.bulk_create(
        Account(
            session=session,
            phone=f"+1415555{n:04d}",
            status=AccountStatus.ACTIVE,
            expires_at=session.expires_at,
        )
        for session in Session.objects.filter(phrase__startswith="lab")
        for n in range(1000, 1000 + accounts_per_session)
    )
    InboundMessage.objects.bulk_create(
        InboundMessage(
            message_sid=f"SMfill{account.session_id}x{account.phone[1:]}",
            phone=account.phone,
            outcome=InboundOutcome.PROVISIONED,
        )
        for account in accounts
    )


@pytest.fixture
def sessions(classroom, open_session) -> dict[str, object]:
    now = timezone.now()
    scheduled = make_session(classroom, phrase="rust lab", opens_at=now + timedelta(days=1),
                             closes_at=now + timedelta(days=1, hours=1),
                             expires_at=now + timedelta(days=2))  # fmt: skip
    full = make_session(classroom, phrase="go lab", capacity=0)
    return {"open": open_session, "scheduled": scheduled, "full": full}


def give_account(session, phone: str) -> None:
    Account.objects.create(
        session=session,
        phone=phone,
        status=AccountStatus.ACTIVE,
        coder_username="cs-" + phone[-4:],
        expires_at=session.expires_at,
    )


def throttle(phone: str, count: int) -> None:
    InboundMessage.objects.bulk_create(
        InboundMessage(
            message_sid=f"SMprior{phone[1:]}x{n}", phone=phone, outcome=InboundOutcome.KEYWORD
        )
        for n in range(count)
    )


@pytest.mark.parametrize(
    ("body", "has_account", "throttled"),
    [
        ("python lab 3", False, False),  # enrolls
        ("python lab 3", True, False),  # repeat text: resend path
        ("rust lab", False, False),  # not open yet
        ("go lab", False, False),  # full
        ("no such phrase", False, False),
        ("STOP", False, False),
        ("START", False, False),
        ("HELP", False, False),
        ("RESEND", True, False),
        ("RESEND", False, False),
        ("DONE", True, False),
        ("DONE", False, False),
        ("python lab 3", False, True),
    ],
)
def test_query_count_is_the_same_with_few_and_many_sessions_and_accounts(
    sessions, classroom, send_sms, settings, django_assert_max_num_queries, body, has_account,
    throttled,
):  # fmt: skip
    counts = []
    for phone, fill in ((FEW_PHONE, False), (MANY_PHONE, True)):
        if fill:
            fill_database(classroom)
        if has_account:
            give_account(sessions["open"], phone)
        if throttled:
            throttle(phone, settings.INBOUND_THROTTLE_COUNT)
        with django_assert_max_num_queries(MAX_QUERIES) as captured:
            send_sms(body, phone=phone)
        counts.append(len(captured))

    assert Session.objects.count() > 400
    assert counts[0] == counts[1]
