"""Inbound SMS: record every message Twilio delivers, route it, and choose the TwiML reply.

Runs inside the webhook request, so it only touches the database (a constant number of queries
whatever the number of sessions and accounts) and the broker; Coder and Twilio's REST API are
called by the worker.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from xml.sax.saxutils import escape

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Case, Exists, F, IntegerField, Q, Value, When
from django.http import QueryDict
from django.utils import timezone
from django_stubs_ext import StrOrPromise

from registrations import deletion, enrollment, provisioning, texts
from registrations.models import (
    DELETION_STATUSES,
    Account,
    AccountStatus,
    DeletionReason,
    InboundMessage,
    InboundOutcome,
    OptOut,
    SeenMessage,
    Session,
    SessionState,
    seen_message_key,
)
from registrations.phones import mask_phone, normalize_phone
from registrations.phrases import (
    CARRIER_HELP_WORDS,
    CARRIER_START_WORDS,
    CARRIER_STOP_WORDS,
    DONE_WORD,
    PHRASE_MAX_LENGTH,
    RESEND_WORD,
    normalize_phrase,
)

logger = logging.getLogger(__name__)

# Refusals are sent at most once per sender per throttle window, so that a phone (or a bot)
# that keeps texting never gets a reply storm.
ONCE_PER_WINDOW = (
    InboundOutcome.WRONG_PHRASE,
    InboundOutcome.NOT_OPEN,
    InboundOutcome.CLOSED,
    InboundOutcome.FULL,
    InboundOutcome.RESEND_LIMITED,
)
_SID = re.compile(r"^[A-Za-z0-9]{2,64}$")
_SINGLE_FIELDS = ("MessageSid", "SmsMessageSid", "SmsSid", "From", "To", "Body")
_BODY_FIELD_LENGTH = InboundMessage._meta.get_field("body").max_length
_TO_FIELD_LENGTH = InboundMessage._meta.get_field("to_number").max_length


class MalformedInbound(ValueError):
    """The request is not an inbound SMS from Twilio (the view answers 400)."""


class _SeenBefore(Exception):
    """The MessageSid was received before: a retry by Twilio, or a replay."""


@dataclass(frozen=True)
class Message:
    sid: str
    phone: str | None
    to_number: str
    body: str
    text: str
    from_us: bool


@dataclass
class Routed:
    outcome: InboundOutcome
    # A text of `texts`, rendered by handle_inbound in the language of `session`.
    reply: StrOrPromise | None = None
    session: Session | None = None
    account: Account | None = None


def handle_inbound(params: QueryDict) -> str | None:
    """Record and route one inbound SMS; return the reply text, or None for no reply."""
    message = parse(params)
    now = timezone.now()
    try:
        with transaction.atomic():
            record = _record(message, now)
            routed = route(message, now)
            record.outcome = routed.outcome
            record.session = routed.session
            record.account = routed.account
            record.save(update_fields=["outcome", "session", "account"])
    except _SeenBefore:
        # Twilio retries a webhook it thinks timed out, and a captured request may be replayed
        # months later: answer the same empty TwiML, change nothing, send nothing.
        logger.info("inbound %s: duplicate delivery ignored", message.sid)
        return None
    logger.info(
        "inbound %s from %s: %s%s",
        message.sid,
        mask_phone(message.phone),
        routed.outcome,
        " (replied)" if routed.reply else "",
    )
    if routed.reply is None:
        return None
    # In the language of the session the text is about; with none known (a wrong phrase, no
    # account), in the default language.
    return texts.in_language(routed.reply, routed.session)


def twiml(reply: str | None) -> str:
    """Render the TwiML answer: one message, or an empty response."""
    head = '<?xml version="1.0" encoding="UTF-8"?>'
    if not reply:
        return head + "<Response/>"
    return f"{head}<Response><Message>{escape(reply)}</Message></Response>"


def parse(params: QueryDict) -> Message:
    """Read Twilio's form fields; raise MalformedInbound when there is no usable MessageSid."""
    # Twilio sends each field once. Its signature covers repeated values in sorted order while
    # Django reads the last one, so a repeat could be reordered without breaking the signature.
    if any(len(params.getlist(name)) > 1 for name in _SINGLE_FIELDS):
        raise MalformedInbound("Repeated message field.")
    sid = _clean(params.get("MessageSid") or params.get("SmsMessageSid") or params.get("SmsSid"))
    if not _SID.match(sid):
        raise MalformedInbound("Missing or malformed MessageSid.")
    raw_from = _clean(params.get("From"))
    phone = normalize_phone(raw_from)
    to_number = _clean(params.get("To"))
    to_number = normalize_phone(to_number) or to_number[:_TO_FIELD_LENGTH]
    body = _clean(params.get("Body"))
    # Twilio delivers at most MAX_BODY_LENGTH characters: anything longer is not an SMS we
    # can match.
    too_long = len(body) > texts.MAX_BODY_LENGTH
    return Message(
        sid=sid,
        phone=phone,
        to_number=to_number,
        body=body[:_BODY_FIELD_LENGTH],
        text="" if too_long else normalize_phrase(body),
        from_us=_is_ours(raw_from, phone, to_number),
    )


