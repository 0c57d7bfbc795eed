from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from registrations import coder, maintenance

BAR_WIDTH = 30


class Command(BaseCommand):
    help = (
        "Delete Coder users that carry our email marker but belong to no live account "
        "(orphans); users without the marker are never touched."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="List the orphans; delete nothing."
        )

    def handle(self, *args: object, **options: object) -> None:
        self.stderr.style_func = None  # the progress bar is not an error: no red
        try:
            if options["dry_run"]:
                self._list_orphans()
                return
            report = maintenance.reconcile(progress=self._progress)
        except coder.CoderNotConfigured as exc:
            raise CommandError(f"Coder is not configured: {exc}.") from exc
        except coder.CoderError as exc:
            raise CommandError(f"Coder did not answer as expected: {exc}") from exc
        self._summary(report)
        if report["errors"]:
            raise CommandError(f"{report['errors']} orphans could not be deleted (see the log).")

    def _list_orphans(self) -> None:
        ours, orphans = maintenance.find_orphans(coder.get_client())
        self.stdout.write(
            f"Coder users with our marker (@{settings.CODER_EMAIL_DOMAIN}): {len(ours)}"
        )
        self.stdout.write(f"Orphans (no live account) that would be deleted: {len(orphans)}")
        for user in orphans:
            self.stdout.write(f"  {user.username:<32} {user.email} ({user.status})")

    def _progress(self, done: int, total: int) -> None:
        filled = BAR_WIDTH * done // total
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        self.stderr.write(f"\rDeleting orphans [{bar}] {done}/{total}", ending="")
        if done == total:
            self.stderr.write("")

    def _summary(self, report: dict[str, int]) -> None:
        self.stdout.write(
            f"Coder users with our marker (@{settings.CODER_EMAIL_DOMAIN}): {report['found']}"
        )
        self.stdout.write(f"Orphans (no live account): {report['orphans']}")
        self.stdout.write(f"Deleted: {report['deleted']}")
        self.stdout.write(
            f"Still deleting workspaces (finished by the next run): {report['pending']}"
        )
        self.stdout.write(f"Errors: {report['errors']}")
