"""A worker runs a provisioning's first statements and writes its SMS once as it starts, on
nothing (registrations/warmup.py, provisioning.warm_up): its first student then costs what
its next does. Nothing may come of it: no row changes, nothing reaches Coder or Twilio.
"""

from __future__ import annotations

import pytest

from registrations import provisioning, warmup
from registrations.models import Account, AccountStatus, OutboundMessage
from tests.conftest import make_account

pytestmark = pytest.mark.django_db


@pytest.fixture
def waiting(open_session):
    """A student whose account waits for a worker, as in a class burst."""
    return make_account(open_session, status=AccountStatus.REQUESTED)


def test_warming_up_changes_nothing_and_calls_no_one(waiting, fake_coder, fake_twilio):
    provisioning.warm_up()

    account = Account.objects.get(pk=waiting.pk)
    assert account.status == AccountStatus.REQUESTED
    assert account.claimed_by == ""
    assert account.coder_username == ""
    assert account.status_changed_at == waiting.status_changed_at
    assert OutboundMessage.objects.count() == 0
    assert fake_coder.requests_log == []
    assert fake_twilio.messages == []


def test_a_starting_worker_warms_up_and_leaves_the_waiting_student_to_provision(
    waiting, fake_coder, fake_twilio, run_tasks
):
    warmup.worker()  # what post_spawn runs in every worker
    assert Account.objects.get(pk=waiting.pk).status == AccountStatus.REQUESTED

    run_tasks(provisioning.provision, waiting.pk)

    account = Account.objects.get(pk=waiting.pk)
    assert account.status == AccountStatus.ACTIVE
    assert [m["to"] for m in fake_twilio.messages] == [waiting.phone]
