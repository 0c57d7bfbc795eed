"""Outbound SMS: save the row, send through Twilio's REST API, record what happened.

Ordinary messages are queued (`queue_sms`) and sent by the `send_sms` task, retried by the
sweep on 429/5xx/network errors. A message carrying a password (`send_with_secret`) is sent
inline by the task that holds the password, stored masked, and never re-sent from the row:
if it fails, the caller sends a NEW password later (the old one is gone).

When Twilio rejects our credentials (401, error 20003) nothing is the message's fault: it is
held, not failed, and retried every minute without using up attempts until they work.
"""

from __future__ import annotations

import enum
import functools
import logging
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import requests
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from registrations import jobs
from registrations.checks import missing_twilio_settings
from registrations.models import (
    Account,
    OptOut,
    OutboundKind,
    OutboundMessage,
    OutboundStatus,
    Session,
)
from registrations.phones import mask_phone
from registrations.texts import segments as _segments

logger = logging.getLogger(__name__)

MASK = "••••••"
TWILIO_API = "https://api.twilio.com"
SEND_TASK = "registrations.tasks.send_sms"

# Twilio error codes (https://www.twilio.com/docs/api/errors).
OPTED_OUT_CODE = 21610
BAD_NUMBER_CODES = frozenset({21211, 21614})
# 20003: our account sid or auth token is wrong (https://www.twilio.com/docs/errors/20003).
AUTH_FAILED_CODE = 20003

MAX_ATTEMPTS = 5
RETRY_BASE = timedelta(seconds=30)
RETRY_MAX = timedelta(minutes=15)
# While Twilio rejects our credentials a message waits, retried this often and never given up.
HELD_RETRY = timedelta(seconds=60)

