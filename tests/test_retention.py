"""Retention: message logs and purged accounts older than RETENTION_DAYS are deleted; only
anonymous daily counts (UsageStat) remain."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from registrations import maintenance
from registrations.models import (
    Account,
    AccountStatus,
    InboundMessage,
    InboundOutcome,
    OutboundKind,
    OutboundMessage,
    UsageStat,
)
from tests.conftest import STUDENT_PHONE

pytestmark = pytest.mark.django_db


def days_ago(days: float):
    return timezone.now() - timedelta(days=days)


def inbound(when, outcome=InboundOutcome.PROVISIONED, session=None, sid=None) -> InboundMessage:
    return InboundMessage.objects.create(
        message_sid=sid or f"SM{InboundMessage.objects.count():032d}", phone=STUDENT_PHONE,
        body="python lab 3", outcome=outcome, received_at=when, session=session,
    )


def outbound(when, kind=OutboundKind.CREDENTIALS, session=None) -> OutboundMessage:
    message = OutboundMessage.objects.create(
        phone=STUDENT_PHONE, kind=kind, body="Password: ••••••", session=session
    )
    OutboundMessage.objects.filter(pk=message.pk).update(created_at=when)
    return message


def purged_account(session, when, **fields) -> Account:
    fields = {"status": AccountStatus.DELETED, "phone": None, "purged_at": when, **fields}
    return Account.objects.create(
        session=session, coder_username=f"cs-{Account.objects.count()}",
        expires_at=when, created_at=when, **fields,
    )


def stats() -> dict[tuple[str, str], int]:
    return {(f"{s.day:%m-%d}", s.metric): s.count for s in UsageStat.objects.all()}


def test_old_logs_and_purged_accounts_go_recent_ones_stay(open_session):
    old_in, new_in = inbound(days_ago(31)), inbound(days_ago(29))
    old_out, new_out = outbound(days_ago(31)), outbound(days_ago(1))
    old_account = purged_account(open_session, days_ago(40))
    new_account = purged_account(open_session, days_ago(2))
    old_but_live = purged_account(
        open_session, days_ago(40), status=AccountStatus.ACTIVE, purged_at=None,
        phone="+14155550100",
    )

    assert maintenance.apply_retention() == {
        "inbound": 1, "outbound": 1, "accounts": 1, "message_sids": 0,
    }

    assert set(InboundMessage.objects.values_list("pk", flat=True)) == {new_in.pk}
    assert set(OutboundMessage.objects.values_list("pk", flat=True)) == {new_out.pk}
    assert set(Account.objects.values_list("pk", flat=True)) == {new_account.pk, old_but_live.pk}
    assert not Account.objects.filter(pk=old_account.pk).exists()
    assert not InboundMessage.objects.filter(pk=old_in.pk).exists()
    assert not OutboundMessage.objects.filter(pk=old_out.pk).exists()


def test_counts_of_deleted_rows_are_kept_per_day_session_and_kind(open_session):
    day = days_ago(35)
    inbound(day, session=open_session)
    inbound(day, session=open_session)
    inbound(day, InboundOutcome.WRONG_PHRASE)
    outbound(day, OutboundKind.WARNING, session=open_session)
    purged_account(open_session, day)

    maintenance.apply_retention()

    label = f"{timezone.localtime(day):%m-%d}"
    assert stats() == {
        (label, "inbound_provisioned"): 2,
        (label, "inbound_wrong_phrase"): 1,
        (label, "outbound_warning"): 1,
        (label, "accounts"): 1,
    }
    by_session = UsageStat.objects.get(metric="inbound_provisioned")
    assert by_session.session == open_session
    assert UsageStat.objects.get(metric="inbound_wrong_phrase").session is None


def test_counts_add_up_over_several_runs(open_session, settings):
    settings.RETENTION_DAYS = 7
    day = days_ago(10)
    inbound(day, session=open_session)
    maintenance.apply_retention()
    inbound(day, session=open_session)

    assert maintenance.apply_retention()["inbound"] == 1
    assert maintenance.apply_retention() == {
        "inbound": 0, "outbound": 0, "accounts": 0, "message_sids": 0,
    }
    assert UsageStat.objects.get(metric="inbound_provisioned").count == 2


def test_retention_days_is_configurable(open_session, settings):
    settings.RETENTION_DAYS = 3
    inbound(days_ago(4))
    inbound(days_ago(2))

    assert maintenance.apply_retention()["inbound"] == 1
    assert InboundMessage.objects.count() == 1
