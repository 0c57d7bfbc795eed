"""Email a session's instructors when accounts fail: one digest per session per few minutes.

The failure SMS tells the student "Your instructor has been told"; this is the telling. A
FAILED event arms a one-off django-q2 schedule named for the session, due ALERT_DIGEST_MINUTES
later; more failures meanwhile find it armed, so a class failing together makes one email.
When it fires, `send_digest` lists the session's accounts failed since the last digest
(username, masked phone, the error's first line) to the classroom's owner and co-instructors.

No model of ours holds state (no migration): the last digest's cut-off lives in a second
Schedule row that never runs (repeats=0, which the scheduler skips), its next_run the cut-off.
"""

from __future__ import annotations

import functools
import logging
import re
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from registrations.events import AccountEvent, AccountEventKind
from registrations.models import Account, AccountStatus, Session
from registrations.phones import mask_phone

logger = logging.getLogger(__name__)

DIGEST_TASK = "registrations.tasks.send_failure_digest"
# Anything that looks like a phone number in an error line (Coder or Twilio may echo one).
_LONG_NUMBER = re.compile(r"\+?\d[\d ()-]{6,}\d")
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


def due_name(session_id: int) -> str:
    return f"failure-digest:session:{session_id}"


def cutoff_name(session_id: int) -> str:
    return f"failure-digest-sent:session:{session_id}"


def notify(event: AccountEvent) -> None:
    """On a failed account, arm the session's digest once the failure has committed."""
    if event.kind is not AccountEventKind.FAILED or not settings.FAILURE_ALERTS:
        return
    # After commit: the scheduler deletes a fired schedule in the transaction that queues its
    # task, so a committed failure either finds the schedule not yet fired (and the digest
    # will read it) or finds it gone and arms the next one. Never a failure left out.
    transaction.on_commit(functools.partial(arm_digest, event.session_id), robust=True)


def arm_digest(session_id: int) -> None:
    """Create the session's digest schedule unless one is already waiting."""
    window = timedelta(minutes=settings.ALERT_DIGEST_MINUTES)
    Schedule.objects.get_or_create(
        name=due_name(session_id),
        defaults={
            "func": DIGEST_TASK,
            "args": repr(session_id),
            "schedule_type": Schedule.ONCE,
            "repeats": -1,  # a ONCE schedule with repeats < 0 is deleted once it fires
            "next_run": timezone.now() + window,
        },
    )


def send_digest(session_id: int) -> int:
    """Email the failures since the last digest to the session's instructors; return how many."""
    if not settings.FAILURE_ALERTS:
        return 0
    session = Session.objects.select_related("classroom__owner").filter(pk=session_id).first()
    if session is None:
        return 0
    with transaction.atomic():
        # The lock makes a duplicate digest task (two schedules from a race) wait, then find
        # nothing new; an email that fails rolls the cut-off back for the next digest.
        marker, _ = Schedule.objects.select_for_update().get_or_create(
            name=cutoff_name(session_id),
            defaults={"func": DIGEST_TASK, "schedule_type": Schedule.ONCE, "repeats": 0,
                      "next_run": _EPOCH},
        )
        since, until = marker.next_run or _EPOCH, timezone.now()
        failed = list(
            Account.objects.filter(
                session_id=session_id,
                status=AccountStatus.FAILED,
                status_changed_at__gt=since,
                status_changed_at__lte=until,
            ).order_by("status_changed_at", "pk")
        )
        recipients = instructor_emails(session)
        if not failed or not recipients:
            return 0
        Schedule.objects.filter(pk=marker.pk).update(next_run=until)
        send_mail(
            subject=f"[classroom-sms] {len(failed)} account(s) failed in {session}",
            message=digest_body(session, failed),
            from_email=None,  # DEFAULT_FROM_EMAIL
            recipient_list=recipients,
        )
    logger.info("session %s: failure digest of %d accounts emailed", session_id, len(failed))
    return len(failed)


def instructor_emails(session: Session) -> list[str]:
    """The owner's and co-instructors' addresses, without empty ones or repeats."""
    classroom = session.classroom
    users = [classroom.owner, *classroom.co_instructors.all()]
    return list(dict.fromkeys(u.email.strip() for u in users if u.email.strip()))


def digest_body(session: Session, failed: list[Account]) -> str:
    """The email's text: one line per account, never a full phone number or a password."""
    lines = [
        f"{len(failed)} student account(s) in session {session} could not be created.",
        "Each student was texted that you have been told.",
        "",
    ]
    for account in failed:
        error = (account.last_error.strip().splitlines() or ["(no error recorded)"])[0]
        error = _LONG_NUMBER.sub(lambda m: mask_phone(m.group(0)), error)[:200]
        lines.append(f"- {account}  {mask_phone(account.phone)}  {error}")
    if settings.PUBLIC_BASE_URL:
        url = reverse("admin:registrations_session_page", args=[session.pk])
        lines += ["", f"Session page: {settings.PUBLIC_BASE_URL}{url}"]
    return "\n".join(lines) + "\n"