# Callbacks arrive out of order ("sent" after "delivered"): never move a message backwards.
# Twilio's own "sending" is left out: our SENDING means "we are calling Twilio right now".
_CALLBACK_RANK = {
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
_LONG_NUMBER = re.compile(r"\+?\d[\d ()-]{6,}\d")
# What a Twilio message sid can be (it is stored in a 64-character column).
_TWILIO_SID = re.compile(r"[A-Za-z0-9]{2,64}")
# Error codes are stored in a 32-bit integer column.
_MAX_ERROR_CODE = 2**31 - 1


class Outcome(enum.Enum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"
    OPTED_OUT = "opted_out"
    # Twilio rejected our credentials: a configuration problem, not this message's.
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


class TimeoutHttpClient(TwilioHttpClient):
    """Twilio's HTTP client with a timeout, optionally pointed at a fake server."""

    def __init__(self, timeout: float, base_url: str = "") -> None:
        super().__init__(timeout=timeout)
        self.base_url = base_url

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if self.base_url and url.startswith(TWILIO_API):
            url = self.base_url + url[len(TWILIO_API) :]
        return super().request(method, url, *args, **kwargs)


@functools.lru_cache(maxsize=4)
def _client(account_sid: str, auth_token: str, timeout: float, base_url: str) -> Client:
    return Client(
        account_sid, auth_token, http_client=TimeoutHttpClient(timeout=timeout, base_url=base_url)
    )


def get_client() -> Client:
    """Return this process's Twilio client for the current settings."""
    return _client(
        settings.TWILIO_ACCOUNT_SID,
        settings.TWILIO_AUTH_TOKEN,
        settings.TWILIO_TIMEOUT,
        settings.TWILIO_API_BASE_URL,
    )


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
    message = _new_message(
        phone=account.phone,
        kind=kind,
        body=mask_secret(body, secret),
        account=account,
        session=None,
    )
    if message.status == OutboundStatus.OPTED_OUT:
        return Delivery(message, Outcome.OPTED_OUT)
    _update(message.pk, status=OutboundStatus.SENDING, attempts=1)
    outcome = _send(message, body, retry_allowed=False)
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
    """Call Twilio for a claimed message and record the answer on its row."""
    if is_opted_out(message.phone):
        _finish(message, OutboundStatus.OPTED_OUT, error_message="Recipient opted out.")
        return Outcome.OPTED_OUT
    if missing := missing_twilio_settings():
        return _transient(
            message, f"Twilio is not configured: {', '.join(missing)}.", retry_allowed
        )
    try:
        created = get_client().messages.create(**_create_params(message, body))
    except TwilioException as exc:
        return _rest_error(message, exc, retry_allowed)
    except requests.RequestException as exc:
        return _transient(
            message, f"Network error talking to Twilio: {type(exc).__name__}.", retry_allowed
        )
    status = created.status if created.status in _CALLBACK_RANK else OutboundStatus.QUEUED
    now = timezone.now()
    recorded = OutboundMessage.objects.filter(pk=message.pk, status=OutboundStatus.SENDING).update(
        status=status,
        twilio_sid=created.sid,
        sent_at=now,
        error_code=None,
        error_message="",
        next_attempt_at=None,
        updated_at=now,
    )
    if not recorded:
        # A status callback got here first and already moved the row on: keep its status.
        OutboundMessage.objects.filter(pk=message.pk).update(twilio_sid=created.sid, sent_at=now)
    logger.info(
        "sms %s (%s) to %s accepted by Twilio as %s",
        message.public_id,
        message.kind,
        mask_phone(message.phone),
        created.sid,
    )
    _forget_phone_if_purged(message.pk)
    return Outcome.SENT


def _create_params(message: OutboundMessage, body: str) -> dict[str, str]:
    params = {"to": message.phone, "body": body}
    if settings.TWILIO_MESSAGING_SERVICE_SID:
        params["messaging_service_sid"] = settings.TWILIO_MESSAGING_SERVICE_SID
    else:
        params["from_"] = settings.TWILIO_FROM_NUMBER
    if callback := status_callback_url(message):
        params["status_callback"] = callback
    return params


def _scrub(text: str) -> str:
    """Mask anything that looks like a phone number (Twilio echoes the To number in errors)."""
    return _LONG_NUMBER.sub(lambda m: mask_phone(m.group(0)), text)[:255]


def credentials_rejected(status: int | None, code: int | None) -> bool:
    """Tell whether a Twilio error answer means our account sid or auth token is wrong."""
    # A 403 with another code (e.g. 21408, region not enabled) is about the message, not us.
    return status == 401 or code == AUTH_FAILED_CODE


def held_retry_delay() -> timedelta:
    """Return the pause before retrying a send that Twilio refused for our credentials."""
    # Jitter spreads a class's worth of waiting messages once the credentials are fixed.
    return jobs.backoff(1, HELD_RETRY, HELD_RETRY)


def _rest_error(message: OutboundMessage, exc: TwilioException, retry_allowed: bool) -> Outcome:
    status = getattr(exc, "status", None) or 0
    code = getattr(exc, "code", None)
    code = code if isinstance(code, int) else None
    text = _scrub(str(getattr(exc, "msg", "") or getattr(exc, "title", "") or type(exc).__name__))
    logger.warning(
        "sms %s to %s: Twilio answered %s (code %s)",
        message.public_id,
        mask_phone(message.phone),
        status,
        code,
    )
    if code == OPTED_OUT_CODE:
        OptOut.objects.get_or_create(phone=message.phone)
        _finish(message, OutboundStatus.OPTED_OUT, code, text)
        return Outcome.OPTED_OUT
    if credentials_rejected(status, code):
        return _held(message, code, retry_allowed)
    if status == 429 or status >= 500:
        return _transient(message, text, retry_allowed, code)
    # 21211/21614 (not a valid mobile number) and every other 4xx: the same request fails again.
    _finish(message, OutboundStatus.FAILED, code, text)
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


def _held(message: OutboundMessage, code: int | None, retry_allowed: bool) -> Outcome:
    """Wait for working credentials; the attempt does not count (the message is not at fault)."""
    text = "Twilio rejects our credentials: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN."
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
    """Record a Twilio status callback; unknown ids and junk are ignored (the view answers 200)."""
    try:
        key = uuid.UUID(str(public_id))
    except ValueError:
        return
    status = str(params.get("MessageStatus") or params.get("SmsStatus") or "").lower()
    message = OutboundMessage.objects.filter(public_id=key).first()
    if message is None or status not in _CALLBACK_RANK:
        return
    sid = params.get("MessageSid") or params.get("SmsSid") or ""
    if sid and not _TWILIO_SID.fullmatch(sid):
        return
    if message.twilio_sid and sid and sid != message.twilio_sid:
        return
    code = _int_or_none(params.get("ErrorCode"))
    # SENDING too: the callback may beat our recording of Twilio's answer.
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
    if code == OPTED_OUT_CODE and message.phone:
        OptOut.objects.get_or_create(phone=message.phone)


def _int_or_none(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 <= number <= _MAX_ERROR_CODE else None


def redrive_stale(now: datetime) -> int:
    """Re-enqueue messages due for a retry, lost from the queue, or stuck mid-send; count them."""
    stale = now - timedelta(seconds=settings.STALE_AFTER_SECONDS)
    # A crash after Twilio accepted but before we recorded it may duplicate a plain message;
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
        | Q(status=OutboundStatus.PENDING, next_attempt_at__isnull=True, created_at__lte=stale)
        | Q(status=OutboundStatus.PENDING, next_attempt_at__lte=now)
    ).exclude(kind=OutboundKind.CREDENTIALS)
    # Leased until the next sweep, so that two sweeps never enqueue one message twice.
    lease = now + timedelta(seconds=settings.STALE_AFTER_SECONDS)
    candidates = due.values_list("pk", "next_attempt_at")[:500]
    return jobs.lease_and_enqueue(OutboundMessage.objects.all(), candidates, SEND_TASK, lease)
