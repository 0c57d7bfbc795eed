"""Malformed, odd or hostile input gets a clear 4xx or the polite reply, never a 500."""

from __future__ import annotations

import json

import pytest
from django.http import QueryDict

from registrations.inbound import twiml
from registrations.models import Account, InboundMessage, InboundOutcome
from registrations.texts import WRONG_PHRASE_REPLY
from tests.conftest import PUBLIC_BASE_URL, make_session, sign, twilio_params

URL = PUBLIC_BASE_URL + "/twilio/sms/"
EMPTY = twiml(None)
WRONG = twiml(WRONG_PHRASE_REPLY)
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def post_signed(client, twilio_settings, db):
    """Post fields (a dict, or raw form bytes) with a valid signature over what Django parses."""

    def post(data: dict | bytes, content_type: str = FORM, **headers):
        if isinstance(data, bytes):
            fields = QueryDict(data) if content_type.startswith(FORM) else QueryDict()
            return client.post(
                "/twilio/sms/",
                data,
                content_type=content_type,
                HTTP_X_TWILIO_SIGNATURE=sign(URL, fields),
                **headers,
            )
        return client.post("/twilio/sms/", data, HTTP_X_TWILIO_SIGNATURE=sign(URL, data))

    return post


def without(params: dict, *names: str) -> dict:
    return {k: v for k, v in params.items() if k not in names}


def test_missing_message_sid_is_a_bad_request(post_signed):
    params = without(twilio_params("hello"), "MessageSid", "SmsSid", "SmsMessageSid")

    response = post_signed(params)

    assert response.status_code == 400
    assert b"MessageSid" in response.content
    assert InboundMessage.objects.count() == 0


@pytest.mark.parametrize("sid", ["SM" + "a" * 100, "SM<script>", "SM-abc!", " "])
def test_malformed_message_sid_is_a_bad_request(post_signed, sid):
    response = post_signed(twilio_params("hello", sid=sid))

    assert response.status_code == 400
    assert InboundMessage.objects.count() == 0


def test_missing_from_is_recorded_as_invalid_without_a_reply(post_signed, open_session):
    response = post_signed(without(twilio_params("python lab 3"), "From"))

    assert response.content.decode() == EMPTY
    assert InboundMessage.objects.get().outcome == InboundOutcome.INVALID
    assert Account.objects.count() == 0


@pytest.mark.parametrize("sender", ["not-a-phone", "12345", "TWILIO", "+1555", "+" + "9" * 40])
def test_unparseable_sender_is_recorded_as_invalid(post_signed, open_session, sender):
    response = post_signed(twilio_params("python lab 3", phone=sender))

    assert response.status_code == 200
    assert response.content.decode() == EMPTY
    message = InboundMessage.objects.get()
    assert (message.outcome, message.phone) == (InboundOutcome.INVALID, None)
    assert Account.objects.count() == 0


def test_missing_body_gets_the_polite_reply(post_signed):
    response = post_signed(without(twilio_params(""), "Body"))

    assert response.content.decode() == WRONG
    assert InboundMessage.objects.get().outcome == InboundOutcome.WRONG_PHRASE


def test_json_body_is_unsupported(post_signed):
    body = json.dumps(twilio_params("python lab 3")).encode()

    response = post_signed(body, content_type="application/json")

    assert response.status_code == 415
    assert InboundMessage.objects.count() == 0


def test_multipart_body_is_unsupported(post_signed):
    response = post_signed(b"--x\r\nnonsense", content_type="multipart/form-data; boundary=")

    assert response.status_code == 415
    assert InboundMessage.objects.count() == 0


def test_form_body_declared_in_another_charset_is_a_bad_request(post_signed):
    response = post_signed(b"Body=caf%E9", content_type=FORM + "; charset=latin-1")

    assert response.status_code == 400
    assert InboundMessage.objects.count() == 0


def test_body_over_the_upload_limit_is_too_large(client, twilio_settings, db):
    twilio_settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    params = twilio_params("x" * 20_000)

    response = client.post("/twilio/sms/", params, HTTP_X_TWILIO_SIGNATURE=sign(URL, params))

    assert response.status_code == 413
    assert InboundMessage.objects.count() == 0


def test_long_body_is_stored_truncated_and_never_matches(post_signed, open_session):
    response = post_signed(twilio_params("python lab 3" + " " * 2000 + "!"))

    assert response.content.decode() == WRONG
    message = InboundMessage.objects.get()
    assert len(message.body) == 320
    assert Account.objects.count() == 0


def test_non_utf8_bytes_get_the_polite_reply(post_signed):
    params = twilio_params("placeholder")
    raw = QueryDict(mutable=True)
    raw.update({k: v for k, v in params.items() if k != "Body"})
    body = raw.urlencode().encode() + b"&Body=%FF%FEcaf%E9\xff"

    response = post_signed(body)

    assert response.status_code == 200
    assert response.content.decode() == WRONG
    assert InboundMessage.objects.get().outcome == InboundOutcome.WRONG_PHRASE


def test_nul_characters_are_dropped(post_signed):
    response = post_signed(twilio_params("hel\x00lo", To="+1500555\x000006"))

    assert response.status_code == 200
    message = InboundMessage.objects.get()
    assert (message.body, message.to_number) == ("hello", "+15005550006")


def test_emoji_get_the_polite_plain_text_reply(post_signed):
    response = post_signed(twilio_params("🎉🐍 lab?"))

    assert response.content.decode() == WRONG
    assert InboundMessage.objects.get().body == "🎉🐍 lab?"


@pytest.mark.parametrize("to", ["+15551234567", "", "garbage" * 20])
def test_unknown_to_number_is_served_like_any_other(post_signed, classroom, to):
    session = make_session(classroom, phrase="rust lab")

    post_signed(twilio_params("wrong words", To=to))
    response = post_signed(twilio_params("rust lab", To=to))

    assert response.status_code == 200
    assert Account.objects.get().session == session
    assert len(InboundMessage.objects.first().to_number) <= 32


@pytest.mark.parametrize("method", ["get", "put", "delete", "head"])
def test_other_methods_are_not_allowed(client, twilio_settings, db, method):
    response = getattr(client, method)("/twilio/sms/")

    assert response.status_code == 405
