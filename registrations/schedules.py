"""The periodic jobs, registered by name so repeated migrate/`make run` never duplicates them."""

from __future__ import annotations

from django.utils import timezone
from django_q.models import Schedule

# name -> (task, schedule type, minutes between runs for MINUTES schedules)
PERIODIC_JOBS: dict[str, tuple[str, str, int | None]] = {
    "heartbeat": ("registrations.tasks.heartbeat", Schedule.MINUTES, 1),
    "warn": ("registrations.tasks.warn", Schedule.MINUTES, 1),
    "expire": ("registrations.tasks.expire", Schedule.MINUTES, 1),
    "sweep": ("registrations.tasks.sweep", Schedule.MINUTES, 1),
    "reconcile": ("registrations.tasks.reconcile", Schedule.HOURLY, None),
    "retention": ("registrations.tasks.retention", Schedule.DAILY, None),
}


def ensure_schedules() -> list[str]:
    """Create or update every periodic job by name; return the names that were created."""
    created = []
    for name, (func, schedule_type, minutes) in PERIODIC_JOBS.items():
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
