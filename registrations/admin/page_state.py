"""What a session page shows in each state of the session: before, during and after class.

    scheduled  enrollment opens later: the join card, and when it opens
    open       students are joining: the join card and the roster
    closed     enrollment is over, accounts live on until expiry: no join card
    ending     ended early or expired: accounts and workspaces are being deleted (progress)
    deleted    everything is gone from Coder: a summary of the session
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Max, Min, Q

from registrations.admin.roster import TURNED_AWAY_OUTCOMES, still_in_coder
from registrations.models import Account, OutboundMessage, Session, SessionState

SCHEDULED, OPEN, CLOSED, ENDING, DELETED = "scheduled", "open", "closed", "ending", "deleted"
# States with a join card to project: students can (or soon can) text the phrase.
JOINABLE = (SCHEDULED, OPEN)
# States in which the session still runs and its buttons (extend, invite, end...) apply.
RUNNING = (SCHEDULED, OPEN, CLOSED)

# Accounts deleted per minute and per concurrent Coder call when nothing has been measured
# yet: a deletion pass (every few seconds) takes every due account, CLEANUP_CONCURRENCY calls at
# once; README → Performance shows about 250 a minute with the default 8 against a 50 ms Coder.
NOMINAL_PER_MINUTE_PER_CALL = 30
# Minutes every deletion takes whatever the count: a scheduler tick, then Coder's delete builds.
BASE_MINUTES = 2
# Measured rates need a few deletions and a minute behind them to mean anything.
MIN_MEASURED = 5


def page_state(session: Session, now: datetime) -> str:
    """The page's state: the session's, with "ended" split by whether Coder still holds any."""
    state = session.state_at(now)
    if state != SessionState.ENDED:
        return {
            SessionState.SCHEDULED: SCHEDULED,
            SessionState.OPEN: OPEN,
            SessionState.CLOSED: CLOSED,
        }[state]
    return ENDING if still_in_coder(Account.objects.filter(session=session)).exists() else DELETED


@dataclass(frozen=True)
class DeletionProgress:
    deleted: int
    remaining: int
    stuck: int
    minutes_left: int

    @property
    def total(self) -> int:
        return self.deleted + self.remaining

    @property
    def percent(self) -> int:
        return 100 if not self.total else round(100 * self.deleted / self.total)


def estimate_minutes(remaining: int, deleted: int, started: datetime | None, now: datetime) -> int:
    """About how many minutes the remaining deletions take: the pace measured so far when there
    is one, else the pace the cleanup batch size allows."""
    if not remaining:
        return 0
    rate = max(float(settings.CLEANUP_CONCURRENCY) * NOMINAL_PER_MINUTE_PER_CALL, 1.0)
    elapsed = (now - started).total_seconds() / 60 if started else 0.0
    if deleted >= MIN_MEASURED and elapsed >= 1:
        rate = deleted / elapsed
    return BASE_MINUTES + math.ceil(remaining / rate)


def deletion_progress(session: Session, now: datetime) -> DeletionProgress:
    """How many of the session's accounts are deleted, how many remain, and about how long."""
    accounts = Account.objects.filter(session=session)
    remaining = still_in_coder(accounts)
    figures = remaining.aggregate(
        remaining=Count("pk"),
        stuck=Count("pk", filter=Q(workspace_delete_failures__gt=0)),
    )
    done = accounts.aggregate(
        deleted=Count("pk", filter=Q(deleted_at__isnull=False)),
        started=Min("deletion_requested_at"),
    )
    return DeletionProgress(
        deleted=done["deleted"],
        remaining=figures["remaining"],
        stuck=figures["stuck"],
        minutes_left=estimate_minutes(figures["remaining"], done["deleted"], done["started"], now),
    )


@dataclass(frozen=True)
class SessionSummary:
    texts: int
    joined: int
    logged_in: int
    turned_away: int
    sms_sent: int
    last_deleted_at: datetime | None


def session_summary(session: Session) -> SessionSummary:
    """What a finished session amounted to, from the rows kept after the deletions."""
    accounts = Account.objects.filter(session=session).aggregate(
        joined=Count("pk"),
        logged_in=Count("pk", filter=Q(coder_last_seen_at__isnull=False)),
        last_deleted_at=Max("deleted_at"),
    )
    texts = session.inbound_messages.aggregate(
        texts=Count("pk"), turned_away=Count("pk", filter=Q(outcome__in=TURNED_AWAY_OUTCOMES))
    )
    sms_sent = OutboundMessage.objects.filter(
        Q(session=session) | Q(account__session=session)
    ).count()
    return SessionSummary(
        texts=texts["texts"],
        joined=accounts["joined"],
        logged_in=accounts["logged_in"],
        turned_away=texts["turned_away"],
        sms_sent=sms_sent,
        last_deleted_at=accounts["last_deleted_at"],
    )


def warning_at(session: Session) -> datetime | None:
    """When the expiry warning SMS goes out (None when the session sends none)."""
    if not session.warn_minutes:
        return None
    return session.expires_at - timedelta(minutes=session.warn_minutes)
