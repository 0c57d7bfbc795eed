"""Create an instructor: a staff user in the Instructors group."""

from __future__ import annotations

import getpass
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.core.validators import validate_email
from django.db import IntegrityError

from registrations.instructors import InstructorsGroupMissing, create_instructor


class Command(BaseCommand):
    help = (
        "Create an instructor (a staff user in the Instructors group). Prompts on a terminal "
        "for the username and email when not given, and for the password when --password is "
        "not given; a password on the command line is visible to other users of this machine."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", help="Prompted for when not given (on a terminal).")
        parser.add_argument("--email", help="Prompted for when not given (on a terminal).")
        parser.add_argument("--password", help="Prompted for (twice) when not given.")

    def handle(
        self,
        *args: Any,
        username: str | None,
        email: str | None,
        password: str | None,
        **options: Any,
    ) -> None:
        User = get_user_model()
        username = username or self.prompt("Username", "--username")
        email = email or self.prompt("Email", "--email")
        self.check_username(User, username)
        try:
            validate_email(email)
        except ValidationError as exc:
            raise CommandError(f"“{email}” is not a valid email address.") from exc
        if password is None:
            password = self.prompt_password()
        try:
            validate_password(password, User(username=username, email=email))
        except ValidationError as exc:
            raise CommandError("Password rejected: " + " ".join(exc.messages)) from exc
        try:
            create_instructor(username, email, password)
        except InstructorsGroupMissing as exc:
            raise CommandError(str(exc)) from exc
        except IntegrityError as exc:  # created by someone else since the check
            raise CommandError(f"A user named “{username}” already exists.") from exc
        self.stdout.write(f"Instructor “{username}” created. They can log in at /admin/.")

    def check_username(self, User: Any, username: str) -> None:
        try:
            User.username_validator(username)
        except ValidationError as exc:
            raise CommandError(f"“{username}” is not a valid username: {exc.messages[0]}") from exc
        if User.objects.filter(username__iexact=username).exists():
            raise CommandError(
                f"A user named “{username}” already exists; nothing was changed. "
                "Choose another username (or change that user in the admin)."
            )

    def prompt(self, label: str, option: str) -> str:
        """Ask for a value on the terminal (`make instructor` without USERNAME=, say)."""
        if not sys.stdin.isatty():
            raise CommandError(f"No {option} given and no terminal to ask for one.")
        value = input(f"{label}: ").strip()
        if not value:
            raise CommandError(f"The {label.lower()} cannot be empty.")
        return value

    def prompt_password(self) -> str:
        """Ask for the password twice on the terminal, as createsuperuser does."""
        if not sys.stdin.isatty():
            raise CommandError("No --password given and no terminal to ask for one.")
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Password (again): "):
            raise CommandError("The two passwords differ.")
        if not password:
            raise CommandError("The password cannot be empty.")
        return password
