"""The SMS outbox: save the row, hand it to the SMS transport, record what happened.

Ordinary messages are queued (`queue_sms`) and sent by the `send_sms` task, retried by the
sweep when the transport says a failure is worth retrying (rate limits, outages, network
errors). A message carrying a password (`send_with_secret`) is sent inline by the task that
holds the password, stored masked, and never re-sent from the row: if it fails, the caller
sends a NEW password later (the old one is gone).

When the transport says our credentials are rejected nothing is the message's fault: it is
held, not failed, and retried every minute without using up attempts until they work.
"""

from __future__ import annotations

import enum
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from registrations import jobs, sms_transport, sql
from registrations.models import (
    Account,
    InboundMessage,
    OptOut,
    OutboundKind,
    OutboundMessage,
    OutboundStatus,
    Session,
)
from registrations.phones import mask_phone
from registrations.sms_transport import TransportError
from registrations.texts import segments as _segments

logger = logging.getLogger(__name__)

MASK = "••••••"
SEND_TASK = "registrations.tasks.send_sms"

MAX_ATTEMPTS = 5
RETRY_BASE = timedelta(seconds=30)
RETRY_MAX = timedelta(minutes=15)
# While our credentials are rejected a message waits, retried this often and never given up.
HELD_RETRY = timedelta(seconds=60)

# Callbacks arrive out of order ("sent" after "delivered"): never move a message backwards.
# Twilio's own "sending" is left out: our SENDING means "the transport has it right now".
_CALLBACK_RANK: dict[str, int] = {
    OutboundStatus.ACCEPTED: 1,
    OutboundStatus.SCHEDULED: 1,
    OutboundStatus.QUEUED: 2,
    OutboundStatus.SENT: 4,
    OutboundStatus.DELIVERED: 5,
    OutboundStatus.UNDELIVERED: 5,
    OutboundStatus.FAILED: 5,
    OutboundStatus.CANCELED: 5,
    OutboundStatus.READ: 6,
}


