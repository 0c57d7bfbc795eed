"""Every routing branch of the inbound webhook, with the exact reply a student receives."""

from __future__ import annotations

import uuid
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from django.http import QueryDict
from django.utils import timezone

from registrations import inbound, texts
from registrations.models import (
    Account,
    AccountStatus,
    InboundMessage,
    InboundOutcome,
    OptOut,
    OutboundKind,
    OutboundMessage,
    Session,
)
from tests.conftest import OUR_NUMBER, STUDENT_PHONE, make_session, queued_tasks, twilio_params

WRONG_PHRASE = (
    "Sorry, we didn't recognise that. Check the phrase your instructor gave you and text it "
    "again exactly as shown."
)
CLOSED = "Sorry, enrollment for this class has closed. Please ask your instructor for help."
ENDED = "Sorry, this class session has ended. Please ask your instructor for help."
FULL = "Sorry, this class is full. Please ask your instructor for help."
ON_THE_WAY = "You're already signed up. Your login details are on the way by SMS."
FAILED = "Sorry, we could not create your account. Please ask your instructor, who can retry it."
RESEND_LIMITED = (
    "You have asked for new login details too often. Please wait up to an hour and try again."
)
NO_ACCOUNT = "You have no class account yet. Text the phrase your instructor gave you to join."
DONE = "OK, your class account is being deleted now. Thanks for taking part!"
NOTHING_TO_DELETE = "You have no class account to delete."


def reply_of(response) -> str | None:
    """The text of the TwiML <Message>, or None for an empty <Response/>."""
    assert response.status_code == 200
    assert response["Content-Type"] == "text/xml"
    message = ET.fromstring(response.content).find("Message")
    return None if message is None else message.text


def last_outcome() -> str:
    return InboundMessage.objects.order_by("-pk").values_list("outcome", flat=True).first()


def make_account(session, phone: str = STUDENT_PHONE, **fields) -> Account:
    values = {
        "status": AccountStatus.ACTIVE,
        "coder_username": "cs-" + uuid.uuid4().hex[:8],
        "coder_user_id": str(uuid.uuid4()),
        "expires_at": session.expires_at,
        **fields,
    }
    return Account.objects.create(session=session, phone=phone, **values)


def age_messages(minutes: int) -> None:
    """Move every recorded message into the past, as if time had passed."""
    InboundMessage.objects.update(received_at=timezone.now() - timedelta(minutes=minutes))


@pytest.mark.parametrize("sender", [OUR_NUMBER, "+14155550777", "(415) 555-0777"])
def test_messages_from_our_own_numbers_are_ignored(open_session, send_sms, settings, sender):
    settings.TWILIO_OWN_NUMBERS = ["+1 415 555 0777"]

    assert reply_of(send_sms("python lab 3", phone=sender)) is None
    assert last_outcome() == InboundOutcome.OWN_NUMBER
    assert Account.objects.count() == 0


def test_message_from_the_number_it_was_sent_to_is_ignored(open_session, send_sms):
    response = send_sms("no such phrase", phone="+14155550888", To="+14155550888")

    assert reply_of(response) is None
    assert last_outcome() == InboundOutcome.OWN_NUMBER


@pytest.mark.parametrize(
    "body", ["STOP", "stop", "  Stop ", "STOPALL", "unsubscribe", "Cancel", "END", "quit", "REVOKE",
             "optout", "Stop."]
)  # fmt: skip
def test_stop_family_records_the_opt_out_silently(send_sms, db, body):
    assert reply_of(send_sms(body)) is None
    assert list(OptOut.objects.values_list("phone", flat=True)) == [STUDENT_PHONE]
    assert last_outcome() == InboundOutcome.OPT_OUT


def test_repeated_stop_keeps_one_opt_out(send_sms, db):
    send_sms("STOP")
    send_sms("stop")

    assert OptOut.objects.count() == 1


@pytest.mark.parametrize("body", ["START", "yes", "Unstop"])
def test_start_family_clears_the_opt_out_silently(send_sms, db, body):
    OptOut.objects.create(phone=STUDENT_PHONE)
    OptOut.objects.create(phone="+14155550199")

    assert reply_of(send_sms(body)) is None
    assert list(OptOut.objects.values_list("phone", flat=True)) == ["+14155550199"]
    assert last_outcome() == InboundOutcome.OPT_IN


def test_stop_is_honoured_even_from_a_throttled_sender(send_sms, settings, db):
    settings.INBOUND_THROTTLE_COUNT = 2
    for _ in range(3):
        send_sms("help")

    send_sms("STOP")

    assert OptOut.objects.filter(phone=STUDENT_PHONE).exists()


