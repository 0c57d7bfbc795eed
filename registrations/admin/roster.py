"""The live roster of a session and its counts, as shown on the session page."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, Q, QuerySet

from registrations.models import (
    DELETION_STATUSES,
    Account,
    AccountStatus,
    InboundOutcome,
    OutboundStatus,
    Session,
)
from registrations.roster_export import roster  # one query for the page and the CSV alike

# Texts that named this session but were refused: not open yet, closed, or full.
TURNED_AWAY_OUTCOMES = (InboundOutcome.NOT_OPEN, InboundOutcome.CLOSED, InboundOutcome.FULL)


@dataclass(frozen=True)
class RosterRow:
    account: Account
    sms_status: str
    sms_failed: bool
    sms_error_code: int | None
    revocable: bool


def roster_rows(session: Session) -> list[RosterRow]:
    """Return the roster as rows ready to display (labels instead of stored values)."""
    failed = {OutboundStatus.FAILED, OutboundStatus.UNDELIVERED}
    return [
        RosterRow(
            account=account,
            sms_status=OutboundStatus(account.sms_status).label if account.sms_status else "",
            sms_failed=account.sms_status in failed,
            sms_error_code=account.sms_error_code,
            revocable=account.status not in (AccountStatus.DELETED, *DELETION_STATUSES),
        )
        for account in roster(session)
    ]


def session_counts(session: Session) -> dict[str, int]:
    """Count texts, joined, active, failed, turned away, logged in and being deleted."""
    accounts = Account.objects.filter(session=session).aggregate(
        joined=Count("pk"),
        active=Count("pk", filter=Q(status=AccountStatus.ACTIVE)),
        pending=Count(
            "pk", filter=Q(status__in=(AccountStatus.REQUESTED, AccountStatus.PROVISIONING))
        ),
        failed=Count("pk", filter=Q(status=AccountStatus.FAILED)),
        deleting=Count("pk", filter=Q(status__in=DELETION_STATUSES)),
        deleted=Count("pk", filter=Q(status=AccountStatus.DELETED)),
        logged_in=Count("pk", filter=Q(coder_last_seen_at__isnull=False)),
    )
    texts = session.inbound_messages.aggregate(
        texts=Count("pk"), turned_away=Count("pk", filter=Q(outcome__in=TURNED_AWAY_OUTCOMES))
    )
    seats_left = max(session.capacity - accounts["joined"] + accounts["deleted"], 0)
    return {**accounts, **texts, "seats_left": seats_left}


def accounts_to_delete(session: Session) -> QuerySet[Account]:
    """Return the accounts that ending the session would send to the deletion pipeline."""
    return Account.objects.filter(session=session).exclude(
        status__in=(AccountStatus.DELETED, *DELETION_STATUSES)
    )


def still_in_coder(accounts: QuerySet[Account]) -> QuerySet[Account]:
    """Return the accounts that may still own a Coder user (so their rows must not vanish)."""
    never_created = Q(status=AccountStatus.FAILED, coder_user_id="")
    return accounts.exclude(Q(status=AccountStatus.DELETED) | never_created)