def _clean(value: str | None) -> str:
    # PostgreSQL rejects NUL characters in text columns; they never belong in an SMS anyway.
    return (value or "").replace("\x00", "").strip()


def _is_ours(raw_from: str, phone: str | None, to_number: str) -> bool:
    ours = {settings.TWILIO_FROM_NUMBER, *settings.TWILIO_OWN_NUMBERS}
    ours = {normalize_phone(number) or number for number in ours if number}
    return bool(raw_from) and (raw_from in ours or phone in ours or phone == to_number)


def _record(message: Message, now: datetime) -> InboundMessage:
    """Insert the message's rows; raise _SeenBefore when its MessageSid was received before.

    The unique keys decide, not a prior read: two concurrent deliveries of one message both
    try to insert and exactly one succeeds. SeenMessage outlives the InboundMessage row (which
    retention deletes), so a replay after retention is refused as well. These are the first
    writes of the caller's transaction, so no savepoint is needed: a conflict rolls back a
    transaction that has done nothing yet.
    """
    try:
        SeenMessage.objects.create(key=seen_message_key(message.sid), first_seen=now.date())
        return InboundMessage.objects.create(
            message_sid=message.sid,
            phone=message.phone,
            to_number=message.to_number,
            body=message.body,
            received_at=now,
            outcome=InboundOutcome.INVALID,
        )
    except IntegrityError as exc:
        raise _SeenBefore from exc


def route(message: Message, now: datetime) -> Routed:
    """Decide what a recorded message means and do it (in the caller's transaction)."""
    if message.from_us:
        return Routed(InboundOutcome.OWN_NUMBER)
    phone = message.phone
    if phone is None:
        return Routed(InboundOutcome.INVALID)
    # Opt-outs and opt-ins are honoured even from a throttled sender: Twilio stops delivering
    # to the phone either way, and our records must agree with it.
    if message.text in CARRIER_STOP_WORDS:
        OptOut.objects.get_or_create(phone=phone)
        return Routed(InboundOutcome.OPT_OUT)
    if message.text in CARRIER_START_WORDS:
        OptOut.objects.filter(phone=phone).delete()
        return Routed(InboundOutcome.OPT_IN)
    sender = _sender(phone, now)
    if len(sender.recent) > settings.INBOUND_THROTTLE_COUNT:
        return Routed(InboundOutcome.THROTTLED)
    return _once_per_window(_route_text(message, phone, now, sender.opted_out), sender.recent)


def _route_text(message: Message, phone: str, now: datetime, opted_out: bool) -> Routed:
    """Route a text from a valid phone (message.phone, checked by the caller)."""
    if message.text in CARRIER_HELP_WORDS:
        # Twilio answers HELP/INFO itself; a second answer from us would only confuse.
        return Routed(InboundOutcome.KEYWORD)
    if message.text == DONE_WORD:
        return _done(phone)
    if opted_out:
        # Twilio blocks every SMS to a phone that texted STOP: credentials (a new account's,
        # or the new password of a repeat text or RESEND) could never arrive, and a Coder user
        # or a reset password nobody receives only locks the student out. START lifts this.
        session = find_session(message.text, message.to_number, now)
        return Routed(InboundOutcome.OPTED_OUT_PHRASE, session=session)
    if message.text == RESEND_WORD:
        return _resend(phone)
    return _phrase(message, phone, now)


@dataclass(frozen=True)
class _Sender:
    recent: list[str]  # outcomes of the sender's messages in the throttle window, newest first
    opted_out: bool  # the phone texted STOP (and not START since)


def _sender(phone: str, now: datetime) -> _Sender:
    """Read the sender's recent outcomes and opt-out state in one query."""
    since = now - timedelta(minutes=settings.INBOUND_THROTTLE_MINUTES)
    # Includes the row just inserted, so there is always a row to carry the opt-out flag. One
    # past the limit is enough: beyond it the sender is throttled whatever the exact number.
    # One query on the (phone, received_at) index.
    limit = settings.INBOUND_THROTTLE_COUNT + 1
    rows = list(
        InboundMessage.objects.filter(phone=phone, received_at__gte=since)
        .annotate(opted_out=Exists(OptOut.objects.filter(phone=phone)))
        .order_by("-received_at")
        .values_list("outcome", "opted_out")[:limit]
    )
    if not rows:
        return _Sender([], OptOut.objects.filter(phone=phone).exists())
    return _Sender([outcome for outcome, _ in rows], bool(rows[0][1]))