@pytest.mark.parametrize("body", ["HELP", "info", "Help?"])
def test_help_and_info_are_only_logged(send_sms, db, body):
    # Twilio answers HELP itself; a second answer from us would be a duplicate.
    assert reply_of(send_sms(body)) is None
    assert last_outcome() == InboundOutcome.KEYWORD
    assert OptOut.objects.count() == 0


def test_done_starts_deleting_the_phones_accounts(
    open_session, classroom, send_sms, broker, django_capture_on_commit_callbacks
):
    account = make_account(open_session)
    other_session = make_session(classroom, phrase="python lab 4", inbound_number="+14155550999")
    second = make_account(other_session)
    bystander = make_account(open_session, phone="+14155550100")

    with django_capture_on_commit_callbacks(execute=True):
        assert reply_of(send_sms("Done")) == DONE

    assert last_outcome() == InboundOutcome.DONE
    for row in (account, second):
        row.refresh_from_db()
        assert (row.deletion_reason, row.status) == ("done", AccountStatus.SUSPENDING)
    bystander.refresh_from_db()
    assert (bystander.deletion_reason, bystander.status) == ("", AccountStatus.ACTIVE)
    assert sorted((t["func"], t["args"]) for t in queued_tasks(broker)) == [
        ("registrations.tasks.advance_deletion", (account.pk,)),
        ("registrations.tasks.advance_deletion", (second.pk,)),
    ]


def test_done_twice_says_there_is_nothing_left_to_delete(open_session, send_sms):
    make_account(open_session)

    assert reply_of(send_sms("DONE")) == DONE
    assert reply_of(send_sms("DONE")) == NOTHING_TO_DELETE


def test_done_without_an_account_says_so(open_session, send_sms):
    assert reply_of(send_sms("DONE")) == NOTHING_TO_DELETE
    assert last_outcome() == InboundOutcome.DONE


def test_resend_queues_new_credentials_without_a_reply(
    open_session, send_sms, broker, django_capture_on_commit_callbacks
):
    account = make_account(open_session)

    with django_capture_on_commit_callbacks(execute=True):
        assert reply_of(send_sms("resend")) is None

    assert [(t["func"], t["args"]) for t in queued_tasks(broker)] == [
        ("registrations.tasks.resend_credentials", (account.pk,))
    ]
    assert last_outcome() == InboundOutcome.RESEND
    assert InboundMessage.objects.get().account == account
    account.refresh_from_db()
    assert account.resend_count == 1


def sent_credentials(account: Account, times: int) -> None:
    """Record credentials SMS already sent to the account (the first one and its resends)."""
    for _ in range(times):
        OutboundMessage.objects.create(
            account=account, phone=account.phone, kind=OutboundKind.CREDENTIALS, body="••••"
        )


def test_resend_over_the_limit_is_refused_once_per_window(open_session, send_sms, settings):
    settings.RESEND_LIMIT_PER_HOUR = 1
    sent_credentials(make_account(open_session), times=2)

    assert reply_of(send_sms("RESEND")) == RESEND_LIMITED
    assert reply_of(send_sms("RESEND")) is None
    assert last_outcome() == InboundOutcome.RESEND_LIMITED
    assert Account.objects.get().resend_count == 0


def test_resend_without_an_account_says_how_to_join(open_session, send_sms):
    assert reply_of(send_sms("resend")) == NO_ACCOUNT
    assert last_outcome() == InboundOutcome.KEYWORD


@pytest.mark.parametrize(
    ("status", "reply"),
    [(AccountStatus.REQUESTED, ON_THE_WAY), (AccountStatus.PROVISIONING, ON_THE_WAY),
     (AccountStatus.FAILED, FAILED)],
)  # fmt: skip
def test_resend_before_the_account_is_active_explains(open_session, send_sms, status, reply):
    make_account(open_session, status=status)

    assert reply_of(send_sms("resend")) == reply


def test_phrase_of_an_open_session_enrolls_without_a_reply(open_session, send_sms):
    assert reply_of(send_sms("PYTHON LAB 3")) is None
    assert Account.objects.get().session == open_session
    assert last_outcome() == InboundOutcome.PROVISIONED


def test_phrase_of_a_session_not_yet_open_says_when_it_opens(classroom, send_sms):
    opens = datetime(2099, 3, 5, 19, 30, tzinfo=UTC)
    make_session(
        classroom,
        opens_at=opens,
        closes_at=opens + timedelta(hours=1),
        expires_at=opens + timedelta(hours=3),
        time_zone="America/New_York",
    )

    assert reply_of(send_sms("python lab 3")) == (
        "Enrollment for this class opens Thu Mar 5 14:30 EST. Please text the phrase again then."
    )
    assert last_outcome() == InboundOutcome.NOT_OPEN
    assert Account.objects.count() == 0


