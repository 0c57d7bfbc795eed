"""Sending SMS: save the row, call Twilio with the exact form body, record sid/status/errors."""

from __future__ import annotations

import json
from datetime import timedelta
from urllib.parse import parse_qs

import pytest
import requests
import responses
from django.utils import timezone

from registrations import provisioning, sms, sms_transport
from registrations.models import (
    Account,
    OptOut,
    OutboundKind,
    OutboundMessage,
    OutboundStatus,
)
from tests.conftest import (
    OUR_NUMBER,
    PUBLIC_BASE_URL,
    STUDENT_PHONE,
    TWILIO_SID,
    TWILIO_TOKEN,
    sign,
)
from tests.student import logs_in

MESSAGES_URL = f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
SID = "SM" + "a" * 32


@pytest.fixture
def twilio(twilio_settings):
    twilio_settings.TWILIO_API_BASE_URL = ""
    with responses.RequestsMock() as mock:
        yield mock


def accept(mock, status: str = "queued", sid: str = SID) -> None:
    mock.post(MESSAGES_URL, status=201, json={"sid": sid, "status": status, "to": STUDENT_PHONE})


def reject(mock, http_status: int, code: int, message: str = "Error") -> None:
    mock.post(
        MESSAGES_URL,
        status=http_status,
        json={"code": code, "message": message, "status": http_status},
    )


def form(call) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(call.request.body).items()}


def queued(body: str = "Hello class", kind: str = OutboundKind.NOTICE, **fields) -> OutboundMessage:
    return OutboundMessage.objects.create(phone=STUDENT_PHONE, kind=kind, body=body, **fields)


def test_queue_sms_saves_the_row_and_the_task_sends_it(
    twilio, db, sync_tasks, django_capture_on_commit_callbacks
):
    accept(twilio)
    with django_capture_on_commit_callbacks(execute=True):
        message = sms.queue_sms(phone=STUDENT_PHONE, kind=OutboundKind.NOTICE, body="Hello class")
    assert form(twilio.calls[0]) == {
        "To": STUDENT_PHONE,
        "From": OUR_NUMBER,
        "Body": "Hello class",
        "StatusCallback": f"{PUBLIC_BASE_URL}/twilio/status/?m={message.public_id}",
    }
    message.refresh_from_db()
    assert (message.status, message.twilio_sid, message.attempts) == ("queued", SID, 1)
    assert message.sent_at is not None


def test_nothing_is_sent_before_the_transaction_commits(twilio, db, sync_tasks):
    message = sms.queue_sms(phone=STUDENT_PHONE, kind=OutboundKind.NOTICE, body="Hi")
    assert message.status == OutboundStatus.PENDING
    assert len(twilio.calls) == 0


def test_messaging_service_is_used_instead_of_a_from_number(twilio, db, settings):
    settings.TWILIO_MESSAGING_SERVICE_SID = "MG" + "3" * 32
    accept(twilio, status="accepted")
    message = queued()
    sms.deliver(message.pk)
    sent = form(twilio.calls[0])
    assert sent["MessagingServiceSid"] == "MG" + "3" * 32 and "From" not in sent
    message.refresh_from_db()
    assert message.status == OutboundStatus.ACCEPTED


def test_no_status_callback_without_a_public_base_url(twilio, db, settings):
    settings.PUBLIC_BASE_URL = ""
    accept(twilio)
    sms.deliver(queued().pk)
    assert "StatusCallback" not in form(twilio.calls[0])


def test_password_is_sent_but_stored_masked(twilio, open_session):
    account = Account.objects.create(
        session=open_session, phone=STUDENT_PHONE, expires_at=open_session.expires_at
    )
    accept(twilio)
    delivery = sms.send_with_secret(
        account=account,
        kind=OutboundKind.CREDENTIALS,
        body="Password: k7pw-m3rt-q9zx",
        secret="k7pw-m3rt-q9zx",
    )
    assert delivery.sent
    assert form(twilio.calls[0])["Body"] == "Password: k7pw-m3rt-q9zx"
    stored = OutboundMessage.objects.get()
    assert stored.body == "Password: ••••••"
    assert (stored.kind, stored.session, stored.account) == ("credentials", open_session, account)


