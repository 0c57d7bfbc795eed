"""Creating sessions and opening or closing their enrollment: shared by the admin and the CLI."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from registrations.models import Classroom, Session, SessionState


@dataclass(frozen=True)
class SessionTimes:
    opens_at: datetime
    closes_at: datetime
    expires_at: datetime


def default_times(
    *,
    opens_at: datetime | None = None,
    closes_at: datetime | None = None,
    enroll_minutes: int | None = None,
    expires_at: datetime | None = None,
    lifetime_minutes: int | None = None,
) -> SessionTimes:
    """Fill in the times not given: opens now, closes after the default window, expires later.

    A close time derived from the default window never falls after the expiry: a short lifetime
    moves the close to the expiry instead of producing an invalid session. Explicit times are kept
    as given, so that validation can name what is wrong with them.
    """
    opens = opens_at or timezone.now()
    expires = expires_at or opens + timedelta(
        minutes=settings.LIFETIME_MINUTES_DEFAULT if lifetime_minutes is None else lifetime_minutes
    )
    if closes_at is not None:
        return SessionTimes(opens, closes_at, expires)
    window = settings.ENROLL_MINUTES_DEFAULT if enroll_minutes is None else enroll_minutes
    return SessionTimes(opens, min(opens + timedelta(minutes=window), expires), expires)


def classroom_for_owner(owner: AbstractBaseUser, name: str) -> Classroom:
    """Return the owner's classroom of that name, creating it when it does not exist yet."""
    classroom, _ = Classroom.objects.get_or_create(owner=owner, name=name)
    return classroom


def create_session(classroom: Classroom, phrase: str, times: SessionTimes, **fields) -> Session:
    """Validate (phrase rules, clashes, time order) and save a new session."""
    session = Session(
        classroom=classroom,
        phrase=phrase,
        opens_at=times.opens_at,
        closes_at=times.closes_at,
        expires_at=times.expires_at,
        **fields,
    )
    with transaction.atomic():
        session.full_clean()
        session.save()
    return session


def validation_text(error: ValidationError) -> str:
    """Flatten a ValidationError into one readable line per problem."""
    if hasattr(error, "error_dict"):
        lines = []
        for field, messages in error.message_dict.items():
            label = "" if field == "__all__" else f"{field}: "
            lines.extend(f"{label}{message}" for message in messages)
        return "\n".join(lines)
    return "\n".join(error.messages)


def open_enrollment_now(session: Session, now: datetime | None = None) -> None:
    """Open enrollment at once: a scheduled session opens now, a closed one reopens.

    Raises ValidationError when the session has ended or reopening would clash with another
    session's phrase.
    """
    now = now or timezone.now()
    state = session.state_at(now)
    if state == SessionState.ENDED:
        raise ValidationError("This session has ended; its enrollment cannot be opened again.")
    if state == SessionState.OPEN:
        return
    if state == SessionState.SCHEDULED:
        session.opens_at = now
    else:
        session.closes_at = min(
            now + timedelta(minutes=settings.ENROLL_MINUTES_DEFAULT), session.expires_at
        )
        if session.closes_at <= now:
            raise ValidationError("The accounts expire now; extend the session first.")
    _save_validated(session, ["opens_at", "closes_at"])


def close_enrollment_now(session: Session, now: datetime | None = None) -> None:
    """Close enrollment at once; the accounts already created keep their expiry."""
    now = now or timezone.now()
    if session.state_at(now) != SessionState.OPEN:
        raise ValidationError(
            f"Enrollment is not open (the session is “{session.state_at(now).label}”)."
        )
    session.closes_at = now
    _save_validated(session, ["closes_at"])


def _save_validated(session: Session, fields: list[str]) -> None:
    with transaction.atomic():
        session.full_clean()
        session.save(update_fields=[*fields, "updated_at"])
