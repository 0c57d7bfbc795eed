"""A session's life: create (or repeat), open and close enrollment, end, extend, move its
expiry, and check its Coder template. One place, used alike by the admin, the CLI and the
workflow."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from registrations import coder, deletion
from registrations.models import (
    Account,
    AccountStatus,
    Classroom,
    DeletionReason,
    Session,
    SessionState,
)

logger = logging.getLogger(__name__)


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


def classroom_for_owner(owner: User, name: str) -> Classroom:
    """Return the owner's classroom of that name, creating it when it does not exist yet."""
    classroom, _ = Classroom.objects.get_or_create(owner=owner, name=name)
    return classroom


def create_session(
    classroom: Classroom, phrase: str, times: SessionTimes, **fields: Any
) -> Session:
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


def duplicate_session(session: Session, phrase: str, shift: timedelta) -> Session:
    """Repeat a class: a new session under `phrase`, every time moved by `shift`, its settings
    (template and its parameters, capacity, zone, language, warning, texts, number) copied.

    Validated as create_session is (a phrase clash is a ValidationError on `phrase`); a copy
    that would already have expired is refused, since it could never enroll anyone.
    """
    times = SessionTimes(
        session.opens_at + shift, session.closes_at + shift, session.expires_at + shift
    )
    if times.expires_at <= timezone.now():
        raise ValidationError(
            {"expires_at": "The copy would already have expired: shift it further ahead."}
        )
    return create_session(
        session.classroom,
        phrase,
        times,
        inbound_number=session.inbound_number,
        capacity=session.capacity,
        warn_minutes=session.warn_minutes,
        time_zone=session.time_zone,
        language=session.language,
        coder_template=session.coder_template,
        template_parameters=dict(session.template_parameters),
        credentials_message=session.credentials_message,
        warning_message=session.warning_message,
    )


def coder_templates() -> list[coder.Template]:
    """The templates a session may name: those of the configured Coder organization."""
    client = coder.get_client()
    return client.templates(client.resolve_organization_id(settings.CODER_ORGANIZATION or None))


def find_template(name: str) -> coder.Template | None:
    """The Coder template a session names (exact name, in CODER_ORGANIZATION), or None."""
    return coder.get_client().template_by_name(name, settings.CODER_ORGANIZATION or None)


# A class burst creates hundreds of workspaces from one template within seconds, and GET
# /templates is one rate-limit budget for the whole deployment: provisioning looks a template
# up once a minute per process, not once per student. A missing template is never remembered.
TEMPLATE_CACHE_SECONDS = 60.0
_found_templates: dict[tuple[str, str, str], tuple[float, coder.Template]] = {}
_found_templates_lock = threading.Lock()


def find_template_for_workspace(name: str) -> coder.Template | None:
    """find_template, remembered for TEMPLATE_CACHE_SECONDS once found (for provisioning)."""
    key = (coder.get_client().url, settings.CODER_ORGANIZATION or "", name.lower())
    now = time.monotonic()
    with _found_templates_lock:
        found = _found_templates.get(key)
    if found is not None and now - found[0] < TEMPLATE_CACHE_SECONDS:
        return found[1]
    template = find_template(name)
    if template is not None:
        with _found_templates_lock:
            _found_templates[key] = (now, template)
    return template


def validation_text(error: ValidationError) -> str:
    """Flatten a ValidationError into one readable line per problem."""
    if hasattr(error, "error_dict"):
        lines: list[str] = []
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


def end_session(session: Session) -> int:
    """End a session now: every account expires now and enters the deletion pipeline.

    Returns the number of accounts whose deletion this requested.
    """
    now = timezone.now()
    with transaction.atomic():
        session.ended_at = session.ended_at or now
        # Keep the constraints valid: opens_at < closes_at <= expires_at.
        session.expires_at = min(session.expires_at, now)
        session.closes_at = min(session.closes_at, session.expires_at)
        session.opens_at = min(session.opens_at, session.closes_at - timedelta(seconds=1))
        session.save(
            update_fields=["ended_at", "expires_at", "closes_at", "opens_at", "updated_at"]
        )
        live = Account.objects.filter(session=session).exclude(status=AccountStatus.DELETED)
        live.filter(expires_at__gt=now).update(expires_at=now)
        requested = live.filter(deletion_requested_at__isnull=True).update(
            deletion_reason=DeletionReason.ENDED, deletion_requested_at=now
        )
        deletion.start_requested(now)
    logger.info("session %s ended: deleting %d accounts", session.pk, requested)
    return requested


def extend_session(session: Session, minutes: int) -> None:
    """Move the session's expiry and every live account's expiry later by `minutes`.

    Accounts already warned get a new warning before their new expiry.
    """
    if minutes <= 0:
        raise ValidationError("Extend by a positive number of minutes.")
    if session.ended_at:
        raise ValidationError("This session has ended; its accounts are being deleted.")
    delta = timedelta(minutes=minutes)
    with transaction.atomic():
        session.expires_at += delta
        session.save(update_fields=["expires_at", "updated_at"])
        Account.objects.filter(session=session, deletion_requested_at__isnull=True).exclude(
            status=AccountStatus.DELETED
        ).update(expires_at=F("expires_at") + delta, warned_at=None)
    logger.info("session %s extended by %d minutes", session.pk, minutes)


def move_expiry(session: Session) -> int:
    """Give the live accounts a session's edited expiry; end the session if that is past.

    Accounts copy the expiry when they are created, so an edit of the session's time must reach
    them too (as extend does). Moved accounts are warned again before their new time. Returns the
    number of accounts moved, or, for an expiry already past, sent to deletion.
    """
    if session.expires_at <= timezone.now():
        return end_session(session)
    moved = (
        Account.objects.filter(session=session, deletion_requested_at__isnull=True)
        .exclude(status=AccountStatus.DELETED)
        .exclude(expires_at=session.expires_at)
        .update(expires_at=session.expires_at, warned_at=None)
    )
    logger.info("session %s: expiry changed, %d accounts moved", session.pk, moved)
    return moved