def test_a_duplicate_task_delivery_sends_once(twilio, db):
    accept(twilio)
    message = queued()
    sms.deliver(message.pk)
    sms.deliver(message.pk)
    assert len(twilio.calls) == 1


def test_21610_records_the_opt_out_and_stops(twilio, db):
    reject(twilio, 400, 21610, "Attempt to send to unsubscribed recipient")
    message = queued()
    sms.deliver(message.pk)
    message.refresh_from_db()
    assert (message.status, message.error_code) == (OutboundStatus.OPTED_OUT, 21610)
    assert message.next_attempt_at is None
    assert OptOut.objects.filter(phone=STUDENT_PHONE).exists()
    assert sms.redrive_stale(timezone.now() + timedelta(hours=1)) == 0


@pytest.mark.parametrize("code", [21211, 21614])
def test_bad_number_fails_permanently(twilio, db, code):
    reject(twilio, 400, code, f"The 'To' number {STUDENT_PHONE} is not a valid phone number.")
    message = queued()
    sms.deliver(message.pk)
    message.refresh_from_db()
    assert (message.status, message.error_code, message.next_attempt_at) == ("failed", code, None)
    assert STUDENT_PHONE not in message.error_message
    assert sms.redrive_stale(timezone.now() + timedelta(hours=1)) == 0


@pytest.mark.parametrize(("http_status", "code"), [(429, 20429), (500, 20500), (503, 20503)])
def test_throttling_and_server_errors_are_retried_by_the_sweep(
    twilio, db, sync_tasks, django_capture_on_commit_callbacks, http_status, code
):
    reject(twilio, http_status, code)
    message = queued()
    sms.deliver(message.pk)
    message.refresh_from_db()
    assert (message.status, message.error_code) == (OutboundStatus.RETRY, code)
    assert message.next_attempt_at > timezone.now() + timedelta(seconds=25)
    assert sms.redrive_stale(timezone.now()) == 0  # not due yet

    accept(twilio)
    with django_capture_on_commit_callbacks(execute=True):
        assert sms.redrive_stale(message.next_attempt_at) == 1
    message.refresh_from_db()
    assert (message.status, message.attempts, message.error_code) == ("queued", 2, None)
    assert len(twilio.calls) == 2


def test_network_errors_are_retried(twilio, db):
    twilio.post(MESSAGES_URL, body=requests.ConnectionError("connection refused"))
    message = queued()
    sms.deliver(message.pk)
    message.refresh_from_db()
    assert message.status == OutboundStatus.RETRY
    assert "ConnectionError" in message.error_message


def test_retries_are_bounded(twilio, db):
    reject(twilio, 500, 20500)
    message = queued()
    for _ in range(sms.MAX_ATTEMPTS):
        OutboundMessage.objects.filter(pk=message.pk).update(status=OutboundStatus.RETRY)
        sms.deliver(message.pk)
    message.refresh_from_db()
    assert message.status == OutboundStatus.FAILED
    assert message.error_message.startswith(f"Gave up after {sms.MAX_ATTEMPTS} attempts")
    assert len(twilio.calls) == sms.MAX_ATTEMPTS


def test_a_password_message_is_never_retried_from_its_masked_row(twilio, open_session):
    account = Account.objects.create(
        session=open_session, phone=STUDENT_PHONE, expires_at=open_session.expires_at
    )
    reject(twilio, 503, 20503)
    delivery = sms.send_with_secret(
        account=account, kind=OutboundKind.CREDENTIALS, body="pw abcd", secret="abcd"
    )
    assert delivery.transient and not delivery.sent
    assert delivery.message.status == OutboundStatus.FAILED
    assert sms.redrive_stale(timezone.now() + timedelta(hours=1)) == 0
    sms.deliver(delivery.message.pk)
    assert len(twilio.calls) == 1