class Outcome(enum.Enum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    OPTED_OUT = "opted_out"
    # Our credentials were rejected: a configuration problem, not this message's.
    HELD = "held"


@dataclass(frozen=True)
class Delivery:
    """What became of one attempt to send a message."""

    message: OutboundMessage | None
    outcome: Outcome

    @property
    def sent(self) -> bool:
        return self.outcome is Outcome.SENT

    @property
    def transient(self) -> bool:
        return self.outcome is Outcome.RETRY

    @property
    def held(self) -> bool:
        return self.outcome is Outcome.HELD


def segments(text: str) -> int:
    """Count the SMS segments a text needs."""
    return _segments(text)


def mask_secret(body: str, secret: str) -> str:
    """Return the body with the secret replaced by a mask, as it may be stored."""
    return body.replace(secret, MASK) if secret else body


def is_opted_out(phone: str | None) -> bool:
    return bool(phone) and OptOut.objects.filter(phone=phone).exists()


def status_callback_url(message: OutboundMessage) -> str | None:
    if not settings.PUBLIC_BASE_URL:
        return None
    return f"{settings.PUBLIC_BASE_URL}/twilio/status/?m={message.public_id}"


def _new_message(
    *,
    phone: str,
    kind: str,
    body: str,
    account: Account | None,
    session: Session | None,
) -> OutboundMessage:
    if session is None and account is not None:
        session = account.session
    status = OutboundStatus.OPTED_OUT if is_opted_out(phone) else OutboundStatus.PENDING
    return OutboundMessage.objects.create(
        phone=phone, kind=kind, body=body, account=account, session=session, status=status
    )


def queue_sms(
    *,
    phone: str | None,
    kind: str,
    body: str,
    account: Account | None = None,
    session: Session | None = None,
) -> OutboundMessage | None:
    """Save a message and send it from a task once the transaction commits.

    Returns None when there is no phone; a row with status opted_out (never sent) when the
    phone opted out. Never pass a password here: the task re-reads the stored body.
    """
    if kind == OutboundKind.CREDENTIALS:
        raise ValueError("credentials carry a password: use send_with_secret")
    if not phone:
        return None
    message = _new_message(phone=phone, kind=kind, body=body, account=account, session=session)
    if message.status == OutboundStatus.PENDING:
        jobs.enqueue_on_commit(SEND_TASK, message.pk)
    return message


def send_with_secret(*, account: Account, kind: str, body: str, secret: str) -> Delivery:
    """Send a message carrying a password now; store it masked; never retry it from the row."""
    if not account.phone:
        return Delivery(None, Outcome.FAILED)
    # One read for both things the send needs: whether the phone opted out, and which of our
    # numbers the student texted. A class burst runs this once per student on every worker.
    opted_out, texted = sql.rows(_BEFORE_SECRET, {"phone": account.phone, "account": account.pk})[0]
    message = OutboundMessage.objects.create(
        phone=account.phone,
        kind=kind,
        body=mask_secret(body, secret),
        account=account,
        session_id=account.session_id,
        status=OutboundStatus.OPTED_OUT if opted_out else OutboundStatus.SENDING,
        attempts=0 if opted_out else 1,
    )
    if opted_out:
        return Delivery(message, Outcome.OPTED_OUT)
    outcome = _transmit(message, body, _sender_for(_e164(texted)), retry_allowed=False)
    if outcome is not Outcome.SENT:
        message.refresh_from_db()
    return Delivery(message, outcome)


def deliver(outbound_id: int) -> None:
    """Send one queued message (task body); a duplicate delivery of the task does nothing."""
    claimed = (
        OutboundMessage.objects.filter(
            pk=outbound_id, status__in=(OutboundStatus.PENDING, OutboundStatus.RETRY)
        )
        .exclude(kind=OutboundKind.CREDENTIALS)
        .update(
            status=OutboundStatus.SENDING,
            attempts=F("attempts") + 1,
            next_attempt_at=None,
            updated_at=timezone.now(),
        )
    )
    if claimed != 1:
        return
    message = OutboundMessage.objects.get(pk=outbound_id)
    _send(message, message.body, retry_allowed=True)


def _send(message: OutboundMessage, body: str, *, retry_allowed: bool) -> Outcome:
    """Hand a claimed message to the transport and record the answer on its row."""
    if is_opted_out(message.phone):
        _finish(message, OutboundStatus.OPTED_OUT, error_message="Recipient opted out.")
        return Outcome.OPTED_OUT
    return _transmit(message, body, _sender(message), retry_allowed=retry_allowed)


def _transmit(
    message: OutboundMessage, body: str, sender: tuple[str, str], *, retry_allowed: bool
) -> Outcome:
    """Send a claimed message from `sender` (From, Messaging Service SID) and record it."""
    if message.phone is None:
        # Numbers are dropped from finished messages only; the provider would refuse it too.
        _finish(message, OutboundStatus.FAILED, error_message="No phone number to send to.")
        return Outcome.FAILED
    from_, messaging_service_sid = sender
    try:
        sent = sms_transport.get_transport().send(
            to=message.phone,
            body=body,
            from_=from_,
            messaging_service_sid=messaging_service_sid,
            status_callback=status_callback_url(message),
        )
    except TransportError as exc:
        return _not_sent(message, exc, retry_allowed)
    status = sent.status if sent.status in _CALLBACK_RANK else OutboundStatus.QUEUED
    now = sql.moment(timezone.now())
    # A status callback may have got here first and moved the row on: its status stays. A
    # message whose account was purged meanwhile (a goodbye, a warning) drops its number:
    # it was kept only for this send.
    sql.run(_RECORD_SENT, {"id": message.pk, "status": status, "sid": sent.sid, "now": now})
    logger.info(
        "sms %s (%s) to %s accepted as %s",
        message.public_id,
        message.kind,
        mask_phone(message.phone),
        sent.sid,
    )
    return Outcome.SENT


def _record_sent_sql() -> str:
    outbound, account = sql.table(OutboundMessage), sql.table(Account)
    sending = f"status = '{OutboundStatus.SENDING}'"
    fresh = {
        "status": "%(status)s",
        "error_code": "NULL",
        "error_message": "''",
        "next_attempt_at": "NULL",
        "updated_at": "%(now)s",
    }
    recorded = sql.set_when(sending, fresh)
    return (
        f"UPDATE {outbound} SET {recorded}, twilio_sid = %(sid)s, sent_at = %(now)s, "
        f"phone = CASE WHEN EXISTS (SELECT 1 FROM {account} a WHERE a.id = "
        f"{outbound}.account_id AND a.purged_at IS NOT NULL) THEN NULL ELSE phone END "
        "WHERE id = %(id)s"
    )


_RECORD_SENT = _record_sent_sql()


def _sender(message: OutboundMessage) -> tuple[str, str]:
    """Return the (From number, Messaging Service SID) to send a message with."""
    return _sender_for(_texted_number(message.account_id))


def _sender_for(texted: str) -> tuple[str, str]:
    """The sender for a student who last texted `texted` ("" when none is known).

    A student who texted one of several numbers is answered from that number, so the whole
    conversation stays in one thread on their phone. A pinned From goes without the Messaging
    Service, whose sender pool might otherwise pick another number. Invited students (who
    never texted) get the configured sender.
    """
    if texted:
        return texted, ""
    return settings.TWILIO_FROM_NUMBER, settings.TWILIO_MESSAGING_SERVICE_SID


# The number of ours the account's student last texted. No column on Account holds it (no
# migration): the latest inbound text routed to the account says it, one small indexed read.
_TEXTED = (
    f"(SELECT to_number FROM {sql.table(InboundMessage)} WHERE account_id = %(account)s "
    "AND to_number <> '' ORDER BY received_at DESC, id DESC LIMIT 1)"
)


def _texted_number(account_id: int | None) -> str:
    """Return the number of ours the account's student last texted ("" when none is known)."""
    if account_id is None:
        return ""
    return _e164(sql.rows(f"SELECT {_TEXTED}", {"account": account_id})[0][0])


def _e164(number: str | None) -> str:
    # Only an E.164 number: a To that did not parse as one is stored raw and is no sender.
    return number if number and number.startswith("+") and number[1:].isdigit() else ""


def _before_secret_sql() -> str:
    # What a password SMS needs, in one read: the phone's opt-out and the number texted.
    opted_out = f"EXISTS (SELECT 1 FROM {sql.table(OptOut)} WHERE phone = %(phone)s)"
    return f"SELECT {opted_out}, {_TEXTED}"


_BEFORE_SECRET = _before_secret_sql()


def held_retry_delay() -> timedelta:
    """Return the pause before retrying a send refused for our credentials."""
    # Jitter spreads a class's worth of waiting messages once the credentials are fixed.
    return jobs.backoff(1, HELD_RETRY, HELD_RETRY)


def _not_sent(message: OutboundMessage, exc: TransportError, retry_allowed: bool) -> Outcome:
    """Record why the transport did not take a message, and what happens to it next."""
    logger.warning(
        "sms %s to %s: not sent (%s, status %s, code %s)",
        message.public_id,
        mask_phone(message.phone),
        exc.kind.value,
        exc.status,
        exc.code,
    )
    if exc.opted_out:
        OptOut.objects.get_or_create(phone=message.phone)
        _finish(message, OutboundStatus.OPTED_OUT, exc.code, exc.message)
        return Outcome.OPTED_OUT
    if exc.credentials_rejected:
        return _held(message, exc, retry_allowed)
    if exc.retryable:
        return _transient(message, exc.message, retry_allowed, exc.code)
    # A bad number, or any other refusal: the same request fails again.
    _finish(message, OutboundStatus.FAILED, exc.code, exc.message)
    return Outcome.FAILED


def _transient(
    message: OutboundMessage, text: str, retry_allowed: bool, code: int | None = None
) -> Outcome:
    """Schedule a retry for the sweep, or give up when attempts or the body do not allow one."""
    attempts = OutboundMessage.objects.values_list("attempts", flat=True).get(pk=message.pk)
    if not retry_allowed:
        _finish(message, OutboundStatus.FAILED, code, text)
        return Outcome.RETRY
    if attempts >= MAX_ATTEMPTS:
        _finish(message, OutboundStatus.FAILED, code, f"Gave up after {attempts} attempts: {text}")
        return Outcome.FAILED
    when = timezone.now() + jobs.backoff(attempts, RETRY_BASE, RETRY_MAX)
    _update(
        message.pk,
        status=OutboundStatus.RETRY,
        next_attempt_at=when,
        error_code=code,
        error_message=text[:255],
    )
    return Outcome.RETRY


def _held(message: OutboundMessage, exc: TransportError, retry_allowed: bool) -> Outcome:
    """Wait for working credentials; the attempt does not count (the message is not at fault)."""
    code, text = exc.code, exc.message[:255]
    if not retry_allowed:
        # The password in this body is gone: close the row without calling it failed; the
        # caller texts a NEW password later.
        _finish(message, OutboundStatus.CANCELED, code, text)
        return Outcome.HELD
    _update(
        message.pk,
        status=OutboundStatus.RETRY,
        # Give back the attempt `deliver` counted, so no retry limit runs out meanwhile.
        attempts=F("attempts") - 1,
        next_attempt_at=timezone.now() + held_retry_delay(),
        error_code=code,
        error_message=text,
    )
    return Outcome.HELD


def _finish(
    message: OutboundMessage, status: str, code: int | None = None, error_message: str = ""
) -> None:
    _update(
        message.pk,
        status=status,
        error_code=code,
        error_message=error_message[:255],
        next_attempt_at=None,
    )
    _forget_phone_if_purged(message.pk)


def _forget_phone_if_purged(pk: int) -> None:
    """Drop the number of a finished message whose account was deleted meanwhile."""
    # The goodbye SMS, or a warning still waiting when the account was purged, needed the
    # number only until it was sent; cleanup could not purge it then.
    OutboundMessage.objects.filter(pk=pk, account__purged_at__isnull=False).update(phone=None)


def _update(pk: int, **changes: Any) -> int:
    # QuerySet.update() skips auto_now; the sweep reads updated_at to find stuck sends.
    return OutboundMessage.objects.filter(pk=pk).update(**changes, updated_at=timezone.now())


def record_status(public_id: str, params: Any) -> None:
    """Record a delivery status callback; unknown ids and junk are ignored (the view says 200)."""
    try:
        key = uuid.UUID(str(public_id))
    except ValueError:
        return
    report = sms_transport.get_transport().read_status_callback(params)
    if report is None:
        return
    status, sid, code = report.status, report.sid, report.error_code
    message = OutboundMessage.objects.filter(public_id=key).first()
    if message is None or status not in _CALLBACK_RANK:
        return
    if message.twilio_sid and sid and sid != message.twilio_sid:
        return
    # SENDING too: the callback may beat our recording of the transport's answer.
    lower = [s for s, rank in _CALLBACK_RANK.items() if rank < _CALLBACK_RANK[status]]
    lower.append(OutboundStatus.SENDING)
    changes: dict[str, Any] = {"status": status}
    if code is not None:
        changes["error_code"] = code
    if sid and not message.twilio_sid:
        changes["twilio_sid"] = sid
    changes["updated_at"] = timezone.now()
    try:
        with transaction.atomic():
            OutboundMessage.objects.filter(pk=message.pk, status__in=lower).update(**changes)
    except IntegrityError:
        # The sid belongs to another of our messages: not a callback about this one.
        return
    if report.opted_out and message.phone:
        OptOut.objects.get_or_create(phone=message.phone)


def redrive_stale(now: datetime, *, queued_too: bool = False) -> int:
    """Re-enqueue messages due for a retry, lost from the queue, or stuck mid-send; count them.

    `queued_too`: a message queued moments ago too, because a worker was just seen dead and its
    cluster's prefetched tasks died with it (a duplicate task finds the message taken).
    """
    stale = now - timedelta(seconds=settings.STALE_AFTER_SECONDS)
    # A crash after the transport accepted but before we recorded it may duplicate a plain message;
    # a password message is never re-sent from its (masked) row.
    stuck = OutboundMessage.objects.filter(
        status=OutboundStatus.SENDING, updated_at__lte=stale, twilio_sid__isnull=True
    )
    stuck.exclude(kind=OutboundKind.CREDENTIALS).update(
        status=OutboundStatus.RETRY, next_attempt_at=now, updated_at=now
    )
    stuck.filter(kind=OutboundKind.CREDENTIALS).update(
        status=OutboundStatus.FAILED, error_message="Interrupted while sending.", updated_at=now
    )
    # Cleanup leaves a number on a message still being sent; a finished one must not keep it.
    OutboundMessage.objects.filter(
        status=OutboundStatus.FAILED, phone__isnull=False, account__purged_at__isnull=False
    ).update(phone=None)
    due = OutboundMessage.objects.filter(
        Q(status=OutboundStatus.RETRY, next_attempt_at__lte=now)
        | Q(
            status=OutboundStatus.PENDING,
            next_attempt_at__isnull=True,
            created_at__lte=now if queued_too else stale,
        )
        | Q(status=OutboundStatus.PENDING, next_attempt_at__lte=now)
    ).exclude(kind=OutboundKind.CREDENTIALS)
    # Leased until the next sweep, so that two sweeps never enqueue one message twice.
    lease = now + timedelta(seconds=settings.STALE_AFTER_SECONDS)
    candidates = due.values_list("pk", "next_attempt_at")[:500]
    return jobs.lease_and_enqueue(OutboundMessage.objects.all(), candidates, SEND_TASK, lease)
