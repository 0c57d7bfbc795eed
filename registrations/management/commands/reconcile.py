from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from registrations import coder, credentials, maintenance

BAR_WIDTH = 30


class Command(BaseCommand):
    help = (
        "Delete Coder users of this deployment (their email carries its marker) that belong to "
        "no live account (orphans); every other Coder user is never touched."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="List the orphans; delete nothing."
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="Delete even when the run would delete an unusual number of users "
            "(RECONCILE_MAX_DELETES and RECONCILE_MAX_DELETE_PERCENT).",
        )

    def handle(self, *args: object, **options: object) -> None:
        self.stderr.style_func = None  # the progress bar is not an error: no red
        try:
            if options["dry_run"]:
                self._list_orphans()
                return
            report = maintenance.reconcile(progress=self._progress, force=bool(options["force"]))
        except maintenance.ReconcileRefused as exc:
            raise CommandError(str(exc)) from exc
        except coder.CoderNotConfigured as exc:
            raise CommandError(f"Coder is not configured: {exc}.") from exc
        except coder.CoderError as exc:
            raise CommandError(f"Coder did not answer as expected: {exc}") from exc
        self._summary(report)
        if report["errors"]:
            raise CommandError(f"{report['errors']} orphans could not be deleted (see the log).")

    def _ours_line(self, found: int) -> str:
        marker = f".{credentials.deployment_id()}@{settings.CODER_EMAIL_DOMAIN}"
        return f"Coder users of this deployment (marker {marker}): {found}"

    def _list_orphans(self) -> None:
        ours, orphans = maintenance.find_orphans(coder.get_client())
        self.stdout.write(self._ours_line(len(ours)))
        self.stdout.write(f"Orphans (no live account) that would be deleted: {len(orphans)}")
        for user in orphans:
            self.stdout.write(f"  {user.username:<32} {user.email} ({user.status})")
        if maintenance.too_many(len(orphans), len(ours)):
            self.stdout.write("A real run would refuse to delete this many without --force.")

    def _progress(self, done: int, total: int) -> None:
        filled = BAR_WIDTH * done // total
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        self.stderr.write(f"\rDeleting orphans [{bar}] {done}/{total}", ending="")
        if done == total:
            self.stderr.write("")

    def _summary(self, report: dict[str, int]) -> None:
        self.stdout.write(self._ours_line(report["found"]))
        self.stdout.write(f"Orphans (no live account): {report['orphans']}")
        self.stdout.write(f"Deleted: {report['deleted']}")
        self.stdout.write(
            f"Still deleting workspaces (finished by the next run): {report['pending']}"
        )
        self.stdout.write(f"Errors: {report['errors']}")