def test_an_opted_out_phone_is_never_sent_to(
    twilio, db, sync_tasks, django_capture_on_commit_callbacks
):
    OptOut.objects.create(phone=STUDENT_PHONE)
    with django_capture_on_commit_callbacks(execute=True):
        message = sms.queue_sms(phone=STUDENT_PHONE, kind=OutboundKind.NOTICE, body="Hi")
    assert message.status == OutboundStatus.OPTED_OUT
    sms.deliver(message.pk)
    assert len(twilio.calls) == 0


def test_an_opt_out_arriving_after_queueing_stops_the_send(twilio, db):
    message = queued()
    OptOut.objects.create(phone=STUDENT_PHONE)
    sms.deliver(message.pk)
    message.refresh_from_db()
    assert message.status == OutboundStatus.OPTED_OUT
    assert len(twilio.calls) == 0


def test_credentials_cannot_be_queued_as_plain_messages(db):
    with pytest.raises(ValueError):
        sms.queue_sms(phone=STUDENT_PHONE, kind=OutboundKind.CREDENTIALS, body="pw")


def test_lost_and_stuck_messages_are_redriven(
    twilio, db, sync_tasks, django_capture_on_commit_callbacks
):
    accept(twilio, sid="SM" + "b" * 32)
    accept(twilio, sid="SM" + "c" * 32)
    long_ago = timezone.now() - timedelta(minutes=10)
    lost = queued(created_at=long_ago)
    stuck = queued(status=OutboundStatus.SENDING)
    OutboundMessage.objects.filter(pk=stuck.pk).update(updated_at=long_ago)
    fresh = queued()
    with django_capture_on_commit_callbacks(execute=True):
        assert sms.redrive_stale(timezone.now()) == 2
    statuses = dict(OutboundMessage.objects.values_list("pk", "status"))
    assert statuses == {lost.pk: "queued", stuck.pk: "queued", fresh.pk: "pending"}
    # The lease stops the next sweep from enqueueing them again.
    assert sms.redrive_stale(timezone.now()) == 0


def test_client_has_a_timeout_and_can_point_at_a_fake_server(twilio, db, settings):
    settings.TWILIO_TIMEOUT = 2.5
    settings.TWILIO_API_BASE_URL = "http://twilio.fake:7090"
    twilio.post(
        f"http://twilio.fake:7090/2010-04-01/Accounts/{TWILIO_SID}/Messages.json",
        status=201,
        json={"sid": SID, "status": "queued"},
    )
    client = sms_transport.get_client()
    assert client.http_client.timeout == 2.5
    assert sms_transport.get_client() is client  # cached per process
    sms.deliver(queued().pk)
    assert twilio.calls[0].request.url.startswith("http://twilio.fake:7090/")


def test_segments_are_counted_like_twilio():
    assert sms.segments("a" * 160) == 1
    assert sms.segments("a" * 161) == 2


def test_a_status_callback_arriving_before_twilios_answer_is_not_overwritten(twilio, db, client):
    message = queued()

    def twilio_answers_late(request):
        # Twilio's "sent" callback reaches us while our create call is still waiting.
        params = {"MessageSid": SID, "MessageStatus": "sent"}
        path = f"/twilio/status/?m={message.public_id}"
        signature = sign(PUBLIC_BASE_URL + path, params)
        client.post(path, params, HTTP_X_TWILIO_SIGNATURE=signature)
        return 201, {}, json.dumps({"sid": SID, "status": "queued"})

    twilio.add_callback("POST", MESSAGES_URL, callback=twilio_answers_late)
    sms.deliver(message.pk)
    message.refresh_from_db()
    assert (message.status, message.twilio_sid) == (OutboundStatus.SENT, SID)