def test_phrase_of_a_closed_session_says_enrollment_closed(classroom, send_sms):
    now = timezone.now()
    make_session(classroom, opens_at=now - timedelta(hours=1), closes_at=now - timedelta(minutes=1))

    assert reply_of(send_sms("python lab 3")) == CLOSED
    assert last_outcome() == InboundOutcome.CLOSED
    assert Account.objects.count() == 0


def test_phrase_of_an_ended_session_says_it_ended(classroom, send_sms):
    make_session(classroom, ended_at=timezone.now())

    assert reply_of(send_sms("python lab 3")) == ENDED
    assert last_outcome() == InboundOutcome.CLOSED


def test_a_session_that_ends_while_the_text_is_routed_gets_the_ended_reply(classroom):
    # The text was read while the session was open; by the time enrollment locks the session
    # row it has expired. The student is told, not left in silence.
    now = timezone.now()
    session = make_session(classroom, opens_at=now - timedelta(hours=1),
                           closes_at=now - timedelta(seconds=1), expires_at=now)
    message = inbound.parse(QueryDict(urlencode(twilio_params("python lab 3"))))

    routed = inbound.route(message, now - timedelta(seconds=2))

    assert (routed.outcome, routed.reply, routed.session_id) == (
        InboundOutcome.CLOSED, ENDED, session.pk
    )
    assert Account.objects.count() == 0


def test_phrase_of_an_expired_session_says_it_ended(classroom, send_sms):
    now = timezone.now()
    make_session(
        classroom,
        opens_at=now - timedelta(hours=4),
        closes_at=now - timedelta(hours=3),
        expires_at=now - timedelta(hours=1),
    )

    assert reply_of(send_sms("python lab 3")) == ENDED


def test_phrase_of_a_full_session_says_it_is_full(classroom, send_sms):
    session = make_session(classroom, capacity=1)
    make_account(session, phone="+14155550100")

    assert reply_of(send_sms("python lab 3")) == FULL
    assert last_outcome() == InboundOutcome.FULL
    assert Account.objects.count() == 1


def test_deleted_accounts_free_their_seat(classroom, send_sms):
    session = make_session(classroom, capacity=1)
    make_account(session, phone=None, status=AccountStatus.DELETED)

    assert reply_of(send_sms("python lab 3")) is None
    assert Account.objects.filter(phone=STUDENT_PHONE).exists()


def test_repeat_text_from_an_enrolled_phone_resends_instead_of_a_second_account(
    open_session, send_sms
):
    account = make_account(open_session)

    assert reply_of(send_sms("python lab 3")) is None

    assert Account.objects.count() == 1
    assert last_outcome() == InboundOutcome.RESEND
    account.refresh_from_db()
    assert account.resend_count == 1


def test_repeat_text_over_the_resend_limit_is_refused(open_session, send_sms, settings):
    settings.RESEND_LIMIT_PER_HOUR = 1
    sent_credentials(make_account(open_session), times=2)

    assert reply_of(send_sms("python lab 3")) == RESEND_LIMITED
    assert Account.objects.count() == 1
    assert last_outcome() == InboundOutcome.RESEND_LIMITED


def test_repeat_text_of_a_full_session_from_an_enrolled_phone_is_not_refused(classroom, send_sms):
    session = make_session(classroom, capacity=1)
    make_account(session)

    assert reply_of(send_sms("python lab 3")) is None
    assert last_outcome() == InboundOutcome.RESEND


@pytest.mark.parametrize(
    ("status", "reply"),
    [(AccountStatus.REQUESTED, ON_THE_WAY), (AccountStatus.FAILED, FAILED),
     (AccountStatus.DELETING_USER,
      "Your account for this class is being deleted. Text the phrase again in a few minutes "
      "to get a new one.")],
)  # fmt: skip
def test_repeat_text_before_or_after_the_active_phase_explains(
    open_session, send_sms, status, reply
):
    make_account(open_session, status=status)

    assert reply_of(send_sms("python lab 3")) == reply
    assert Account.objects.count() == 1
    assert last_outcome() == InboundOutcome.DUPLICATE


def session_opening_in(classroom, delay: timedelta) -> Session:
    """A one-hour enrollment window starting `delay` from now (negative: in the past)."""
    opens = timezone.now() + delay
    return make_session(
        classroom,
        opens_at=opens,
        closes_at=opens + timedelta(hours=1),
        expires_at=opens + timedelta(days=1),
    )


