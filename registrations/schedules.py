"""The periodic jobs, registered by name so repeated migrate/`make run` never duplicates them."""

from __future__ import annotations

from django.db import connection, transaction
from django.utils import timezone
from django_q.models import Schedule

# Any constant: it names the lock that serialises ensure_schedules across processes.
_ADVISORY_LOCK_KEY = 0x5C4ED

# name -> (task, schedule type, minutes between runs for MINUTES schedules)
PERIODIC_JOBS: dict[str, tuple[str, str, int | None]] = {
    "heartbeat": ("registrations.tasks.heartbeat", Schedule.MINUTES, 1),
    "warn": ("registrations.tasks.warn", Schedule.MINUTES, 1),
    "expire": ("registrations.tasks.expire", Schedule.MINUTES, 1),
    "sweep": ("registrations.tasks.sweep", Schedule.MINUTES, 1),
    "last_seen": ("registrations.tasks.last_seen", Schedule.MINUTES, 1),
    "reconcile": ("registrations.tasks.reconcile", Schedule.HOURLY, None),
    "retention": ("registrations.tasks.retention", Schedule.DAILY, None),
}


def ensure_schedules() -> list[str]:
    """Create or update every periodic job by name; return the names that were created.

    Several containers may run `migrate` at once on deploy. django-q2 does not make schedule
    names unique, so the whole registration runs under one lock and drops any duplicate an
    earlier, unlocked run left behind (two rows of one job would run it twice as often).
    """
    created = []
    with transaction.atomic():
        _lock_registration()
        for name, (func, schedule_type, minutes) in PERIODIC_JOBS.items():
            _drop_duplicates(name)
            _, was_created = Schedule.objects.update_or_create(
                name=name,
                defaults={
                    "func": func,
                    "schedule_type": schedule_type,
                    "minutes": minutes,
                    "repeats": -1,
                },
                create_defaults={
                    "func": func,
                    "schedule_type": schedule_type,
                    "minutes": minutes,
                    "repeats": -1,
                    "next_run": timezone.now(),
                },
            )
            if was_created:
                created.append(name)
    return created


def _lock_registration() -> None:
    # SQLite needs nothing: its IMMEDIATE transactions already let one writer in at a time.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_ADVISORY_LOCK_KEY])


def _drop_duplicates(name: str) -> None:
    # Keep the oldest row: its next_run is the job's real cadence.
    extra = Schedule.objects.filter(name=name).order_by("pk").values_list("pk", flat=True)[1:]
    if ids := list(extra):
        Schedule.objects.filter(pk__in=ids).delete()
