"""Preview of a session's message overrides: the SMS a student would get, and its segments."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from registrations import credentials, texts
from registrations.models import Account, Session

PREVIEW_KINDS = ("credentials", "warning")


def preview_message(kind: str, text: str, time_zone: str, warn_minutes: int) -> dict[str, Any]:
    """Render an override (or the default when blank) with sample values, as it would be sent.

    The texts module renders it from unsaved rows, so the preview takes the same code path as
    the real SMS; a sample username and password of real length make the segment count true.
    """
    now = timezone.now()
    session = Session(
        phrase="preview",
        time_zone=time_zone or settings.TIME_ZONE,
        expires_at=now + timedelta(minutes=warn_minutes),
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
        body = texts.warning_text(account, now)
    return {
        "text": body,
        "characters": len(body),
        "segments": texts.segments(body),
        "gsm7": texts.is_gsm7(body),
        "problems": problems,
        "default": not text.strip() or bool(problems),
    }
