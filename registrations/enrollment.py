"""Enrolling a phone in a session: the one place an Account is created."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.utils import timezone

from registrations import provisioning
from registrations.models import (
    Account,
    AccountSource,
    AccountStatus,
    InboundOutcome,
    Session,
)
from registrations.phones import mask_phone

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnrollResult:
    account: Account | None
    created: bool
    outcome: InboundOutcome


class _SessionFull(Exception):
    """The new account would take the session past its capacity."""


def enroll(session: Session, phone: str, *, source: str = AccountSource.SMS) -> EnrollResult:
    """Create the phone's Account in the session and queue provisioning, or handle a repeat.

    The caller decides whether the session accepts enrollments; this enforces capacity and the
    one-account-per-phone rule. A repeat text (source SMS) from a phone with an active account
    takes the rate-limited resend path; any other repeat changes nothing (outcome duplicate).
    """
    # No savepoint of its own: inside the webhook's transaction this only adds the lock.
    with transaction.atomic(savepoint=False):
        locked = _lock_session(session)
        if locked.ended_at or locked.expires_at <= timezone.now():
            # Ended (or expired) between the caller's read and our lock.
            return EnrollResult(None, False, InboundOutcome.CLOSED)
        try:
            # Insert first and let the unique (session, phone) constraint catch repeats: a
            # read-then-write would let two concurrent deliveries create two accounts.
            with transaction.atomic():
                account = Account.objects.create(
                    session=session, phone=phone, source=source, expires_at=locked.expires_at
                )
                if _seats_taken(session) > locked.capacity:
                    raise _SessionFull
        except IntegrityError:
            return _repeat(session, phone, source)
        except _SessionFull:
            logger.info("session %s is full; %s not enrolled", session.pk, mask_phone(phone))
            return EnrollResult(None, False, InboundOutcome.FULL)
        provisioning.enqueue_provision(account.pk)
    logger.info(
        "enrolled %s in session %s as account %s", mask_phone(phone), session.pk, account.pk
    )
    return EnrollResult(account, True, InboundOutcome.PROVISIONED)


def _lock_session(session: Session) -> Session:
    """Lock the session row until commit and return its current capacity and times."""
    # Serialises enrollments in one session so two last-seat requests cannot both count a free
    # seat, and an admin's "end now" or "extend" is seen here. SQLite ignores FOR UPDATE; its
    # IMMEDIATE transactions already serialise writers.
    return (
        Session.objects.select_for_update()
        .only("capacity", "expires_at", "ended_at")
        .get(pk=session.pk)
    )


def _seats_taken(session: Session) -> int:
    # A deleted account frees its seat (e.g. the student texted DONE); a failed one keeps it,
    # because an admin may retry it.
    return Account.objects.filter(session=session).exclude(status=AccountStatus.DELETED).count()


def _repeat(session: Session, phone: str, source: str) -> EnrollResult:
    """Handle a phone that already has an account in this session."""
    account = Account.objects.filter(session=session, phone=phone).first()
    if account is None:
        # Purged between our failed insert and this read: it was being deleted.
        return EnrollResult(None, False, InboundOutcome.DUPLICATE)
    if source == AccountSource.SMS and account.status == AccountStatus.ACTIVE:
        sent = provisioning.request_resend(account)
        outcome = InboundOutcome.RESEND if sent else InboundOutcome.RESEND_LIMITED
        return EnrollResult(account, False, outcome)
    return EnrollResult(account, False, InboundOutcome.DUPLICATE)
