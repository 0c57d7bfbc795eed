"""An enrollment takes the session's lock late, and checks its seat once it holds it.

On PostgreSQL the webhook reads and inserts the account without locking, so the insert's
count of seats may miss an enrollment that commits meanwhile. The webhook's last statement
(its log row) takes the session's lock and then reads back whether the seat is really there
(enrollment.seat_lost_sql()); when it is not, everything rolls back and the text is routed
again, the session held from the read on. These tests make the race happen on purpose:
another transaction holds the lock while it takes the last seat (or ends the session), and
commits while the text waits for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from django.db import connection, transaction
from django.utils import timezone

from registrations import enrollment, sql
from registrations.models import Account, InboundMessage, InboundOutcome, Session
from registrations.texts import ENDED_REPLY, FULL_REPLY
from tests.conftest import (
    PUBLIC_BASE_URL,
    TwilioFormClient,
    make_session,
    queued_tasks,
    sign,
    twilio_params,
)

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="row locks need PostgreSQL: SQLite serialises all writers",
    ),
]

PHONE = "+14155550177"


def waiting_for_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return int(cursor.fetchone()[0])


def text_while_another_holds_the_session(work: Callable[[], None]) -> str:
    """Run `work` in a transaction of another connection; text the phrase while it is open
    and let it commit once the text waits for the session's lock. Returns the reply."""
    holding, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def other() -> None:
        try:
            with transaction.atomic():
                work()
                holding.set()
                assert release.wait(timeout=30)
        except BaseException as exc:
            errors.append(exc)
            holding.set()
        finally:
            connection.close()

    replies: list[str] = []

    def text() -> None:
        try:
            params = twilio_params("python lab 3", PHONE)
            url = PUBLIC_BASE_URL + "/twilio/sms/"
            response = TwilioFormClient().post(
                "/twilio/sms/", params, HTTP_X_TWILIO_SIGNATURE=sign(url, params)
            )
            assert response.status_code == 200
            replies.append(response.content.decode())
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    holder = threading.Thread(target=other)
    holder.start()
    assert holding.wait(timeout=30)
    texter = threading.Thread(target=text)
    texter.start()
    deadline = time.monotonic() + 20
    try:
        while not (waiting := waiting_for_a_lock()) and time.monotonic() < deadline:
            if errors or not texter.is_alive():
                break
            time.sleep(0.02)
    finally:
        release.set()
        holder.join(timeout=30)
        texter.join(timeout=30)
    assert not errors, errors
    assert waiting == 1, "the text never waited for the session's lock"
    return replies[0]


def enroll_as_the_webhook_does(session: Session, phone: str) -> None:
    """Another student's enrollment, up to the webhook's last statement (which locks)."""
    result = enrollment.enroll(session.pk, phone, confirm_later=True)
    assert result.created and result.unconfirmed is not None
    ((lost,),) = sql.rows(f"SELECT {enrollment.seat_lost_sql()}", result.unconfirmed)
    enrollment.check_seat(lost)


def test_a_text_that_loses_the_last_seat_meanwhile_is_told_the_class_is_full(
    classroom, twilio_settings, broker
):
    session = make_session(classroom, capacity=1)

    def take_the_last_seat() -> None:
        enroll_as_the_webhook_does(session, "+14155550100")

    reply = text_while_another_holds_the_session(take_the_last_seat)

    assert str(FULL_REPLY) in reply
    (winner,) = Account.objects.all()
    assert winner.phone == "+14155550100"
    assert InboundMessage.objects.get(phone=PHONE).outcome == InboundOutcome.FULL
    # Only the winner is provisioned: the loser's enrollment rolled back with its task.
    provisions = [
        t["args"] for t in queued_tasks(broker) if t["func"].endswith("provision_account")
    ]
    assert provisions == [(winner.pk,)]


def test_a_text_whose_session_ends_meanwhile_is_told_it_ended(classroom, twilio_settings):
    session = make_session(classroom)

    def end_the_session() -> None:
        # What "end now" does to the row, under the same lock an enrollment takes.
        Session.objects.filter(pk=session.pk).update(ended_at=timezone.now())

    reply = text_while_another_holds_the_session(end_the_session)

    assert str(ENDED_REPLY) in reply
    assert Account.objects.count() == 0
    assert InboundMessage.objects.get(phone=PHONE).outcome == InboundOutcome.CLOSED


def test_a_text_with_a_seat_to_spare_is_enrolled_after_waiting(classroom, twilio_settings):
    session = make_session(classroom, capacity=2)

    def take_a_seat() -> None:
        enroll_as_the_webhook_does(session, "+14155550100")

    reply = text_while_another_holds_the_session(take_a_seat)

    assert "<Message>" not in reply
    assert Account.objects.filter(session=session).count() == 2
    assert InboundMessage.objects.get(phone=PHONE).outcome == InboundOutcome.PROVISIONED


def test_a_database_without_the_seat_check_still_serves_the_text(
    classroom, twilio_settings, caplog
):
    """Code deployed before `migrate` ran: slower (routed again, holding the session), served."""
    session = make_session(classroom)
    with connection.cursor() as cursor:
        cursor.execute(f"DROP FUNCTION {enrollment.SEAT_CHECK_FUNCTION}(bigint, timestamptz)")
    try:
        params = twilio_params("python lab 3", PHONE)
        url = PUBLIC_BASE_URL + "/twilio/sms/"
        response = TwilioFormClient().post(
            "/twilio/sms/", params, HTTP_X_TWILIO_SIGNATURE=sign(url, params)
        )
    finally:
        enrollment.install_seat_check()

    assert response.status_code == 200
    assert Account.objects.get(session=session).phone == PHONE
    assert InboundMessage.objects.get(phone=PHONE).outcome == InboundOutcome.PROVISIONED
    assert "run `manage.py migrate`" in caplog.text


def test_migrate_installs_the_seat_check_and_reinstalling_is_harmless():
    enrollment.install_seat_check()
    enrollment.install_seat_check()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM pg_proc WHERE proname = %s", [enrollment.SEAT_CHECK_FUNCTION]
        )
        assert cursor.fetchone()[0] == 1
