"""Enrolling a phone in a session: the one place an Account is created."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, transaction
from django.db.models import Field
from django.utils import timezone

from registrations import provisioning, sql
from registrations.models import (
    Account,
    AccountSource,
    AccountStatus,
    InboundOutcome,
    Session,
)
from registrations.phones import mask_phone

logger = logging.getLogger(__name__)

ACCOUNT, SESSION = sql.table(Account), sql.table(Session)
# A deleted account frees its seat (e.g. the student texted DONE); a failed one keeps it,
# because an admin may retry it.
SEATS_TAKEN = (
    f"SELECT COUNT(*) FROM {ACCOUNT} taken "
    f"WHERE taken.session_id = s.id AND taken.status <> '{AccountStatus.DELETED}'"
)
# NO KEY UPDATE: as exclusive as FOR UPDATE among enrollments (and an admin's edit of the
# session), but not against the key-share locks that inserting a row referring to the session
# takes (a worker's SMS row, a message log): those need not wait for an enrollment.
_LOCK = f"SELECT 1 FROM {SESSION} WHERE id = %(session)s FOR NO KEY UPDATE"
_WHY_NOT = (
    f"SELECT s.ended_at IS NOT NULL OR s.expires_at <= %(now)s, a.id, a.status, "
    f"({SEATS_TAKEN}) >= s.capacity "
    f"FROM {SESSION} s LEFT JOIN {ACCOUNT} a ON a.session_id = s.id AND a.phone = %(phone)s "
    "WHERE s.id = %(session)s"
)


@dataclass(frozen=True)
class EnrollResult:
    account: Account | None
    created: bool
    outcome: InboundOutcome
    # Created by enroll(..., confirm_later=True) on PostgreSQL: the parameters of
    # seat_lost_sql(), which the caller still has to read back before it commits.
    unconfirmed: dict[str, Any] | None = None


class SeatLost(Exception):
    """A seat taken before the session's lock was gone by the time the lock was held.

    The caller's transaction must roll back (leaving its atomic block by this exception does):
    the session filled up or ended while the insert ran without the lock. `outcome` is None
    when the seat could not be checked at all (the database lacks the check's function).
    """

    def __init__(self, outcome: InboundOutcome | None) -> None:
        super().__init__(outcome)
        self.outcome = outcome


# PostgreSQL: the seat check as a function, which locks the session row and only then reads
# the seats, in a query of its own: each query of a volatile function sees what committed
# before it started, so what committed while it waited for the lock too. One expression of
# the webhook's last statement then both takes the lock and checks the seat, and the lock is
# held for the commit only. It returns the outcome when the seat is not there after all (the
# session ended or is over capacity), '' when it is. Installed, and kept in step with
# SEATS_TAKEN, by every `migrate`.
SEAT_CHECK_FUNCTION = "registrations_seat_lost"
_SEAT_CHECK = (
    f"CREATE OR REPLACE FUNCTION {SEAT_CHECK_FUNCTION}(p_session bigint, p_now timestamptz) "
    "RETURNS text LANGUAGE plpgsql VOLATILE AS $seat$ BEGIN "
    f"PERFORM 1 FROM {SESSION} WHERE id = p_session FOR NO KEY UPDATE; "
    "RETURN (SELECT CASE WHEN s.ended_at IS NOT NULL OR s.expires_at <= p_now "
    f"THEN '{InboundOutcome.CLOSED}' WHEN ({SEATS_TAKEN}) > s.capacity "
    f"THEN '{InboundOutcome.FULL}' ELSE '' END FROM {SESSION} s WHERE s.id = p_session); "
    "END $seat$"
)
# SQLSTATE undefined_function: the database was not migrated since the function came.
_NO_SUCH_FUNCTION = "42883"


def install_seat_check(using: str = DEFAULT_DB_ALIAS) -> None:
    """Create or replace the seat check's function (PostgreSQL; run after every migrate)."""
    database = connections[using]
    if database.features.has_select_for_no_key_update:
        with database.cursor() as cursor:
            cursor.execute(_SEAT_CHECK)


def seat_lost_sql() -> str:
    """An expression for the last statement of a transaction after enroll(..., confirm_later=True).

    Its parameters are seat_session (the session's id) and seat_now (the enrollment's `now`);
    check_seat() reads its value. It holds the session from there until the transaction
    ends, and reads the seats taken by every enrollment that committed before.
    """
    return f"{SEAT_CHECK_FUNCTION}(%(seat_session)s, %(seat_now)s)"


def check_seat(lost: str | None) -> None:
    """Raise SeatLost when seat_lost_sql() read an outcome (None: the session is gone)."""
    if lost is None:
        raise SeatLost(InboundOutcome.CLOSED)
    if lost:
        raise SeatLost(InboundOutcome(lost))


def seat_check_missing(error: DatabaseError) -> bool:
    """Whether an error says the seat check's function is not in the database (not migrated)."""
    return getattr(error.__cause__, "sqlstate", None) == _NO_SUCH_FUNCTION


def enroll(
    session: Session | int,
    phone: str,
    *,
    source: str = AccountSource.SMS,
    session_locked: bool = False,
    confirm_later: bool = False,
) -> EnrollResult:
    """Create the phone's Account in the session and queue provisioning, or handle a repeat.

    The caller decides whether the session accepts enrollments; this enforces capacity, the
    session's end and the one-account-per-phone rule. A repeat text (source SMS) from a phone
    with an active account takes the rate-limited resend path; any other repeat changes
    nothing (outcome duplicate).

    On PostgreSQL enrollments in one session are serialised by a lock on its row, held until
    the transaction ends: taken by a statement of its own before the insert (two statements),
    or already held by the caller (`session_locked`), or taken only at the end
    (`confirm_later`, one statement): the insert then counts seats without the lock, and the
    caller must read seat_lost_sql() in the last statement of its transaction and pass it to
    check_seat(), which the result's `unconfirmed` says. That holds the lock for the commit
    only, not for all the caller does after its read. SQLite has no row locks: its writers
    are serialised whole, and one statement decides.
    """
    session_id = session if isinstance(session, int) else session.pk
    now = timezone.now()
    row_locks = connection.features.has_select_for_update
    check_at_end = row_locks and confirm_later and not session_locked
    # No savepoint of its own: inside the webhook's transaction this only adds the lock.
    with transaction.atomic(savepoint=False):
        if row_locks and not (session_locked or check_at_end):
            # Two last-seat requests cannot both count a free seat, and an admin's "end now"
            # or "extend" is seen: the insert below is a new statement, so it reads what
            # they committed.
            sql.run(_LOCK, {"session": session_id})
        created = _insert_if_seat_free(session_id, phone, source, now)
        if created is None:
            return _not_created(session_id, phone, source, now)
        provisioning.enqueue_provision(created.pk)
    logger.info(
        "enrolled %s in session %s as account %s", mask_phone(phone), session_id, created.pk
    )
    unconfirmed = {"seat_session": session_id, "seat_now": sql.moment(now)}
    return EnrollResult(
        created, True, InboundOutcome.PROVISIONED, unconfirmed if check_at_end else None
    )


@cache
def _insert_fields() -> tuple[Field[Any, Any], ...]:
    """The columns a new Account row gets a value for (NULL columns are left out)."""
    return tuple(
        f
        for f in Account._meta.concrete_fields
        if not f.primary_key
        and f.attname != "expires_at"  # the session's, read by the insert itself
        and (not f.null or f.has_default() or f.attname == "phone")
    )


@cache
def _insert_sql() -> str:
    names = [field.attname for field in _insert_fields()]
    columns = ", ".join(connection.ops.quote_name(name) for name in (*names, "expires_at"))
    values = ", ".join(f"%({name})s" for name in names)
    # One statement decides: the session still live, a seat free, and no account of this
    # phone yet (the unique (session, phone) constraint, without an error that would abort a
    # PostgreSQL transaction or need a savepoint). It returns nothing when any of them fails.
    return (
        f"INSERT INTO {ACCOUNT} ({columns}) SELECT {values}, s.expires_at FROM {SESSION} s "
        "WHERE s.id = %(session_id)s AND s.ended_at IS NULL AND s.expires_at > %(now)s "
        f"AND ({SEATS_TAKEN}) < s.capacity "
        "ON CONFLICT DO NOTHING RETURNING id, expires_at"
    )


@cache
def _constant_values() -> dict[str, Any]:
    """The new row's columns that are the same for every account, ready for the database."""
    constant = [f for f in _insert_fields() if f.attname not in _PER_ACCOUNT]
    assert not any(f.has_default() and callable(f.default) for f in constant), "see _PER_ACCOUNT"
    return {f.attname: f.get_db_prep_save(f.get_default(), connection) for f in constant}


# Given for each account; every other column takes its default, a constant (a field whose
# default is computed, like a time, belongs here).
_PER_ACCOUNT = ("session_id", "phone", "source", "status", "created_at", "status_changed_at")


def _insert_if_seat_free(session_id: int, phone: str, source: str, now: datetime) -> Account | None:
    moment = sql.moment(now)
    params = {
        **_constant_values(),
        "session_id": session_id,
        "phone": phone,
        "source": source,
        "status": AccountStatus.REQUESTED.value,
        "created_at": moment,
        "status_changed_at": moment,
        "now": moment,
    }
    found = sql.rows(_insert_sql(), params)
    if not found:
        return None
    ((pk, expires_at),) = found
    account = Account(
        pk=pk,
        session_id=session_id,
        phone=phone,
        source=source,
        status=AccountStatus.REQUESTED,
        expires_at=sql.read(Account, "expires_at", expires_at),
        created_at=now,
        status_changed_at=now,
    )
    account._state.adding = False  # the row exists: a save() updates it
    return account


def _not_created(session_id: int, phone: str, source: str, now: datetime) -> EnrollResult:
    """Say why no account was inserted: the session ended, it is full, or the phone is in."""
    ((ended, account_id, status, full),) = sql.rows(
        _WHY_NOT, {"session": session_id, "phone": phone, "now": sql.moment(now)}
    )
    if account_id is not None:
        return _repeat(account_id, status, source)
    if ended:
        # Ended (or expired) between the caller's read and our lock.
        return EnrollResult(None, False, InboundOutcome.CLOSED)
    if full:
        logger.info("session %s is full; %s not enrolled", session_id, mask_phone(phone))
        return EnrollResult(None, False, InboundOutcome.FULL)
    # The insert met the phone's account, purged since (it was being deleted).
    return EnrollResult(None, False, InboundOutcome.DUPLICATE)


def _repeat(account_id: int, status: str, source: str) -> EnrollResult:
    """Handle a phone that already has an account in this session."""
    account = Account.objects.get(pk=account_id)
    if source == AccountSource.SMS and status == AccountStatus.ACTIVE:
        sent = provisioning.request_resend(account)
        outcome = InboundOutcome.RESEND if sent else InboundOutcome.RESEND_LIMITED
        return EnrollResult(account, False, outcome)
    return EnrollResult(account, False, InboundOutcome.DUPLICATE)
