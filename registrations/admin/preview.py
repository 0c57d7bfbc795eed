"""Preview of a session's message overrides: the SMS a student would get, in the session's
language, with its segments and encoding."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from registrations import credentials, models, texts, zones
from registrations.models import Account, Session

PREVIEW_KINDS = ("credentials", "warning")


def typed_moment(date_text: str, time_text: str, zone_name: str) -> datetime | None:
    """Read a date and a time as typed in the session form, in the form's zone (None if unreadable).

    The same field class the form uses, so the preview reads the typed text exactly as saving
    the form would.
    """
    field = forms.SplitDateTimeField()
    with timezone.override(zones.zone_named(zone_name)):
        try:
            moment = field.clean([date_text, time_text])
        except ValidationError:
            return None
    return moment if isinstance(moment, datetime) else None


def preview_message(
    kind: str,
    text: str,
    time_zone: str,
    warn_minutes: int,
    expires_at: datetime | None = None,
    language: str = "",
) -> dict[str, Any]:
    """Render an override (or the default when blank) with sample values, as it would be sent.

    The texts module renders it from unsaved rows, so the preview takes the same code path as
    the real SMS; a sample username and password of real length make the segment count true.
    The expiry is the one typed in the form (in its zone), so the preview says what students
    will read; without one, the default lifetime from now. The language is the one chosen in
    the form (an unknown one reads as the default language, as texts.language_of does).
    """
    now = timezone.now()
    expires = expires_at or now + timedelta(minutes=settings.LIFETIME_MINUTES_DEFAULT)
    session = Session(
        phrase="preview",
        time_zone=time_zone if zones.is_zone(time_zone) else settings.TIME_ZONE,
        language=language,
        expires_at=expires,
        credentials_message=text if kind == "credentials" else "",
        warning_message=text if kind == "warning" else "",
    )
    username = credentials.generate_username()
    account = Account(session=session, coder_username=username, expires_at=session.expires_at)
    if kind == "credentials":
        problems = texts.override_problems(
            text, texts.CREDENTIALS_PLACEHOLDERS, texts.CREDENTIALS_REQUIRED
        )
        body = texts.credentials_text(account, credentials.generate_password())
    else:
        problems = texts.override_problems(text, texts.WARNING_PLACEHOLDERS)
        # The warning goes out warn_minutes before the expiry.
        body = texts.warning_text(account, expires - timedelta(minutes=warn_minutes))
    gsm7 = texts.is_gsm7(body)
    return {
        "text": body,
        "characters": len(body),
        "segments": texts.segments(body),
        "gsm7": gsm7,
        "encoding": "GSM-7" if gsm7 else "UCS-2",
        "per_segment": texts.GSM7_SINGLE if gsm7 else texts.UCS2_SINGLE,
        # What to change to get GSM-7 back (an á, a curly quote, an emoji).
        "outside_gsm7": texts.outside_gsm7(body),
        "language": dict(models.student_languages())[texts.language_of(session)],
        "problems": problems,
        "default": not text.strip() or bool(problems),
    }
