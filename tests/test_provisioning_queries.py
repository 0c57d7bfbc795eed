"""Provisioning a student costs a fixed handful of statements, whatever else is in the database.

In a class burst every worker runs provisioning once per student, and on two cores the ORM's
query building was most of its CPU (README, "Provisioning cost"): claiming the row, reading
it, giving it its username, pacing Coder's shared user route, activating it, and recording the
credentials SMS are now one statement each. Counted as Django counts them, in autocommit as in
a worker (transaction=True), after a first student warmed the per-process caches.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from registrations import provisioning
from registrations.models import Account, AccountStatus, OutboundMessage, OutboundStatus
from tests.conftest import make_account, make_session
from tests.student import credentials_from_sms, log_in

pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

MAX_QUERIES = 9


@pytest.fixture
def lab(open_session, fake_coder, fake_twilio):
    fake_coder.add_template("python-lab")
    session = make_session(open_session.classroom, "python lab 9", coder_template="python-lab")
    # The first student warms the caches a worker keeps (organization, template, clients).
    provisioning.provision(make_account(session, "+14155550100").pk)
    return session


def test_a_student_is_provisioned_in_a_fixed_number_of_queries(lab, fake_coder, fake_twilio):
    account = make_account(lab, "+14155550101")

    with CaptureQueriesContext(connection) as queries:
        provisioning.provision(account.pk)

    assert len(queries) <= MAX_QUERIES, "\n".join(q["sql"] for q in queries.captured_queries)
    account.refresh_from_db()
    assert account.status == AccountStatus.ACTIVE
    assert account.claimed_by == ""
    assert account.next_attempt_at is None
    assert account.credentials_sent_at is not None
    assert account.coder_user_id and account.coder_email
    sms = OutboundMessage.objects.get(account=account)
    assert sms.status == OutboundStatus.QUEUED and sms.twilio_sid and sms.attempts == 1
    # What reached Twilio logs in to Coder by the email it names.
    email, password = credentials_from_sms(fake_twilio.messages_to("+14155550101")[0]["body"])
    assert email == account.coder_email
    assert log_in(fake_coder.url, email, password).status_code == 201
    assert len(fake_coder.workspaces_of(account.coder_username)) == 1


def test_the_count_does_not_grow_with_the_class(lab):
    Account.objects.bulk_create(
        Account(session=lab, phone=f"+1415557{n:04d}", expires_at=lab.expires_at)
        for n in range(500)
    )
    account = make_account(lab, "+14155550102")

    with CaptureQueriesContext(connection) as queries:
        provisioning.provision(account.pk)

    assert len(queries) <= MAX_QUERIES
    account.refresh_from_db()
    assert account.status == AccountStatus.ACTIVE
