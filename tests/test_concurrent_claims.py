"""Two workers at once, each with its own database connection, against the real PostgreSQL:
every account is claimed, and every Coder action done, exactly once."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone
from django.utils.module_loading import import_string
from django_q.brokers import get_broker
from django_q.signing import SignedPackage

from registrations import deletion, expiry, maintenance
from registrations.models import Account, AccountStatus
from tests.conftest import at_once, queued_tasks

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="row locks and concurrent claims need PostgreSQL: set DATABASE_URL to run "
        "(CI does); SQLite serialises all writers, so there is no race to test",
    ),
    # serialized_rollback: restore what migrations created (groups, schedules) for later tests.
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

STUDENTS = 30


def be_a_worker() -> None:
    """Take tasks from the shared broker and run them until it stays empty, as qcluster does."""
    broker = get_broker()
    while batch := broker.dequeue():
        for ack_id, payload in batch:
            task = SignedPackage.loads(payload)
            import_string(task["func"])(*task["args"])
            broker.acknowledge(ack_id)


def enqueue_twice(broker, ids: list[int]) -> None:
    # Duplicates, as a redelivery or two sweeps would produce them.
    for pk in ids + ids:
        broker.enqueue(SignedPackage.dumps(
            {"id": f"t{pk}", "name": f"t{pk}", "func": deletion.ADVANCE_TASK, "args": (pk,),
             "kwargs": {}, "started": timezone.now()}
        ))


def test_two_schedulers_start_each_deletion_once(open_session, broker, settings):
    settings.CLEANUP_BATCH_SIZE = 1000  # all in this tick, so every account must be sent once
    past = timezone.now() - timedelta(minutes=1)
    ids = [
        Account.objects.create(session=open_session, phone=f"+1415555{n:04d}",
                               coder_username=f"cs-s{n}", expires_at=past,
                               status=AccountStatus.ACTIVE).pk
        for n in range(200)
    ]

    def scheduler_tick() -> None:
        expiry.expire_due()
        maintenance.sweep()

    at_once(scheduler_tick)

    started = Counter(task["args"][0] for task in queued_tasks(broker))
    assert sorted(started) == sorted(ids)
    assert set(started.values()) == {1}
    assert Account.objects.filter(status=AccountStatus.SUSPENDING).count() == 200


def test_two_workers_do_each_coder_action_once(
    open_session, coder_account, fake_coder, broker
):
    ids = [
        coder_account(open_session, f"cs-s{n:02d}", phone=f"+1415555{n:04d}",
                      status=AccountStatus.SUSPENDING).pk
        for n in range(STUDENTS)
    ]
    fake_coder.build_polls = 0

    enqueue_twice(broker, ids)
    at_once(be_a_worker)
    assert set(Account.objects.values_list("status", flat=True)) == {
        AccountStatus.DELETING_WORKSPACES
    }
    Account.objects.update(next_attempt_at=timezone.now())  # the delete builds had time
    enqueue_twice(broker, ids)
    at_once(be_a_worker)

    assert set(Account.objects.values_list("status", flat=True)) == {AccountStatus.DELETED}
    actions = Counter(
        (r.method, r.path) for r in fake_coder.requests_log if r.method in ("PUT", "POST", "DELETE")
    )
    assert len(actions) == STUDENTS * 3  # suspend, delete build, delete user per student
    assert set(actions.values()) == {1}
    assert fake_coder.live_users("lab.invalid") == []
