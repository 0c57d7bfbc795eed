"""An enrollment's session lock holds up other enrollments, not the rows that refer to the session.

On PostgreSQL an enrollment locks its session's row until it commits (taken by the seat check
of the webhook's last statement, or by its read when a text is routed again, or by a statement
of its own), so that seats stay exact; a
worker meanwhile inserts SMS rows that refer to the same session, whose foreign key check
takes a key-share lock on it. FOR UPDATE would make those inserts wait for every enrollment of
a class burst; FOR NO KEY UPDATE does not, while enrollments still queue.
"""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction
from django.utils import timezone

from registrations import enrollment, inbound, sql
from registrations.models import OutboundKind, OutboundMessage, OutboundStatus

pytestmark = [
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="row locks need PostgreSQL: SQLite serialises all writers",
    ),
]


def in_another_connection(work) -> tuple[float, list[BaseException]]:
    """Run `work` in a thread of its own (its own connection); return seconds taken, errors."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = '3s'")
            work()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    started = time.monotonic()
    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    return time.monotonic() - started, errors


def sms_row(session) -> None:
    OutboundMessage.objects.create(
        phone="+14155550123",
        kind=OutboundKind.NOTICE,
        body="Your class starts soon.",
        session=session,
        status=OutboundStatus.PENDING,
    )


def sms_rows_go_through_and_enrollments_wait(session) -> None:
    """In a transaction holding the session: another connection's SMS row for it goes through
    at once, while another enrollment's lock on it waits (and times out)."""
    took, errors = in_another_connection(lambda: sms_row(session))
    _, enrolling = in_another_connection(
        lambda: sql.run(enrollment._LOCK, {"session": session.pk})
    )
    assert not errors, errors
    assert took < 2
    assert len(enrolling) == 1 and "lock timeout" in str(enrolling[0])


def phrase_text(session) -> inbound.Message:
    return inbound.Message(
        sid="SM" + "a" * 32,
        phone="+14155550124",
        to_number="+15005550006",
        body=session.phrase,
        text=session.phrase_normalized,
        from_us=False,
    )


def test_a_read_holding_the_session_does_not_hold_up_its_sms_rows(open_session):
    with transaction.atomic():
        sender = inbound.read_sender(phrase_text(open_session), timezone.now(), lock=True)
        assert sender.target is not None and sender.target.session_id == open_session.pk
        sms_rows_go_through_and_enrollments_wait(open_session)


def test_a_held_enrollment_lock_does_not_hold_up_an_sms_row_of_its_session(open_session):
    with transaction.atomic():
        sql.run(enrollment._LOCK, {"session": open_session.pk})
        took, errors = in_another_connection(lambda: sms_row(open_session))

    assert not errors, errors
    assert took < 2
    assert OutboundMessage.objects.filter(session=open_session).count() == 1


def test_a_held_enrollment_lock_still_holds_up_another_enrollment(open_session):
    with transaction.atomic():
        sql.run(enrollment._LOCK, {"session": open_session.pk})
        _, errors = in_another_connection(
            lambda: sql.run(enrollment._LOCK, {"session": open_session.pk})
        )

    assert len(errors) == 1 and "lock timeout" in str(errors[0])


def test_an_enrollments_seat_check_locks_the_session_without_holding_up_its_sms_rows(
    open_session,
):
    with transaction.atomic():
        result = enrollment.enroll(open_session.pk, "+14155550125", confirm_later=True)
        assert result.created and result.unconfirmed is not None
        sql.rows(f"SELECT {enrollment.seat_lost_sql()}", result.unconfirmed)
        sms_rows_go_through_and_enrollments_wait(open_session)
