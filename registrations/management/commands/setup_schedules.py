from __future__ import annotations

from django.core.management.base import BaseCommand

from registrations.schedules import PERIODIC_JOBS, ensure_schedules


class Command(BaseCommand):
    help = "Register the periodic jobs (warn, expire, sweep, reconcile, retention) by name."

    def handle(self, *args: object, **options: object) -> None:
        created = ensure_schedules()
        self.stdout.write(f"{len(PERIODIC_JOBS)} periodic jobs registered ({len(created)} new).")
