"""Create (or repeat), list, end, extend sessions and print rosters from scripts:
`manage.py sessions <subcommand>`."""

from __future__ import annotations

import json
from argparse import ArgumentTypeError
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

from registrations import coder, roster_export, session_lifecycle, template_parameters
from registrations.checks import missing_coder_settings
from registrations.models import Account, AccountStatus, Session, SessionState
from registrations.session_lifecycle import (
    classroom_for_owner,
    create_session,
    default_times,
    validation_text,
)


def iso_datetime(value: str) -> datetime:
    """Parse an ISO 8601 date-time; one without an offset is in the server's time zone."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ArgumentTypeError(
            f"“{value}” is not an ISO 8601 date-time (e.g. 2025-03-05T14:30)"
        ) from exc
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ArgumentTypeError(f"“{value}” is not a positive whole number")
    return number


def parameter(value: str) -> tuple[str, str]:
    """Parse NAME=VALUE (the value may contain "=", and may be empty: the default)."""
    name, equals, text = value.partition("=")
    if not equals or not name.strip():
        raise ArgumentTypeError(f"“{value}” is not NAME=VALUE")
    return name.strip(), text


def local_minute(iso: str) -> str:
    """Show an ISO time in the server's time zone, to the minute."""
    return f"{timezone.localtime(datetime.fromisoformat(iso)):%Y-%m-%d %H:%M}"


def session_row(session: Session, counts: dict[str, int], logged_in: int = 0) -> dict[str, Any]:
    """Describe a session for `sessions list --json`."""
    return {
        "id": session.pk,
        "classroom": session.classroom.name,
        "owner": session.classroom.owner.get_username(),
        "phrase": session.phrase,
        "state": session.state.value,
        "opens_at": session.opens_at.isoformat(),
        "closes_at": session.closes_at.isoformat(),
        "expires_at": session.expires_at.isoformat(),
        "ended_at": session.ended_at.isoformat() if session.ended_at else None,
        "capacity": session.capacity,
        "template": session.coder_template,
        "template_parameters": session.template_parameters,
        # The language of the students' SMS (a code of STUDENT_LANGUAGES, e.g. "es").
        "language": session.language,
        "accounts": {status: counts.get(status, 0) for status in AccountStatus.values},
        "accounts_total": sum(counts.values()),
        # Students Coder has seen log in (from Coder's last_seen_at, polled every minute).
        "logged_in": logged_in,
    }