@pytest.mark.parametrize("http_status", [401, 403])
def test_rejected_credentials_hold_the_message_without_using_attempts(twilio, db, http_status):
    reject(twilio, http_status, 20003, "Authenticate")
    message = queued()
    for _ in range(sms.MAX_ATTEMPTS + 2):
        OutboundMessage.objects.filter(pk=message.pk).update(status=OutboundStatus.RETRY)
        sms.deliver(message.pk)
    message.refresh_from_db()
    assert (message.status, message.error_code, message.attempts) == ("retry", 20003, 0)
    assert "check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN" in message.error_message
    assert len(twilio.calls) == sms.MAX_ATTEMPTS + 2


def test_a_held_message_is_delivered_once_the_credentials_work(
    fake_twilio, settings, db, sync_tasks, django_capture_on_commit_callbacks
):
    settings.TWILIO_AUTH_TOKEN = "not-the-token"
    message = queued()
    sms.deliver(message.pk)
    message.refresh_from_db()
    assert (message.status, message.error_code) == (OutboundStatus.RETRY, 20003)
    assert timedelta(seconds=55) < message.next_attempt_at - timezone.now() < timedelta(minutes=2)
    assert fake_twilio.messages == []

    settings.TWILIO_AUTH_TOKEN = TWILIO_TOKEN
    with django_capture_on_commit_callbacks(execute=True):
        assert sms.redrive_stale(message.next_attempt_at) == 1
    message.refresh_from_db()
    assert (message.status, message.error_code, message.attempts) == ("queued", None, 1)
    assert [m["body"] for m in fake_twilio.messages_to(STUDENT_PHONE)] == ["Hello class"]


def test_a_password_message_refused_for_credentials_is_canceled_not_failed(twilio, open_session):
    account = Account.objects.create(
        session=open_session, phone=STUDENT_PHONE, expires_at=open_session.expires_at
    )
    reject(twilio, 401, 20003, "Authenticate")
    delivery = sms.send_with_secret(
        account=account, kind=OutboundKind.CREDENTIALS, body="pw abcd", secret="abcd"
    )
    assert delivery.held and not delivery.sent
    assert (delivery.message.status, delivery.message.error_code) == ("canceled", 20003)
    # The row's password is masked: a new password is sent instead, never this row.
    assert sms.redrive_stale(timezone.now() + timedelta(hours=1)) == 0


def test_credentials_wait_for_twilio_and_a_new_password_follows(
    open_session, fake_coder, fake_twilio, settings
):
    settings.TWILIO_AUTH_TOKEN = "not-the-token"
    account = Account.objects.create(
        session=open_session, phone=STUDENT_PHONE, expires_at=open_session.expires_at
    )
    provisioning.provision(account.pk)
    account.refresh_from_db()
    assert (account.status, account.credentials_sent_at, account.attempts) == ("active", None, 1)
    assert account.next_attempt_at - timezone.now() < timedelta(minutes=2)
    assert "a new password will follow" in account.last_error

    # An hour of wrong credentials, retried every minute: resend's 30-minute give-up never ends
    # the wait, and no attempt is used up.
    an_hour_ago = timezone.now() - timedelta(hours=1)
    Account.objects.filter(pk=account.pk).update(
        provisioned_at=an_hour_ago, next_attempt_at=timezone.now()
    )
    provisioning.resend(account.pk)
    account.refresh_from_db()
    assert (account.status, account.credentials_sent_at, account.attempts) == ("active", None, 1)
    assert account.next_attempt_at is not None

    settings.TWILIO_AUTH_TOKEN = TWILIO_TOKEN
    Account.objects.filter(pk=account.pk).update(next_attempt_at=timezone.now())
    provisioning.resend(account.pk)
    account.refresh_from_db()
    assert account.credentials_sent_at is not None and account.next_attempt_at is None
    password = fake_coder.requests("PUT", "/api/v2/users/")[-1].body["password"]
    [sent] = fake_twilio.messages_to(STUDENT_PHONE)
    assert password in sent["body"]
    assert logs_in(fake_coder.url, sent["body"])
    statuses = list(
        OutboundMessage.objects.filter(account=account)
        .order_by("pk")
        .values_list("status", flat=True)
    )
    assert statuses == ["canceled", "canceled", "queued"]