def test_open_session_wins_over_others_with_the_same_phrase(classroom, send_sms):
    session_opening_in(classroom, timedelta(days=-7))
    current = make_session(classroom)
    session_opening_in(classroom, timedelta(days=7))

    send_sms("python lab 3")

    assert Account.objects.get().session == current


def test_next_session_to_open_wins_over_a_closed_one(classroom, send_sms):
    session_opening_in(classroom, timedelta(hours=-2))
    session_opening_in(classroom, timedelta(days=9))
    soonest = session_opening_in(classroom, timedelta(days=2))

    reply = reply_of(send_sms("python lab 3"))

    opens = texts.format_expiry(soonest.opens_at, "UTC")
    assert reply == f"Enrollment for this class opens {opens}. Please text the phrase again then."


def test_phrase_pinned_to_another_number_is_not_recognised(classroom, send_sms):
    make_session(classroom, inbound_number="+14155550999")

    assert reply_of(send_sms("python lab 3", To=OUR_NUMBER)) == WRONG_PHRASE
    assert reply_of(send_sms("python lab 3", phone="+14155550100", To="+14155550999")) is None
    assert Account.objects.get().phone == "+14155550100"


def test_phrase_inside_a_longer_message_is_not_recognised(open_session, send_sms):
    assert reply_of(send_sms("hi, python lab 3 please")) == WRONG_PHRASE
    assert Account.objects.count() == 0


def test_unknown_phrase_is_answered_once_per_sender_per_window(db, send_sms, settings):
    assert reply_of(send_sms("pyhton lab 3")) == WRONG_PHRASE
    assert reply_of(send_sms("python lab three")) is None
    assert reply_of(send_sms("lab 3", phone="+14155550100")) == WRONG_PHRASE
    assert last_outcome() == InboundOutcome.WRONG_PHRASE

    age_messages(settings.INBOUND_THROTTLE_MINUTES + 1)
    assert reply_of(send_sms("python lab 3?")) == WRONG_PHRASE


def test_each_refusal_is_answered_once_per_window(classroom, send_sms):
    now = timezone.now()
    make_session(classroom, opens_at=now - timedelta(hours=1), closes_at=now - timedelta(minutes=1))

    assert reply_of(send_sms("nonsense")) == WRONG_PHRASE
    assert reply_of(send_sms("python lab 3")) == CLOSED
    assert reply_of(send_sms("python lab 3")) is None


def test_throttled_sender_gets_silence(open_session, send_sms, settings):
    for _ in range(settings.INBOUND_THROTTLE_COUNT):
        send_sms("help")

    assert reply_of(send_sms("python lab 3")) is None
    assert reply_of(send_sms("nonsense")) is None
    assert last_outcome() == InboundOutcome.THROTTLED
    assert Account.objects.count() == 0

    assert reply_of(send_sms("python lab 3", phone="+14155550100")) is None
    assert Account.objects.get().phone == "+14155550100"


def test_throttle_lifts_after_the_window(open_session, send_sms, settings):
    for _ in range(settings.INBOUND_THROTTLE_COUNT + 1):
        send_sms("help")
    age_messages(settings.INBOUND_THROTTLE_MINUTES + 1)

    send_sms("python lab 3")

    assert last_outcome() == InboundOutcome.PROVISIONED


def test_a_class_of_300_texting_at_once_is_all_served(
    classroom, send_sms, broker, django_capture_on_commit_callbacks
):
    session = make_session(classroom, capacity=300)
    phones = [f"+1415555{n:04d}" for n in range(1000, 1300)]

    with django_capture_on_commit_callbacks(execute=True):
        replies = [reply_of(send_sms("python lab 3", phone=phone)) for phone in phones]

    assert replies == [None] * 300
    assert Account.objects.filter(session=session).count() == 300
    assert set(InboundMessage.objects.values_list("outcome", flat=True)) == {
        InboundOutcome.PROVISIONED
    }
    assert len(queued_tasks(broker)) == 300


@pytest.mark.parametrize(
    "reply",
    [
        texts.WRONG_PHRASE_REPLY,
        texts.NOT_OPEN_REPLY.format(opens="Wed Sep 30 23:59 AKDT"),
        texts.CLOSED_REPLY,
        texts.ENDED_REPLY,
        texts.FULL_REPLY,
        texts.ON_THE_WAY_REPLY,
        texts.FAILED_REPLY,
        texts.BEING_DELETED_REPLY,
        texts.RESEND_LIMITED_REPLY,
        texts.NO_ACCOUNT_REPLY,
        texts.DONE_REPLY,
        texts.NOTHING_TO_DELETE_REPLY,
    ],
)
def test_every_reply_is_one_plain_gsm7_segment(reply):
    assert texts.is_gsm7(reply)
    assert len(reply) <= 160
    assert texts.segments(reply) == 1
