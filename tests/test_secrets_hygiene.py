"""Secrets hygiene: after a real enrollment and a resend, with every log at DEBUG, no password is
anywhere (logs, task packages and results, schedules, any table), and no full phone number or
message body is in the logs or the task records."""

from __future__ import annotations

import logging
import re

import pytest
from django.db import connection
from django_q.conf import Conf
from django_q.models import Schedule, Task
from django_q.signing import SignedPackage
from django_q.tasks import _sync

from registrations.models import Account, AccountStatus, OutboundMessage
from tests.conftest import STUDENT_PHONE
from tests.student import log_in

pytestmark = pytest.mark.django_db

ENROLL_BODY = "Python Lab 3!"
REPEAT_BODY = "PYTHON lab 3."
PHONE_FORMS = (STUDENT_PHONE, STUDENT_PHONE[1:], STUDENT_PHONE[2:], "(415) 555-0123", "555-0123")
PASSWORD = re.compile(r"Password: (\S+)")


def run_queued(broker, capture, monkeypatch) -> list[dict]:
    """Run what the webhook queued through django-q2's worker; return the packages at rest."""
    packages = []
    for _ in range(20):
        batch = broker.dequeue() if broker.queue_size() else None
        if not batch:
            return packages
        for task_id, payload in batch:
            packages.append(SignedPackage.loads(payload))
            with monkeypatch.context() as patch, capture(execute=True):
                # Sync mode keeps the worker off the test's database connection.
                patch.setattr(Conf, "SYNC", True)
                _sync(payload)
            broker.acknowledge(task_id)
    raise AssertionError("tasks kept queueing tasks")


def every_logger_at_debug(caplog) -> None:
    """Lower the root logger and every named one (twilio, django, django-q...) to DEBUG."""
    caplog.set_level(logging.DEBUG)
    for name in list(logging.root.manager.loggerDict):
        caplog.set_level(logging.DEBUG, logger=name)


def log_text(caplog) -> str:
    """Everything our code and our libraries logged (not the fake servers' own chatter)."""
    lines = []
    for record in caplog.records:
        if record.name.startswith("tests."):
            continue
        lines.append(f"{record.name} {record.getMessage()} {record.exc_text or ''}")
    return "\n".join(lines)


def table_dump() -> str:
    """Every row of every table, as text."""
    rows = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            rows += [f"{table}: {row!r}" for row in cursor.fetchall()]
    return "\n".join(rows)


def task_records(packages: list[dict]) -> str:
    """Arguments, results and names of every task queued, run or scheduled, decoded."""
    records = [repr(package) for package in packages]
    records += [repr((t.name, t.func, t.args, t.kwargs, t.result, t.group)) for t in
                Task.objects.all()]
    records += [repr((s.name, s.func, s.args, s.kwargs)) for s in Schedule.objects.all()]
    return "\n".join(records)


@pytest.fixture
def enrolled_and_resent(open_session, send_sms, fake_coder, fake_twilio, broker, caplog,
                        monkeypatch, django_capture_on_commit_callbacks):
    """Text the phrase, let the worker provision; text it again, let it send a new password."""
    every_logger_at_debug(caplog)
    packages = []
    for body in (ENROLL_BODY, REPEAT_BODY):
        with django_capture_on_commit_callbacks(execute=True):
            assert send_sms(body).status_code == 200
        packages += run_queued(broker, django_capture_on_commit_callbacks, monkeypatch)
    sms = [m["body"] for m in fake_twilio.messages_to(STUDENT_PHONE)]
    passwords = [PASSWORD.search(body)[1] for body in sms]
    return passwords, sms, packages


def test_the_flow_really_ran(enrolled_and_resent, fake_coder):
    passwords, sms, packages = enrolled_and_resent
    account = Account.objects.get()

    assert account.status == AccountStatus.ACTIVE
    assert len(set(passwords)) == 2
    assert log_in(fake_coder.url, account.coder_email, passwords[1]).status_code == 201
    assert [p["func"] for p in packages] == [
        "registrations.tasks.provision_account", "registrations.tasks.resend_credentials"
    ]
    assert Task.objects.filter(success=True).count() == 2


def test_no_password_anywhere(enrolled_and_resent, caplog):
    passwords, _, packages = enrolled_and_resent
    places = {"logs": log_text(caplog), "tasks": task_records(packages), "tables": table_dump()}

    for password in passwords:
        for place, text in places.items():
            assert password not in text, place
    stored = list(OutboundMessage.objects.values_list("body", flat=True))
    assert len(stored) == 2 and all("••••••" in body for body in stored)


def test_no_phone_number_or_message_body_in_logs_or_task_records(enrolled_and_resent, caplog):
    _, sms, packages = enrolled_and_resent
    places = {"logs": log_text(caplog), "tasks": task_records(packages)}

    for secret in (*PHONE_FORMS, ENROLL_BODY, REPEAT_BODY, *sms):
        for place, text in places.items():
            assert secret not in text, f"{secret!r} in {place}"


def test_sql_debug_logs_stay_quiet_even_with_debug_on(
    open_session, send_sms, settings, caplog
):
    # With DEBUG on, Django logs every SQL statement with its parameters at DEBUG level.
    caplog.set_level(logging.DEBUG)
    settings.DEBUG = True

    send_sms(ENROLL_BODY)

    assert Account.objects.count() == 1
    text = log_text(caplog)
    assert STUDENT_PHONE not in text
    assert ENROLL_BODY not in text
