"""A session's roster as rows and CSV: one builder for the admin's download and the CLI.

Phones are masked as on screen, times are in the session's zone (named in the headers), and
cells a spreadsheet would read as a formula are neutralised.
"""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import TypedDict

from django.db.models import OuterRef, QuerySet, Subquery
from django_stubs_ext import WithAnnotations

from registrations import zones
from registrations.models import Account, AccountStatus, OutboundMessage, OutboundStatus, Session
from registrations.phones import mask_phone

# A cell starting with one of these is run as a formula by Excel, LibreOffice and Sheets
# (OWASP "CSV injection"); tab and carriage return are included because some of them strip
# leading whitespace before deciding.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class LatestSms(TypedDict):
    """What roster() annotates each account with: its latest SMS (None when it has none)."""

    sms_status: str | None
    sms_error_code: int | None


def roster(session: Session) -> QuerySet[WithAnnotations[Account, LatestSms]]:
    """Return the session's accounts, newest first, with their latest SMS delivery status."""
    latest = OutboundMessage.objects.filter(account=OuterRef("pk")).order_by("-created_at", "-pk")
    return (
        Account.objects.filter(session=session)
        .annotate(
            sms_status=Subquery(latest.values("status")[:1]),
            sms_error_code=Subquery(latest.values("error_code")[:1]),
        )
        .order_by("-created_at", "-pk")
    )


def headers(session: Session) -> list[str]:
    """The column names; each time column names the zone its times are in."""
    zone = zones.zone_named(session.time_zone).key
    return [
        "phone",
        "username",
        "login email",
        "status",
        f"joined at ({zone})",
        f"credentials sent at ({zone})",
        # Coder reports only when a user was last seen; the first login is not recorded anywhere.
        f"last seen in Coder ({zone}; first login not recorded)",
        "latest SMS status",
    ]


def neutralise(cell: str) -> str:
    """Prefix a cell a spreadsheet would evaluate with ' so that it stays text."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


def _time(moment: datetime | None, session: Session) -> str:
    # ISO 8601 with the offset: sortable, and unambiguous even across a daylight-saving change.
    if moment is None:
        return ""
    return moment.astimezone(zones.zone_named(session.time_zone)).isoformat(timespec="seconds")


def _sms(status: str | None, error_code: int | None) -> str:
    if not status:
        return ""
    label = str(OutboundStatus(status).label)
    return f"{label} ({error_code})" if error_code else label


def roster_table(session: Session) -> list[list[str]]:
    """The roster as text cells (headers first), formula starts already neutralised."""
    rows = [
        [
            mask_phone(account.phone),
            account.coder_username,
            account.login_email,
            str(AccountStatus(account.status).label),
            _time(account.created_at, session),
            _time(account.credentials_sent_at, session),
            _time(account.coder_last_seen_at, session),
            _sms(account.sms_status, account.sms_error_code),
        ]
        for account in roster(session)
    ]
    return [[neutralise(cell) for cell in row] for row in [headers(session), *rows]]


def roster_csv(session: Session) -> str:
    """The roster as CSV text (RFC 4180, CRLF line ends)."""
    out = io.StringIO()
    csv.writer(out).writerows(roster_table(session))
    return out.getvalue()


def csv_filename(session: Session) -> str:
    """A download name safe in a header: the session's id and phrase, letters and digits only."""
    kept = "".join(c if c.isascii() and c.isalnum() else " " for c in session.phrase)
    slug = "-".join(kept.split())
    return f"roster-{session.pk}-{slug or 'session'}.csv"
