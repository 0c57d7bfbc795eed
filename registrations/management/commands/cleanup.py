from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Count, QuerySet
from django.utils import timezone

from registrations import deletion, expiry
from registrations.models import DELETION_STATUSES, Account, AccountStatus


class Command(BaseCommand):
    help = (
        "Start deleting expired accounts from Coder and report the deletion pipeline. "
        "With --dry-run, only list what would be deleted and why."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="List what would be deleted; change nothing."
        )

    def handle(self, *args: object, **options: object) -> None:
        now = timezone.now()
        if options["dry_run"]:
            self._list_plan(now)
            return
        expired = expiry.expire_due(now)
        self.stdout.write(f"Expired now: {expired} account{'s' if expired != 1 else ''}.")
        # One deletion pass now, rather than waiting for a worker's next sweep.
        done = deletion.run_pass(now)
        self.stdout.write(
            f"Deletion pass: {done.suspended} suspended, {done.workspace_checks} workspace "
            f"checks, {done.users_deleted} users deleted, {done.errors} errors."
        )
        self._report_pipeline()

    def _list_plan(self, now: datetime) -> None:
        """Print every account the pipeline would delete, with the reason."""
        expired = list(
            expiry.expired_accounts(now)
            .select_related("session__classroom")
            .order_by("expires_at", "pk")
        )
        requested = list(
            _requested().select_related("session__classroom").order_by("deletion_requested_at")
        )
        total = len(expired) + len(requested)
        self.stdout.write(f"{total} account{'s' if total != 1 else ''} would be deleted:")
        for account in expired:
            self._line(account, f"expired {_when(account.expires_at)}")
        for account in requested:
            reason = account.get_deletion_reason_display().lower()
            why = f"{reason} {_when(account.deletion_requested_at)}"
            if account.last_error:
                why += f"; stuck: {account.last_error}"
            self._line(account, why)

    def _line(self, account: Account, why: str) -> None:
        self.stdout.write(
            f"  #{account.pk:<6} {account.coder_username or '(no Coder user)':<20} "
            f"{account.status:<20} {account.session}: {why}"
        )

    def _report_pipeline(self) -> None:
        counts = dict(
            _requested().order_by().values_list("status").annotate(n=Count("pk"))
        )
        parts = ", ".join(f"{status} {counts.get(status, 0)}" for status in DELETION_STATUSES)
        stuck = _requested().exclude(last_error="").count()
        self.stdout.write(f"In the pipeline: {parts}; with an error: {stuck}.")
        self.stdout.write(
            f"Workers run a deletion pass every {settings.WORKER_SWEEP_SECONDS:g} s "
            f"({settings.CLEANUP_CONCURRENCY} Coder calls at once); workspace deletions are "
            f"checked every {settings.CLEANUP_POLL_SECONDS} s."
        )


def _requested() -> QuerySet[Account]:
    return Account.objects.filter(deletion_requested_at__isnull=False).exclude(
        status=AccountStatus.DELETED
    )


def _when(moment: datetime | None) -> str:
    return f"at {timezone.localtime(moment):%Y-%m-%d %H:%M %Z}" if moment else ""
