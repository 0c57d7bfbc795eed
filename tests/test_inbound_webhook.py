"""The inbound webhook's happy path: a student texts the phrase and an account is requested."""

from __future__ import annotations

import threading

import pytest
import responses
from django.db import connection

from registrations.inbound import twiml
from registrations.models import Account, AccountStatus, InboundMessage, InboundOutcome
from tests.conftest import (
    PUBLIC_BASE_URL,
    STUDENT_PHONE,
    TwilioFormClient,
    make_session,
    queued_tasks,
    sign,
    twilio_params,
)

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
# The test database on SQLite is in memory with a shared cache, whose table locks fail at once
# instead of waiting; production's file database waits (busy timeout, IMMEDIATE transactions).
# CI runs these on PostgreSQL.
concurrent_writers = pytest.mark.skipif(
    connection.vendor == "sqlite", reason="in-memory SQLite cannot take concurrent writers"
)


def test_valid_phrase_requests_one_account_and_queues_provisioning(
    open_session, send_sms, broker, django_capture_on_commit_callbacks
):
    # Any HTTP request (Coder, Twilio REST) would fail here: the webhook only records and queues.
    with responses.RequestsMock() as http, django_capture_on_commit_callbacks(execute=True):
        response = send_sms("Python  Lab 3!", sid="SM" + "a" * 32)

    assert len(http.calls) == 0
    assert response.status_code == 200
    assert response["Content-Type"] == "text/xml"
    assert response.content.decode() == EMPTY_TWIML
    account = Account.objects.get()
    assert (account.session, account.phone, account.status) == (
        open_session,
        STUDENT_PHONE,
        AccountStatus.REQUESTED,
    )
    assert account.expires_at == open_session.expires_at
    tasks = queued_tasks(broker)
    assert [(t["func"], t["args"]) for t in tasks] == [
        ("registrations.tasks.provision_account", (account.pk,))
    ]
    message = InboundMessage.objects.get()
    assert (message.message_sid, message.outcome) == ("SM" + "a" * 32, InboundOutcome.PROVISIONED)
    assert (message.session, message.account, message.phone) == (
        open_session,
        account,
        STUDENT_PHONE,
    )
    assert message.body == "Python  Lab 3!"


def test_nothing_is_queued_before_the_transaction_commits(open_session, send_sms, broker):
    # Without executing on_commit callbacks, the worker must not see the account yet.
    send_sms("python lab 3")

    assert Account.objects.count() == 1
    assert broker.queue_size() == 0


def test_duplicate_message_sid_creates_one_account(
    open_session, send_sms, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        first = send_sms("python lab 3", sid="SM" + "b" * 32)
        second = send_sms("python lab 3", sid="SM" + "b" * 32)

    assert first.content == second.content == EMPTY_TWIML.encode()
    assert Account.objects.count() == 1
    assert InboundMessage.objects.count() == 1
    assert broker.queue_size() == 1


def test_duplicate_delivery_of_a_replied_message_gets_an_empty_answer(open_session, send_sms):
    first = send_sms("no such phrase", sid="SM" + "c" * 32)
    second = send_sms("no such phrase", sid="SM" + "c" * 32)

    assert b"<Message>" in first.content
    assert second.content == EMPTY_TWIML.encode()
    assert InboundMessage.objects.get().outcome == InboundOutcome.WRONG_PHRASE


def _post_concurrently(bodies: list[dict]) -> list[int]:
    """Post signed webhooks from parallel threads, released together; return the status codes."""
    url = PUBLIC_BASE_URL + "/twilio/sms/"
    barrier = threading.Barrier(len(bodies))
    statuses: list[int] = []

    def post(params: dict) -> None:
        try:
            barrier.wait()
            response = TwilioFormClient().post(
                "/twilio/sms/", params, HTTP_X_TWILIO_SIGNATURE=sign(url, params)
            )
            statuses.append(response.status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=post, args=(params,)) for params in bodies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return statuses


@concurrent_writers
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_duplicate_deliveries_create_one_account(classroom, twilio_settings, broker):
    make_session(classroom)
    params = twilio_params("python lab 3", sid="SM" + "d" * 32)

    statuses = _post_concurrently([params] * 4)

    assert statuses == [200] * 4
    assert Account.objects.count() == 1
    assert InboundMessage.objects.count() == 1
    assert broker.queue_size() == 1


@concurrent_writers
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_texts_for_the_last_seat_enroll_one_phone(classroom, twilio_settings, broker):
    session = make_session(classroom, capacity=1)
    phones = ["+14155550101", "+14155550102", "+14155550103"]

    statuses = _post_concurrently([twilio_params("python lab 3", phone) for phone in phones])

    assert statuses == [200] * 3
    assert Account.objects.filter(session=session).count() == 1
    outcomes = sorted(InboundMessage.objects.values_list("outcome", flat=True))
    assert outcomes == [InboundOutcome.FULL, InboundOutcome.FULL, InboundOutcome.PROVISIONED]


@concurrent_writers
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_texts_from_one_phone_create_one_account(classroom, twilio_settings, broker):
    # Distinct MessageSids (the student pressed send twice): both read "no account yet".
    make_session(classroom)

    statuses = _post_concurrently([twilio_params("python lab 3") for _ in range(4)])

    assert statuses == [200] * 4
    assert Account.objects.count() == 1
    outcomes = sorted(InboundMessage.objects.values_list("outcome", flat=True))
    assert outcomes == [InboundOutcome.DUPLICATE] * 3 + [InboundOutcome.PROVISIONED]
    assert broker.queue_size() == 1


@concurrent_writers
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_concurrent_texts_never_take_more_seats_than_there_are(
    classroom, twilio_settings, broker
):
    session = make_session(classroom, capacity=3)
    phones = [f"+1415555{n:04d}" for n in range(8)]

    statuses = _post_concurrently([twilio_params("python lab 3", phone) for phone in phones])

    assert statuses == [200] * 8
    assert Account.objects.filter(session=session).count() == 3
    outcomes = sorted(InboundMessage.objects.values_list("outcome", flat=True))
    assert outcomes == [InboundOutcome.FULL] * 5 + [InboundOutcome.PROVISIONED] * 3


def test_logs_mask_the_phone_and_omit_the_body(open_session, send_sms, caplog):
    caplog.set_level("INFO")

    send_sms("python lab 3")
    send_sms("secret words here")

    assert "registrations.inbound" in {record.name for record in caplog.records}
    assert STUDENT_PHONE not in caplog.text
    assert "python lab 3" not in caplog.text
    assert "secret words" not in caplog.text


def test_twiml_escapes_the_reply():
    assert twiml('Fish & "chips" <now>') == (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Response><Message>Fish &amp; "chips" &lt;now&gt;</Message></Response>'
    )
    assert twiml(None) == twiml("") == EMPTY_TWIML
