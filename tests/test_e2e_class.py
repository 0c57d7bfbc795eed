"""A class of 30 through the real processes: gunicorn and qcluster against fake Coder/Twilio.

Students text the phrase over signed HTTP webhooks; every one must get a credentials SMS that
logs into Coder; when the session expires Coder must be left with nothing of ours and the
database with no phone numbers.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.harness import (
    EMAIL_DOMAIN,
    Stack,
    credentials_sent,
    student_phone,
    wait_for,
)
from tests.e2e.scenario import deployment, phone_columns_holding
from tests.fakes.coder import FakeCoder
from tests.fakes.twilio import FakeTwilio
from tests.student import log_in

pytestmark = pytest.mark.e2e

PHRASE = "python lab e2e"
TEMPLATE = "python"
STUDENTS = 30
# Long enough for 30 students to enroll on a slow 2-core runner, short enough for a fast test.
LIFETIME = timedelta(seconds=30)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    coder = FakeCoder()
    coder.add_template(TEMPLATE)
    twilio = FakeTwilio(deliver_callbacks=True)
    # Look at deleting workspaces again after 1 s instead of 15.
    settings = {"CLEANUP_POLL_SECONDS": "1"}
    with deployment(tmp_path, coder=coder, twilio=twilio, settings=settings) as stack:
        stack.prepare()
        stack.start_web(workers=2, threads=4)
        stack.start_cluster(workers=4)
        yield stack
        print(stack.logs())  # shown by pytest only when the test failed


def test_a_class_of_30_gets_working_accounts_and_expiry_removes_them(stack: Stack) -> None:
    expires = datetime.now(UTC) + LIFETIME
    session_id = stack.create_session(
        PHRASE, "--expires", expires.isoformat(), "--template", TEMPLATE
    )
    phones = [student_phone(i) for i in range(STUDENTS)]

    answers = stack.burst(PHRASE, STUDENTS)

    assert [a["status"] for a in answers] == [200] * STUDENTS
    usernames = assert_each_student_texted_working_credentials(stack, phones)
    assert stack.account_statuses(session_id) == {"active": STUDENTS}
    assert datetime.now(UTC) < expires, "enrollment took longer than the session's lifetime"

    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 1)
    run_cleanup_until_coder_has_nothing_of_ours(stack)

    assert not any(stack.coder.workspaces_of(username) for username in usernames)
    wait_for(
        lambda: stack.account_statuses(session_id) == {"deleted": STUDENTS},
        timeout=30,
        what="every account to be marked deleted",
    )
    assert phone_columns_holding(stack, phones) == {}


def assert_each_student_texted_working_credentials(stack: Stack, phones: list[str]) -> list[str]:
    """One credentials SMS per phone, each logging into Coder by email; return the usernames."""
    sent = wait_for(
        lambda: (found := credentials_sent(stack.twilio)).keys() >= set(phones) and found,
        timeout=60,
        what="a credentials SMS for every student",
    )
    assert {phone: len(sent[phone]) for phone in phones} == dict.fromkeys(phones, 1)
    for phone in phones:
        email, password = sent[phone][0]
        answer = log_in(stack.coder.url, email, password)
        assert answer.status_code == 201, f"{email}: the texted credentials fail: {answer.text}"
    users = stack.coder.live_users(EMAIL_DOMAIN)
    assert sorted(u["email"] for u in users) == sorted(sent[phone][0][0] for phone in phones)
    ours = [user["username"] for user in users]
    assert all(len(stack.coder.workspaces_of(username)) == 1 for username in ours)
    return ours


def run_cleanup_until_coder_has_nothing_of_ours(stack: Stack) -> None:
    """Run `cleanup` as an operator would, instead of waiting for the every-minute sweep
    (which django-q2's scheduler runs 30-90 s late)."""
    wait_for(
        lambda: stack.manage("cleanup") and not stack.coder.live_users(EMAIL_DOMAIN),
        timeout=60,
        interval=1,
        what="expiry to delete every Coder user of ours",
    )
