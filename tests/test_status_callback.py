"""Twilio's status callback: signed posts update delivery status; anything else changes nothing."""

from __future__ import annotations

import uuid

import pytest

from registrations.models import OptOut, OutboundKind, OutboundMessage, OutboundStatus
from tests.conftest import PUBLIC_BASE_URL, STUDENT_PHONE, TWILIO_SID, sign

SID = "SM" + "d" * 32


@pytest.fixture
def message(db) -> OutboundMessage:
    return OutboundMessage.objects.create(
        phone=STUDENT_PHONE,
        kind=OutboundKind.NOTICE,
        body="Hi",
        status=OutboundStatus.QUEUED,
        twilio_sid=SID,
    )


@pytest.fixture
def callback(client, twilio_settings):
    def post(public_id: object, status: str, signed: bool = True, **extra: str):
        params = {
            "MessageSid": SID,
            "SmsSid": SID,
            "MessageStatus": status,
            "SmsStatus": status,
            "AccountSid": TWILIO_SID,
            "To": STUDENT_PHONE,
            **extra,
        }
        path = f"/twilio/status/?m={public_id}"
        headers = (
            {"HTTP_X_TWILIO_SIGNATURE": sign(PUBLIC_BASE_URL + path, params)} if signed else {}
        )
        return client.post(path, params, **headers)

    return post


def test_signed_callback_records_the_status(callback, message):
    assert callback(message.public_id, "delivered").status_code == 200
    message.refresh_from_db()
    assert message.status == OutboundStatus.DELIVERED


def test_undelivered_callback_records_the_error_code(callback, message):
    callback(message.public_id, "undelivered", ErrorCode="30003")
    message.refresh_from_db()
    assert (message.status, message.error_code) == (OutboundStatus.UNDELIVERED, 30003)


def test_a_late_sent_callback_does_not_undo_delivered(callback, message):
    callback(message.public_id, "delivered")
    callback(message.public_id, "sent")
    message.refresh_from_db()
    assert message.status == OutboundStatus.DELIVERED


def test_opt_out_reported_by_callback_is_recorded(callback, message):
    callback(message.public_id, "failed", ErrorCode="21610")
    assert OptOut.objects.filter(phone=STUDENT_PHONE).exists()


def test_unsigned_callback_is_forbidden(callback, message):
    assert callback(message.public_id, "delivered", signed=False).status_code == 403
    message.refresh_from_db()
    assert message.status == OutboundStatus.QUEUED


def test_badly_signed_callback_is_forbidden(client, twilio_settings, message):
    path = f"/twilio/status/?m={message.public_id}"
    response = client.post(path, {"MessageStatus": "delivered"}, HTTP_X_TWILIO_SIGNATURE="bad")
    assert response.status_code == 403


@pytest.mark.parametrize("public_id", [uuid.uuid4(), "not-a-uuid", ""])
def test_unknown_or_junk_id_is_answered_200_and_changes_nothing(callback, message, public_id):
    assert callback(public_id, "delivered").status_code == 200
    message.refresh_from_db()
    assert message.status == OutboundStatus.QUEUED


def test_junk_status_changes_nothing(callback, message):
    assert callback(message.public_id, "exploded").status_code == 200
    message.refresh_from_db()
    assert message.status == OutboundStatus.QUEUED


def test_callback_for_another_message_sid_is_ignored(callback, message):
    callback(message.public_id, "delivered", MessageSid="SM" + "e" * 32)
    message.refresh_from_db()
    assert message.status == OutboundStatus.QUEUED


def test_twilios_sending_status_is_not_confused_with_ours(callback, message):
    callback(message.public_id, "sending")
    message.refresh_from_db()
    assert message.status == OutboundStatus.QUEUED


def test_a_callback_that_beats_twilios_answer_is_kept(callback, message):
    OutboundMessage.objects.filter(pk=message.pk).update(
        status=OutboundStatus.SENDING, twilio_sid=None
    )
    callback(message.public_id, "sent")
    message.refresh_from_db()
    assert (message.status, message.twilio_sid) == (OutboundStatus.SENT, SID)
