"""Building blocks shared by the e2e test and the drills: a deployment that always tears down
(and shows its logs when something failed), and checks of what the database still holds."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.e2e.harness import EMAIL_DOMAIN, Stack, credentials_sent

# Every column where the app keeps a phone number.
PHONE_COLUMNS = (
    ("registrations_account", "phone"),
    ("registrations_inboundmessage", "phone"),
    ("registrations_outboundmessage", "phone"),
    ("registrations_optout", "phone"),
)


@contextlib.contextmanager
def deployment(workdir: Path, *, coder: Any, twilio: Any, **stack_options: Any) -> Iterator[Stack]:
    """Start the fakes and a Stack; stop everything whatever happens, logs on failure."""
    with coder, twilio, Stack(workdir, coder=coder, twilio=twilio, **stack_options) as stack:
        try:
            yield stack
        except BaseException:
            # pytest shows captured output of failed tests only: the logs explain the failure.
            print(stack.logs(), file=sys.stderr)
            raise


def phone_columns_holding(stack: Stack, phones: list[str]) -> dict[str, int]:
    """Count, per table.column, rows that still hold one of these phone numbers."""
    quoted = ", ".join(f"'{phone}'" for phone in phones)
    found = {}
    for table, column in PHONE_COLUMNS:
        count = stack.db.count(table, f"{column} IN ({quoted})")
        if count:
            found[f"{table}.{column}"] = count
    return found


# registrations/texts.py FAILURE_TEXT: what a student gets when their account cannot be made.
FAILURE_MARK = "could not set up your Coder account"


def failures_sent(twilio: Any) -> dict[str, int]:
    """Failure SMS per phone."""
    found: dict[str, int] = {}
    for message in twilio.messages:
        if FAILURE_MARK in message["body"]:
            found[message["to"]] = found.get(message["to"], 0) + 1
    return found


def unserved(twilio: Any, phones: list[str]) -> list[str]:
    """Phones that got neither credentials nor a failure SMS yet."""
    done = credentials_sent(twilio).keys() | failures_sent(twilio).keys()
    return [phone for phone in phones if phone not in done]


def live_usernames(stack: Stack) -> set[str]:
    """Coder usernames of the accounts the database says are active."""
    rows = stack.db.rows("SELECT coder_username FROM registrations_account WHERE status = 'active'")
    return {username for (username,) in rows}


def coder_usernames(stack: Stack) -> list[str]:
    """Users of ours (by the e-mail marker) still alive in the fake Coder."""
    return [user["username"] for user in stack.coder.live_users(EMAIL_DOMAIN)]