class Command(BaseCommand):
    help = "Create, list, end and extend sessions (see `sessions <subcommand> --help`)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True, metavar="subcommand")
        create = sub.add_parser("create", help="Create a session and print its id.")
        # Not required by argparse: --from takes the classroom and owner from the copied session.
        create.add_argument("--classroom", help="Created for the owner if missing.")
        create.add_argument("--owner", help="Username of the instructor.")
        create.add_argument("--phrase", required=True, help="What students text.")
        create.add_argument(
            "--from",
            dest="from_id",
            type=int,
            metavar="ID",
            help="Repeat session ID: same classroom, settings and texts, times shifted.",
        )
        create.add_argument(
            "--shift-days",
            type=int,
            default=7,
            help="With --from: move every time this many days later (default 7).",
        )
        create.add_argument("--opens", type=iso_datetime, help="ISO date-time; default now.")
        closes = create.add_mutually_exclusive_group()
        closes.add_argument("--closes", type=iso_datetime, help="ISO date-time.")
        closes.add_argument(
            "--enroll-minutes",
            type=positive_int,
            help=f"Enrollment window (default {settings.ENROLL_MINUTES_DEFAULT}).",
        )
        expires = create.add_mutually_exclusive_group()
        expires.add_argument("--expires", type=iso_datetime, help="ISO date-time.")
        expires.add_argument(
            "--lifetime-minutes",
            type=positive_int,
            help="Account lifetime, counted from the opening "
            f"(default {settings.LIFETIME_MINUTES_DEFAULT}).",
        )
        create.add_argument("--capacity", type=positive_int, help="Most students (default 100).")
        create.add_argument("--template", default="", help="Coder template for workspaces.")
        create.add_argument(
            "--parameter",
            dest="parameters",
            type=parameter,
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="A value for one of the template's parameters (repeatable); checked with Coder.",
        )
        languages = ", ".join(f"{code} ({name})" for code, name in settings.STUDENT_LANGUAGES)
        create.add_argument(
            "--language",
            choices=[code for code, _ in settings.STUDENT_LANGUAGES],
            help=f"Language of the students' SMS: {languages}; "
            f"default {settings.DEFAULT_STUDENT_LANGUAGE}.",
        )

        listing = sub.add_parser("list", help="List sessions (a table, or JSON).")
        listing.add_argument("--json", action="store_true", help="Print one JSON array.")

        end = sub.add_parser("end", help="End a session now: its accounts are deleted.")
        end.add_argument("id", type=int)

        extend = sub.add_parser("extend", help="Move a session's expiry later.")
        extend.add_argument("id", type=int)
        extend.add_argument("--minutes", type=positive_int, required=True)

        roster = sub.add_parser("roster", help="Print a session's roster (a table, or CSV).")
        roster.add_argument("id", type=int)
        roster.add_argument("--csv", action="store_true", help="Print the admin's CSV download.")

    def handle(self, *args: Any, subcommand: str, **options: Any) -> None:
        getattr(self, f"handle_{subcommand}")(**options)

    def handle_create(self, **options: Any) -> None:
        if options["from_id"] is not None:
            self.duplicate(options)
            return
        if not options["classroom"] or not options["owner"]:
            raise CommandError("--classroom and --owner are required (unless --from ID).")
        owner = self.find_owner(options["owner"])
        times = default_times(
            opens_at=options["opens"],
            closes_at=options["closes"],
            enroll_minutes=options["enroll_minutes"],
            expires_at=options["expires"],
            lifetime_minutes=options["lifetime_minutes"],
        )
        template = self.checked_template(options["template"])
        fields: dict[str, Any] = {
            "coder_template": template,
            "template_parameters": self.checked_parameters(template, dict(options["parameters"])),
        }
        if options["capacity"] is not None:
            fields["capacity"] = options["capacity"]
        if options["language"] is not None:
            fields["language"] = options["language"]
        try:
            # One transaction: a refused session leaves no new, empty classroom behind.
            with transaction.atomic():
                classroom = classroom_for_owner(owner, options["classroom"])
                session = create_session(classroom, options["phrase"], times, **fields)
        except ValidationError as exc:
            raise CommandError(validation_text(exc)) from exc
        self.stdout.write(str(session.pk))

    def duplicate(self, options: dict[str, Any]) -> None:
        """`create --from ID`: copy the session; options it would ignore are refused instead."""
        copied = (
            "classroom owner opens closes enroll_minutes expires lifetime_minutes capacity language"
        )
        given = [name for name in copied.split() if options[name] is not None] + (
            ["template"] if options["template"] else []
        ) + (["parameter"] if options["parameters"] else [])
        if given:
            flags = ", ".join("--" + name.replace("_", "-") for name in given)
            raise CommandError(f"--from copies the session's settings; drop {flags}.")
        session = self.get_session(options["from_id"])
        shift = timedelta(days=options["shift_days"])
        try:
            copy = session_lifecycle.duplicate_session(session, options["phrase"], shift)
        except ValidationError as exc:
            raise CommandError(validation_text(exc)) from exc
        self.stdout.write(str(copy.pk))

    def find_owner(self, username: str) -> Any:
        User = get_user_model()
        try:
            owner = User.objects.get(username=username)
        except User.DoesNotExist as exc:
            raise CommandError(
                f"No user named “{username}” (create one with createinstructor)."
            ) from exc
        if not owner.is_staff:
            raise CommandError(f"“{username}” is not staff, so could not manage the session.")
        return owner

    def checked_template(self, name: str) -> str:
        """Check that Coder offers the template; only warn when Coder cannot be asked."""
        if not name or missing_coder_settings():
            if name:
                self.stderr.write("Coder is not configured: the template name is not checked.")
            return name
        try:
            found = session_lifecycle.find_template(name)
        except coder.CoderError as exc:
            self.stderr.write(f"Could not check the template with Coder ({exc}); keeping it.")
            return name
        if found is None:
            raise CommandError(f"Coder has no template named “{name}”.")
        return found.name

    def checked_parameters(self, template: str, values: dict[str, str]) -> dict[str, str]:
        """Check the values against the template's parameters, as the admin form does; only
        warn when Coder cannot be asked (as for the template itself)."""
        if not template:
            if values:
                raise CommandError("--parameter needs --template.")
            return {}
        if missing_coder_settings():
            if values:
                self.stderr.write("Coder is not configured: the parameters are not checked.")
            return {name: value for name, value in values.items() if value != ""}
        try:
            return template_parameters.check(template, values)
        except ValidationError as exc:
            raise CommandError(
                f"Template “{template}” parameters:\n{validation_text(exc)}"
            ) from exc
        except coder.CoderError as exc:
            self.stderr.write(f"Could not check the parameters with Coder ({exc}); keeping them.")
            return {name: value for name, value in values.items() if value != ""}

    def handle_list(self, **options: Any) -> None:
        counts: dict[int, dict[str, int]] = {}
        per_status = Account.objects.values_list("session_id", "status").annotate(n=Count("pk"))
        for session_id, status, n in per_status:
            counts.setdefault(session_id, {})[status] = n
        logged_in = dict(
            Account.objects.filter(coder_last_seen_at__isnull=False)
            .values_list("session_id")
            .annotate(n=Count("pk"))
        )
        sessions = Session.objects.select_related("classroom__owner").order_by("pk")
        rows = [
            session_row(session, counts.get(session.pk, {}), logged_in.get(session.pk, 0))
            for session in sessions
        ]
        if options["json"]:
            self.stdout.write(json.dumps(rows, indent=2))
            return
        self.write_table(rows)

    def write_table(self, rows: list[dict[str, Any]]) -> None:
        header = tuple("ID CLASSROOM OWNER PHRASE STATE CLOSES EXPIRES JOINED LANG".split())
        lines = [header] + [
            (
                str(row["id"]),
                row["classroom"],
                row["owner"],
                row["phrase"],
                row["state"],
                local_minute(row["closes_at"]),
                local_minute(row["expires_at"]),
                f"{row['accounts_total']}/{row['capacity']}",
                row["language"],
            )
            for row in rows
        ]
        widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
        for line in lines:
            cells = (cell.ljust(width) for cell, width in zip(line, widths, strict=True))
            self.stdout.write("  ".join(cells).rstrip())

    def get_session(self, pk: int) -> Session:
        try:
            return Session.objects.select_related("classroom").get(pk=pk)
        except Session.DoesNotExist as exc:
            raise CommandError(f"No session with id {pk}.") from exc

    def handle_end(self, *, id: int, **options: Any) -> None:
        session = self.get_session(id)
        if session.state == SessionState.ENDED:
            self.stdout.write(f"Session {id} (“{session.phrase}”) had already ended.")
            return
        count = session_lifecycle.end_session(session)
        self.stdout.write(
            f"Ended session {id} (“{session.phrase}”): {count} account(s) being deleted."
        )

    def handle_extend(self, *, id: int, minutes: int, **options: Any) -> None:
        session = self.get_session(id)
        if session.state == SessionState.ENDED:
            raise CommandError(f"Session {id} has ended; it cannot be extended.")
        try:
            session_lifecycle.extend_session(session, minutes)
        except ValidationError as exc:
            raise CommandError(validation_text(exc)) from exc
        session.refresh_from_db()
        self.stdout.write(
            f"Extended session {id} by {minutes} minute(s): accounts now expire at "
            f"{session.expires_at.isoformat()}."
        )

    def handle_roster(self, *, id: int, csv: bool, **options: Any) -> None:
        session = self.get_session(id)
        if csv:
            # The same text as the admin's download; write() would add a newline of its own.
            self.stdout.write(roster_export.roster_csv(session), ending="")
            return
        table = roster_export.roster_table(session)
        widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
        for row in table:
            cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
            self.stdout.write("  ".join(cells).rstrip())