def _once_per_window(routed: Routed, recent: list[str]) -> Routed:
    # The current row still has its placeholder outcome, so finding this refusal means an
    # earlier message in the window already got it.
    if routed.outcome in ONCE_PER_WINDOW and routed.outcome in recent:
        routed.reply = None
    return routed


def _live_accounts(phone: str) -> Q:
    return Q(phone=phone) & ~Q(status__in=(AccountStatus.DELETED, *DELETION_STATUSES))


def _done(phone: str) -> Routed:
    """Start deleting every live account of the phone (the student texted DONE)."""
    accounts = list(Account.objects.filter(_live_accounts(phone)).select_related("session"))
    deleting = [a for a in accounts if deletion.request_deletion(a, DeletionReason.DONE)]
    if not deleting:
        return Routed(InboundOutcome.DONE, texts.NOTHING_TO_DELETE_REPLY)
    first = deleting[0]
    return Routed(InboundOutcome.DONE, texts.DONE_REPLY, session=first.session, account=first)


def _resend(phone: str) -> Routed:
    """Send new login details for the phone's newest live account (the student texted RESEND)."""
    account = (
        Account.objects.filter(_live_accounts(phone))
        .select_related("session")
        .order_by("-created_at")
        .first()
    )
    if account is None:
        return Routed(InboundOutcome.KEYWORD, texts.NO_ACCOUNT_REPLY)
    if account.status != AccountStatus.ACTIVE:
        return _existing(account, InboundOutcome.KEYWORD)
    if provisioning.request_resend(account):
        return Routed(InboundOutcome.RESEND, session=account.session, account=account)
    return Routed(
        InboundOutcome.RESEND_LIMITED,
        texts.RESEND_LIMITED_REPLY,
        session=account.session,
        account=account,
    )


def _existing(account: Account, outcome: InboundOutcome) -> Routed:
    """Tell a phone why a repeat request changes nothing for its account."""
    if account.status == AccountStatus.FAILED:
        reply = texts.FAILED_REPLY
    elif account.status in DELETION_STATUSES or account.status == AccountStatus.DELETED:
        reply = texts.BEING_DELETED_REPLY
    else:
        reply = texts.ON_THE_WAY_REPLY
    return Routed(outcome, reply, session=account.session, account=account)


def _phrase(message: Message, phone: str, now: datetime) -> Routed:
    """Enroll the sender in the session whose phrase they texted, or say why not."""
    session = find_session(message.text, message.to_number, now)
    if session is None:
        return Routed(InboundOutcome.WRONG_PHRASE, texts.WRONG_PHRASE_REPLY)
    state = session.state_at(now)
    if state == SessionState.SCHEDULED:
        return Routed(InboundOutcome.NOT_OPEN, texts.not_open_reply(session), session=session)
    if state != SessionState.OPEN:
        reply = texts.ENDED_REPLY if state == SessionState.ENDED else texts.CLOSED_REPLY
        return Routed(InboundOutcome.CLOSED, reply, session=session)
    result = enrollment.enroll(session, phone)
    routed = Routed(result.outcome, session=session, account=result.account)
    if result.outcome == InboundOutcome.FULL:
        routed.reply = texts.FULL_REPLY
    elif result.outcome == InboundOutcome.CLOSED:
        routed.reply = texts.ENDED_REPLY  # the session ended between our read and the lock
    elif result.outcome == InboundOutcome.RESEND_LIMITED:
        routed.reply = texts.RESEND_LIMITED_REPLY
    elif result.outcome == InboundOutcome.DUPLICATE:
        if result.account is None:
            # Its account was purged between the insert and the read: it was being deleted.
            routed.reply = texts.BEING_DELETED_REPLY
        else:
            routed = _existing(result.account, result.outcome)
    return routed


def find_session(text: str, to_number: str, now: datetime) -> Session | None:
    """Return the session a phrase most likely means: open, else next to open, else latest."""
    if not text or len(text) > PHRASE_MAX_LENGTH:
        return None
    live = Q(ended_at__isnull=True, expires_at__gt=now)
    is_open = live & Q(opens_at__lte=now, closes_at__gt=now)
    is_scheduled = live & Q(opens_at__gt=now)
    # One indexed query, ranked in the database, whatever the number of sessions.
    return (
        Session.objects.filter(phrase_normalized=text)
        .filter(Q(inbound_number="") | Q(inbound_number=to_number))
        .annotate(
            rank=Case(
                When(is_open, then=Value(0)),
                When(is_scheduled, then=Value(1)),
                default=Value(2),
                output_field=IntegerField(),
            )
        )
        .order_by(
            "rank",
            Case(When(is_scheduled, then=F("opens_at"))).asc(nulls_last=True),
            F("closes_at").desc(),
            "-pk",
        )
        .first()
    )
