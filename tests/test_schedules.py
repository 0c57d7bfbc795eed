"""Periodic jobs: registered once by name however often setup_schedules or migrate runs, at the
documented cadence, with catch-up off."""

from __future__ import annotations

from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.sql import emit_post_migrate_signal
from django.db import connection
from django.utils.module_loading import import_string
from django_q.conf import Conf
from django_q.models import Schedule

from registrations.schedules import PERIODIC_JOBS, ensure_schedules
from tests.conftest import at_once

pytestmark = pytest.mark.django_db

EXPECTED = {
    "heartbeat": ("registrations.tasks.heartbeat", Schedule.MINUTES, 1),
    "warn": ("registrations.tasks.warn", Schedule.MINUTES, 1),
    "expire": ("registrations.tasks.expire", Schedule.MINUTES, 1),
    "sweep": ("registrations.tasks.sweep", Schedule.MINUTES, 1),
    "last_seen": ("registrations.tasks.last_seen", Schedule.MINUTES, 1),
    "reconcile": ("registrations.tasks.reconcile", Schedule.HOURLY, None),
    "retention": ("registrations.tasks.retention", Schedule.DAILY, None),
}


def registered() -> dict[str, tuple[str, str, int | None]]:
    rows = Schedule.objects.values_list("name", "func", "schedule_type", "minutes")
    return {name: (func, kind, minutes) for name, func, kind, minutes in rows}


def test_jobs_are_registered_once_however_often_setup_runs():
    ensure_schedules()
    ensure_schedules()
    call_command("setup_schedules", stdout=StringIO())
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")

    assert registered() == EXPECTED
    assert Schedule.objects.count() == len(EXPECTED)


def test_migrate_registers_them_too():
    Schedule.objects.all().delete()

    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")

    assert registered() == EXPECTED


def test_setup_schedules_reports_what_it_did():
    Schedule.objects.filter(name="retention").delete()
    out = StringIO()

    call_command("setup_schedules", stdout=out)

    assert out.getvalue() == f"{len(PERIODIC_JOBS)} periodic jobs registered (1 new).\n"


def test_an_edited_job_is_put_back_without_moving_its_next_run():
    job = Schedule.objects.get(name="sweep")
    next_run = job.next_run
    Schedule.objects.filter(pk=job.pk).update(func="registrations.tasks.nothing", minutes=60)

    ensure_schedules()

    job.refresh_from_db()
    assert (job.func, job.minutes, job.next_run) == ("registrations.tasks.sweep", 1, next_run)


def test_every_job_runs_forever_and_its_task_exists():
    for job in Schedule.objects.all():
        assert job.repeats == -1
        assert callable(import_string(job.func))


def test_missed_runs_are_not_replayed():
    assert settings.Q_CLUSTER["catch_up"] is False
    assert Conf.CATCH_UP is False


def test_duplicates_left_by_an_earlier_run_are_dropped_keeping_the_oldest():
    oldest = Schedule.objects.get(name="sweep")
    for _ in range(2):
        Schedule.objects.create(
            name="sweep", func="registrations.tasks.sweep", schedule_type=Schedule.MINUTES
        )

    assert ensure_schedules() == []

    assert list(Schedule.objects.filter(name="sweep").values_list("pk", flat=True)) == [oldest.pk]
    assert registered() == EXPECTED


@pytest.mark.postgres
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="concurrent registration needs PostgreSQL (SQLite lets one writer in at a time)",
)
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_several_processes_migrating_at_once_register_each_job_once():
    Schedule.objects.all().delete()

    at_once(ensure_schedules, workers=4)

    assert registered() == EXPECTED
    assert Schedule.objects.count() == len(EXPECTED)
