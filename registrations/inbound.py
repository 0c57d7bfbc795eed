"""Inbound SMS: record every message Twilio delivers, route it, and choose the TwiML reply.

Runs inside the webhook request, so it only touches the database and the broker; Coder and
Twilio's REST API are called by the worker. Every path is a few statements whatever the number
of sessions and accounts (tests/test_webhook_queries.py; README, "Webhook cost"): one read of
everything the text needs (whether its MessageSid was seen, the sender's state, the session it
names), at most two writes to act on it, and the message's log row, inserted once with its
outcome.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from xml.sax.saxutils import escape

from django.conf import settings
from django.db import IntegrityError, ProgrammingError, connection, transaction
from django.http import QueryDict
from django.utils import timezone
from django_stubs_ext import StrOrPromise

from registrations import deletion, enrollment, provisioning, sql, texts
from registrations.models import (
    DELETION_STATUSES,
    Account,
    AccountStatus,
    DeletionReason,
    InboundMessage,
    InboundOutcome,
    OptOut,
    OutboundKind,
    OutboundMessage,
    SeenMessage,
    Session,
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
    # A text of `texts`, rendered by handle_inbound in `language`.
    reply: StrOrPromise | None = None
    session_id: int | None = None
    account_id: int | None = None
    # The language of the session the text is about (Session.language, read with the rest of
    # the text's state); None when no session is known: the default language.
    language: str | None = None
    # An enrollment whose seat the log row's statement reads back under the session's lock
    # (the parameters of enrollment.seat_lost_sql()); None for every other outcome.
    seat_check: dict[str, Any] | None = None


def handle_inbound(params: QueryDict) -> str | None:
    """Record and route one inbound SMS; return the reply text, or None for no reply."""
    message = parse(params)
    now = timezone.now()
    try:
        try:
            routed = _record(message, now, hold_session=False)
        except enrollment.SeatLost as lost:
            # The last seat went to another student, or the session ended, while this one's
            # insert ran; all of it was rolled back. Routed again, this time with the session
            # held from the read on, it gets the answer that is true now. Rare: at most once.
            logger.info(
                "inbound %s: seat %s, routing again",
                message.sid,
                f"lost ({lost.outcome})" if lost.outcome else "not checked",
            )
            routed = _record(message, now, hold_session=True)
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
    return texts.in_language_code(routed.reply, routed.language)


def _record(message: Message, now: datetime, *, hold_session: bool) -> Routed:
    """Route the message and log it, in one transaction.

    The read comes first, outside the transaction, unless it is to lock the session: SQLite
    serialises writers whole (each transaction begins IMMEDIATE), so the write lock is held
    for the writes only, not for the read and the routing as well. Nothing is lost by it:
    PostgreSQL's reads never locked anything else, and every write re-checks what it relies
    on (the log row's unique MessageSid, the insert's seat and phone, conditional updates).
    """
    sender = None if hold_session else read_sender(message, now)
    if sender is not None and sender.seen:
        raise _SeenBefore
    with transaction.atomic():
        routed = route(message, now, hold_session=hold_session, sender=sender)
        _log(message, now, routed)
    return routed


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
    to_number = _our_number(_clean(params.get("To")), settings.PHONE_DEFAULT_REGION)
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


# Reading a phone number (phonenumbers) is a tenth of a webhook's CPU, and each webhook has
# three. Our own numbers are few and fixed: each is read once per process (the settings are
# part of the key); only the sender's is read every time.
@functools.lru_cache(maxsize=64)
def _our_number(raw: str, region: str) -> str:
    """The number a student texted (To), in E.164 when it reads as one."""
    return normalize_phone(raw) or raw[:_TO_FIELD_LENGTH]


@functools.lru_cache(maxsize=8)
def _our_numbers(numbers: tuple[str, ...], region: str) -> frozenset[str]:
    return frozenset(normalize_phone(number) or number for number in numbers if number)


def _is_ours(raw_from: str, phone: str | None, to_number: str) -> bool:
    numbers = (settings.TWILIO_FROM_NUMBER, *settings.TWILIO_OWN_NUMBERS)
    ours = _our_numbers(numbers, settings.PHONE_DEFAULT_REGION)
    return bool(raw_from) and (raw_from in ours or phone in ours or phone == to_number)


_LOG = (
    f"INSERT INTO {sql.table(InboundMessage)} (message_sid, phone, to_number, body, "
    "received_at, outcome, session_id, account_id) VALUES (%(message_sid)s, %(phone)s, "
    "%(to_number)s, %(body)s, %(received_at)s, %(outcome)s, %(session_id)s, %(account_id)s)"
)
# PostgreSQL only (an enrollment's seat is checked there; SQLite serialises writers whole).
_LOG_CHECKING_SEAT = f"{_LOG} RETURNING {enrollment.seat_lost_sql()}"


def _log(message: Message, now: datetime, routed: Routed) -> None:
    """Insert the message's log row, once, with its outcome (the last write of the webhook).

    Its unique MessageSid decides between concurrent deliveries of one message: both may have
    read "not seen" (on PostgreSQL; SQLite runs them one after the other), and the second
    waits here for the first to commit, fails, and rolls back all it did (a task it queued
    is only queued on commit). A replay after retention deleted the row is refused by the read
    (`read_sender`), which finds the sid's SeenMessage.
    """
    row = {
        "message_sid": message.sid,
        "phone": message.phone,
        "to_number": message.to_number,
        "body": message.body,
        "received_at": sql.moment(now),
        "outcome": str(routed.outcome),
        "session_id": routed.session_id,
        "account_id": routed.account_id,
    }
    try:
        if routed.seat_check is None:
            sql.run(_LOG, row)
            return
        # The last statement of an enrollment's transaction: it also reads back whether the
        # seat taken is there (enrollment.enroll, confirm_later), while the session is locked.
        ((lost,),) = sql.rows(_LOG_CHECKING_SEAT, {**row, **routed.seat_check})
    except IntegrityError as exc:
        # Leaving the atomic block by an exception rolls back whatever routing did.
        raise _SeenBefore from exc
    except ProgrammingError as exc:
        if not enrollment.seat_check_missing(exc):
            raise
        # Still served (routed again, the session held from the read on), but slower.
        logger.error("the database lacks the seat check: run `manage.py migrate`")
        raise enrollment.SeatLost(None) from exc
    enrollment.check_seat(lost)  # SeatLost rolls back the enrollment and this row


def route(
    message: Message, now: datetime, *, hold_session: bool = False, sender: Sender | None = None
) -> Routed:
    """Decide what a message means and do it (in the caller's transaction).

    Raises _SeenBefore, having changed nothing, when the MessageSid was received before.
    `hold_session`: lock the session a phrase names from the read on (PostgreSQL), so that an
    enrollment needs no check of its seat at the end. `sender`: read_sender's answer, when
    the caller read it already.
    """
    if sender is None:
        sender = read_sender(message, now, lock=hold_session)
    if sender.seen:
        raise _SeenBefore
    if message.from_us:
        return Routed(InboundOutcome.OWN_NUMBER)
    phone = message.phone
    if phone is None:
        return Routed(InboundOutcome.INVALID)
    # Opt-outs and opt-ins are honoured even from a throttled sender: Twilio stops delivering
    # to the phone either way, and our records must agree with it.
    if message.text in CARRIER_STOP_WORDS:
        # INSERT ... ON CONFLICT DO NOTHING: one statement, and a repeat STOP is no error.
        OptOut.objects.bulk_create([OptOut(phone=phone, created_at=now)], ignore_conflicts=True)
        return Routed(InboundOutcome.OPT_OUT)
    if message.text in CARRIER_START_WORDS:
        OptOut.objects.filter(phone=phone).delete()
        return Routed(InboundOutcome.OPT_IN)
    if len(sender.recent) >= settings.INBOUND_THROTTLE_COUNT:
        return Routed(InboundOutcome.THROTTLED)
    routed = _route_text(message, phone, sender)
    if routed.outcome in ONCE_PER_WINDOW and routed.outcome in sender.recent:
        routed.reply = None  # an earlier message in the window already got this refusal
    return routed


def _route_text(message: Message, phone: str, sender: Sender) -> Routed:
    """Route a text from a valid phone (message.phone, checked by the caller)."""
    if message.text in CARRIER_HELP_WORDS:
        # Twilio answers HELP/INFO itself; a second answer from us would only confuse.
        return Routed(InboundOutcome.KEYWORD)
    if message.text == DONE_WORD:
        return _done(phone)
    target = sender.target
    if sender.opted_out:
        # Twilio blocks every SMS to a phone that texted STOP: credentials (a new account's,
        # or the new password of a repeat text or RESEND) could never arrive, and a Coder user
        # or a reset password nobody receives only locks the student out. START lifts this.
        session_id = target.session_id if target and message.text != RESEND_WORD else None
        return Routed(InboundOutcome.OPTED_OUT_PHRASE, session_id=session_id)
    if message.text == RESEND_WORD:
        return _resend(target)
    return _phrase(target, phone)


class _State:
    """A session's state at the time of the read, as Session.state_at tells it."""

    OPEN, SCHEDULED, CLOSED, ENDED = 0, 1, 2, 3


@dataclass(frozen=True)
class Target:
    """The session a text names and the phone's account in it (or its newest, for RESEND)."""

    session_id: int
    state: int | None  # a _State; None for RESEND's account
    opens_at: Any  # raw column value, read only for the "not open yet" reply
    time_zone: str | None
    account_id: int | None
    status: str | None
    on_its_way: bool
    deletion_requested: bool
    resends: int  # resends of the account in the last hour (provisioning.resends_in_last_hour)
    full: bool | None  # no seat left at the read (None for RESEND's account)
    language: str | None  # the session's (Session.language), for the replies about it
    held: bool = False  # the read locked the session (PostgreSQL, read_sender's `lock`)


@dataclass(frozen=True)
class Sender:
    seen: bool  # the MessageSid was received before (its log row, or its SeenMessage)
    recent: list[str]  # outcomes of the sender's earlier messages in the window (capped)
    opted_out: bool  # the phone texted STOP (and not START since)
    target: Target | None


_INBOUND, _OPTOUT, _SEEN = sql.table(InboundMessage), sql.table(OptOut), sql.table(SeenMessage)
_SESSION, _ACCOUNT, _OUTBOUND = sql.table(Session), sql.table(Account), sql.table(OutboundMessage)
_LIVE = "s.ended_at IS NULL AND s.expires_at > %(now)s"
# provisioning.resends_in_last_hour, for the account `a`: credentials messages of the last
# hour, not counting the very first one.
_RESENDS = (
    f"(SELECT COUNT(*) FROM {_OUTBOUND} o WHERE o.account_id = a.id "
    f"AND o.kind = '{OutboundKind.CREDENTIALS}' AND o.created_at >= %(hour_ago)s "
    f"AND o.id <> COALESCE((SELECT f.id FROM {_OUTBOUND} f WHERE f.account_id = a.id "
    f"AND f.kind = '{OutboundKind.CREDENTIALS}' ORDER BY f.created_at, f.id LIMIT 1), 0))"
)
_ACCOUNT_COLUMNS = (
    "a.id, a.status, a.next_attempt_at IS NOT NULL, a.deletion_requested_at IS NOT NULL, "
    + _RESENDS
)
# The session a phrase most likely means: open, else the next to open, else the latest; one
# indexed lookup (phrase_normalized), with the phone's account in it (unique per session).
_PHRASE_TARGET = (
    "SELECT s.id, "
    "CASE WHEN s.ended_at IS NOT NULL OR s.expires_at <= %(now)s THEN 3 "
    "WHEN s.opens_at > %(now)s THEN 1 WHEN s.closes_at > %(now)s THEN 0 ELSE 2 END, "
    f"s.opens_at, s.time_zone, {_ACCOUNT_COLUMNS}, ({enrollment.SEATS_TAKEN}) >= s.capacity, "
    "s.language "
    f"FROM {_SESSION} s LEFT JOIN {_ACCOUNT} a ON a.session_id = s.id AND a.phone = %(phone)s "
    "WHERE s.phrase_normalized = %(text)s "
    "AND (s.inbound_number = '' OR s.inbound_number = %(to_number)s) "
    f"ORDER BY CASE WHEN {_LIVE} AND s.opens_at <= %(now)s AND s.closes_at > %(now)s THEN 0 "
    f"WHEN {_LIVE} AND s.opens_at > %(now)s THEN 1 ELSE 2 END, "
    # Among scheduled sessions the next to open; among the others (all NULL here) no effect.
    f"CASE WHEN {_LIVE} AND s.opens_at > %(now)s THEN s.opens_at END, "
    "s.closes_at DESC, s.id DESC LIMIT 1"
)
# The same read holding the session found from here on (PostgreSQL), for a text routed again
# after its enrollment lost its seat (handle_inbound): enrollments in the session are then
# serialised from the read (enrollment.enroll, whose insert re-checks seat and end in a
# statement of its own, so with what committed while we waited). NO KEY UPDATE, as in
# enrollment._LOCK: rows being inserted that refer to the session (a worker's SMS row) do not
# wait for it. A first routing reads without it: the seat check in the log row's statement
# (enrollment.seat_lost_sql()) takes the lock, so that it is held for the commit only. SQLite
# has no row locks; its writers are serialised whole.
_PHRASE_TARGET_HELD = _PHRASE_TARGET + (
    " FOR NO KEY UPDATE OF s" if connection.features.has_select_for_no_key_update else ""
)
_GONE = (AccountStatus.DELETED, *DELETION_STATUSES)
# RESEND: the phone's newest live account, on the (phone, status) index, with its session's
# language (by its primary key).
_RESEND_TARGET = (
    f"SELECT a.session_id, NULL, NULL, NULL, {_ACCOUNT_COLUMNS}, NULL, s.language "
    f"FROM {_ACCOUNT} a JOIN {_SESSION} s ON s.id = a.session_id "
    "WHERE a.phone = %(phone)s AND a.status NOT IN ("
    + ", ".join(f"'{status}'" for status in _GONE)
    + ") ORDER BY a.created_at DESC, a.id DESC LIMIT 1"
)


def _sender_sql(target: str | None) -> str:
    # One row per earlier message in the window (at least one row, even for a first-time
    # sender), each carrying the opt-out flag, whether the MessageSid was seen, and the
    # target. One statement is one snapshot: a sid that retention moves meanwhile is found
    # in the log or in SeenMessage. The window needs no ORDER BY: past the limit the sender
    # is throttled whatever the outcomes, and below it every row is read. The
    # (phone, received_at) index serves it.
    recent = (
        f"SELECT m.outcome FROM {_INBOUND} m "
        "WHERE m.phone = %(phone)s AND m.received_at >= %(since)s LIMIT %(limit)s"
    )
    columns = (
        f"recent.outcome, EXISTS (SELECT 1 FROM {_OPTOUT} WHERE phone = %(phone)s), "
        f"EXISTS (SELECT 1 FROM {_INBOUND} WHERE message_sid = %(sid)s) "
        f"OR EXISTS (SELECT 1 FROM {_SEEN} WHERE key = %(key)s)"
    )
    joins = f"LEFT JOIN ({recent}) recent ON 1 = 1"
    if target:
        columns += ", t.*"
        joins += f" LEFT JOIN ({target}) t ON 1 = 1"
    return f"SELECT {columns} FROM (SELECT 1 AS one) base {joins}"


_NO_TARGET = {*CARRIER_STOP_WORDS, *CARRIER_START_WORDS, *CARRIER_HELP_WORDS, DONE_WORD}
_SENDER_SQL = {
    "phrase": _sender_sql(_PHRASE_TARGET),
    "phrase held": _sender_sql(_PHRASE_TARGET_HELD),
    "resend": _sender_sql(_RESEND_TARGET),
    None: _sender_sql(None),
}


def read_sender(message: Message, now: datetime, *, lock: bool = False) -> Sender:
    """Read, in one query, whether the message is a repeat, the sender's recent outcomes and
    opt-out, and what the text names (the session and the phone's account in it).

    `lock`: hold the session a phrase names until the transaction ends (PostgreSQL).
    """
    if message.phone is None or message.from_us or message.text in _NO_TARGET:
        kind: str | None = None
    elif message.text == RESEND_WORD:
        kind = "resend"
    elif message.text and len(message.text) <= PHRASE_MAX_LENGTH:
        kind = "phrase"
    else:
        kind = None
    since = now - timedelta(minutes=settings.INBOUND_THROTTLE_MINUTES)
    params = {
        "sid": message.sid,
        "key": seen_message_key(message.sid),
        "phone": message.phone,
        "since": sql.moment(since),
        "limit": settings.INBOUND_THROTTLE_COUNT,
        "now": sql.moment(now),
        "hour_ago": sql.moment(now - timedelta(hours=1)),
        "text": message.text,
        "to_number": message.to_number,
    }
    held = lock and kind == "phrase" and connection.features.has_select_for_no_key_update
    found = sql.rows(_SENDER_SQL["phrase held" if held else kind], params)
    recent = [row[0] for row in found if row[0] is not None]
    first = found[0]
    target = None
    if kind and first[3] is not None:
        session_id, state, opens_at, time_zone, account_id, status = first[3:9]
        target = Target(
            session_id,
            state,
            opens_at,
            time_zone,
            account_id,
            status,
            on_its_way=bool(first[9]),
            deletion_requested=bool(first[10]),
            resends=first[11] or 0,
            full=first[12],
            language=first[13],
            held=held,
        )
    return Sender(bool(first[2]), recent, bool(first[1]), target)


def _done(phone: str) -> Routed:
    """Start deleting every live account of the phone (the student texted DONE)."""
    deleting = deletion.request_deletion_of_phone(phone, DeletionReason.DONE)
    if not deleting:
        return Routed(InboundOutcome.DONE, texts.NOTHING_TO_DELETE_REPLY)
    # About the newest account: in its session's language (returned by the same update).
    newest = deleting[0]
    return Routed(
        InboundOutcome.DONE, texts.DONE_REPLY, newest.session_id, newest.account_id, newest.language
    )


def _resend(target: Target | None) -> Routed:
    """Send new login details for the phone's newest live account (the student texted RESEND)."""
    if target is None or target.account_id is None:
        return Routed(InboundOutcome.KEYWORD, texts.NO_ACCOUNT_REPLY)  # the default language
    if target.status != AccountStatus.ACTIVE:
        return _existing(target, InboundOutcome.KEYWORD)
    return _request_resend(target)


def _request_resend(target: Target) -> Routed:
    assert target.account_id is not None
    state = provisioning.ResendState(
        deletion_requested=target.deletion_requested,
        on_its_way=target.on_its_way,
        opted_out=False,  # an opted-out sender never gets here
        recent_resends=lambda: target.resends,
    )
    if provisioning.request_resend_as_read(target.account_id, state):
        return Routed(
            InboundOutcome.RESEND, None, target.session_id, target.account_id, target.language
        )
    return Routed(
        InboundOutcome.RESEND_LIMITED,
        texts.RESEND_LIMITED_REPLY,
        target.session_id,
        target.account_id,
        target.language,
    )


def _existing(target: Target, outcome: InboundOutcome) -> Routed:
    """Tell a phone why a repeat request changes nothing for its account."""
    reply = _existing_reply(target.status)
    return Routed(outcome, reply, target.session_id, target.account_id, target.language)


def _existing_reply(status: str | None) -> StrOrPromise:
    if status == AccountStatus.FAILED:
        return texts.FAILED_REPLY
    if status in DELETION_STATUSES or status == AccountStatus.DELETED:
        return texts.BEING_DELETED_REPLY
    return texts.ON_THE_WAY_REPLY


def _phrase(target: Target | None, phone: str) -> Routed:
    """Enroll the sender in the session whose phrase they texted, or say why not."""
    if target is None:
        return Routed(InboundOutcome.WRONG_PHRASE, texts.WRONG_PHRASE_REPLY)
    session_id = target.session_id
    if target.state == _State.SCHEDULED:
        session = Session(
            pk=session_id,
            opens_at=sql.read(Session, "opens_at", target.opens_at),
            time_zone=target.time_zone or "",
            language=texts.student_language(target.language),
        )
        # Rendered here, its date in the session's language.
        opens = texts.not_open_reply(session)
        return Routed(InboundOutcome.NOT_OPEN, opens, session_id, language=target.language)
    if target.state != _State.OPEN:
        reply = texts.ENDED_REPLY if target.state == _State.ENDED else texts.CLOSED_REPLY
        return Routed(InboundOutcome.CLOSED, reply, session_id, language=target.language)
    if target.account_id is not None:
        # A repeat text: read with the session, so no insert has to fail to find it.
        if target.status == AccountStatus.ACTIVE:
            return _request_resend(target)
        return _existing(target, InboundOutcome.DUPLICATE)
    if target.full:
        # Full at the read: no lock, no insert. (Free at the read is checked again by the
        # insert, under the lock.)
        return Routed(InboundOutcome.FULL, texts.FULL_REPLY, session_id, language=target.language)
    return _enroll(target, phone)


def _enroll(target: Target, phone: str) -> Routed:
    session_id = target.session_id
    result = enrollment.enroll(session_id, phone, session_locked=target.held, confirm_later=True)
    account_id = result.account.pk if result.account else None
    routed = Routed(result.outcome, None, session_id, account_id, target.language)
    routed.seat_check = result.unconfirmed
    if result.outcome == InboundOutcome.FULL:
        routed.reply = texts.FULL_REPLY
    elif result.outcome == InboundOutcome.CLOSED:
        routed.reply = texts.ENDED_REPLY  # the session ended between our read and the insert
    elif result.outcome == InboundOutcome.RESEND_LIMITED:
        routed.reply = texts.RESEND_LIMITED_REPLY
    elif result.outcome == InboundOutcome.DUPLICATE:
        # Enrolled meanwhile (by a concurrent text), or purged meanwhile (being deleted).
        status = result.account.status if result.account else AccountStatus.DELETED
        routed.reply = _existing_reply(status)
    return routed
