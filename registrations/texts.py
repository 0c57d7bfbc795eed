"""Every SMS a student gets (replies included), in its session's language; GSM-7 segments;
per-session overrides.

A GSM-7 segment holds 160 characters; one non-GSM character (an emoji, a curly quote, or an
accented letter such as á, í, ó, ú) switches the whole message to UCS-2 and 70 characters a
segment. So the English defaults stay plain ASCII, and translations keep to GSM-7 (which has
é, è, ñ, ü, ¿, ¡ but not á, í, ó, ú): tests check that each shipped one fits its budget.

Texts are lazy (gettext_lazy) and rendered inside `translation.override` with the session's
language; a session's own override is sent as the instructor typed it, never translated.
"""

from __future__ import annotations

import math
import string
import zoneinfo
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import dateformat, timezone, translation
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy
from django_stubs_ext import StrOrPromise

from registrations import credentials

if TYPE_CHECKING:  # texts only read attributes; models imports texts to validate overrides
    from registrations.models import Account, Session

# GSM 03.38 default alphabet (ESC excluded) and its extension table (two septets each).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")
GSM7_SINGLE, GSM7_PART = 160, 153
UCS2_SINGLE, UCS2_PART = 70, 67
# Twilio refuses bodies longer than this.
MAX_BODY_LENGTH = 1600

# {email} is what Coder's login form asks for ("Email"); {username} is only a display name.
CREDENTIALS_PLACEHOLDERS = ("url", "email", "username", "password", "expires")
CREDENTIALS_REQUIRED = ("email", "password")
WARNING_PLACEHOLDERS = ("url", "username", "expires", "minutes")

# For translators: every text below is one SMS. Keep each to GSM-7 (é, è, ñ, ü, ¿, ¡ are in it;
# á, í, ó, ú are not and make the SMS UCS-2, 70 characters a segment) and to the length of the
# English; tests/test_student_language.py checks the budgets. Keep {placeholders} as they are.

# Fullest first; the first that fits one segment is sent (a long Coder URL needs the terse one).
# The labels are the ones on Coder's login form, so a student knows what goes where.
CREDENTIALS_DEFAULTS: tuple[StrOrPromise, ...] = (
    _(
        # Translators: keep the labels "Email" and "Password": they are those of Coder's
        # login form, which is in English.
        "Your Coder account is ready.\n{url}\nEmail: {email}\nPassword: {password}\n"
        "Expires {expires}"
    ),
    _("{url}\nEmail: {email}\nPassword: {password}\nExpires {expires}"),
    _("{url}\nEmail {email}\nPassword {password}\nExp {expires}"),
)
RESEND_DEFAULTS: tuple[StrOrPromise, ...] = (
    _("New Coder password.\n{url}\nEmail: {email}\nPassword: {password}\nExpires {expires}"),
    *CREDENTIALS_DEFAULTS[1:],
)
WARNING_DEFAULTS: tuple[StrOrPromise, ...] = (
    _(
        "Your Coder account {username} will be deleted in {minutes} min ({expires}). "
        "Save your work somewhere else now."
    ),
    _("Your Coder account will be deleted in {minutes} min. Save your work now."),
)
FAILURE_TEXT = _("Sorry, we could not set up your Coder account. Your instructor has been told.")
ENDED_BEFORE_READY_TEXT = _(
    "Sorry, this class session ended before your Coder account could be set up. "
    "Please ask your instructor for help."
)
# The goodbye: says what is gone (the account and its workspaces), kindly, in one segment.
DELETED_TEXT = _(
    "Your Coder account {username} and its workspaces have been deleted. "
    "Thank you for taking part, and happy coding!"
)
TEST_TEXT = _('Test message from classroom-sms for "{phrase}". No reply needed.')

# Replies to a student's text, sent in the webhook's TwiML answer: one GSM-7 segment each (at
# most 160 characters, no emoji, no curly quotes). inbound.handle_inbound renders them in the
# language of the session the text is about; with no session known, in the default language.
WRONG_PHRASE_REPLY = _(
    "Sorry, we didn't recognise that. Check the phrase your instructor gave you and text it "
    "again exactly as shown."
)
NOT_OPEN_REPLY = _("Enrollment for this class opens {opens}. Please text the phrase again then.")
CLOSED_REPLY = _(
    "Sorry, enrollment for this class has closed. Please ask your instructor for help."
)
ENDED_REPLY = _("Sorry, this class session has ended. Please ask your instructor for help.")
FULL_REPLY = _("Sorry, this class is full. Please ask your instructor for help.")
ON_THE_WAY_REPLY = _("You're already signed up. Your login details are on the way by SMS.")
FAILED_REPLY = _(
    "Sorry, we could not create your account. Please ask your instructor, who can retry it."
)
BEING_DELETED_REPLY = _(
    "Your account for this class is being deleted. Text the phrase again in a few minutes "
    "to get a new one."
)
RESEND_LIMITED_REPLY = _(
    "You have asked for new login details too often. Please wait up to an hour and try again."
)
NO_ACCOUNT_REPLY = _(
    "You have no class account yet. Text the phrase your instructor gave you to join."
)
DONE_REPLY = _("OK, your class account is being deleted now. Thanks for taking part!")
NOTHING_TO_DELETE_REPLY = _("You have no class account to delete.")

# Translators: how an expiry reads in an SMS, as a Django date format
# (https://docs.djangoproject.com/en/5.2/ref/templates/builtins/#date): D weekday, M or b
# month, j day, H:i time, T time zone. Day and month names come from Django's own catalogue:
# leave out any that are not GSM-7 (Spanish "sáb" would make Saturday's SMS UCS-2).
EXPIRY_FORMAT = pgettext_lazy("SMS date format", "D M j H:i T")


def language_of(session: Session | None) -> str:
    """Return the language of a session's SMS (DEFAULT_STUDENT_LANGUAGE without a session)."""
    return student_language(session.language if session is not None else None)


def student_language(code: str | None) -> str:
    """Return a session's stored language code if it is offered, else DEFAULT_STUDENT_LANGUAGE
    (no session known, or a language since removed from STUDENT_LANGUAGES, which has no
    catalogue any more)."""
    if code and code in dict(settings.STUDENT_LANGUAGES):
        return code
    return str(settings.DEFAULT_STUDENT_LANGUAGE)


def speaking(session: Session | None) -> AbstractContextManager[None]:
    """Render texts, dates included, in the session's language within this block."""
    return translation.override(language_of(session))


def in_language(text: StrOrPromise, session: Session | None) -> str:
    """Return a fixed text (a reply) in the language of the session (the default without one)."""
    with speaking(session):
        return str(text)


def in_language_code(text: StrOrPromise, code: str | None) -> str:
    """Return a fixed text in a language given by its code, as a session stores it (the
    webhook reads the code with the rest of a text's state, not the Session); the default
    language for None or a code no longer offered."""
    with translation.override(student_language(code)):
        return str(text)


def is_gsm7(text: str) -> bool:
    """Say whether the text can be sent in the GSM-7 alphabet."""
    return all(c in GSM7_BASIC or c in GSM7_EXTENDED for c in text)


def outside_gsm7(text: str) -> list[str]:
    """List the characters that make the text UCS-2, each once, in order of appearance."""
    return list(dict.fromkeys(c for c in text if c not in GSM7_BASIC and c not in GSM7_EXTENDED))


def segments(text: str) -> int:
    """Count the SMS segments the text needs, as carriers split it."""
    if is_gsm7(text):
        return _count_parts([2 if c in GSM7_EXTENDED else 1 for c in text], GSM7_SINGLE, GSM7_PART)
    # UCS-2 counts UTF-16 code units; a surrogate pair is never split across segments.
    return _count_parts([len(c.encode("utf-16-le")) // 2 for c in text], UCS2_SINGLE, UCS2_PART)


def _count_parts(units: list[int], single: int, part: int) -> int:
    if sum(units) <= single:
        return 1
    count, used = 1, 0
    for size in units:
        if used + size > part:
            count, used = count + 1, 0
        used += size
    return count


def format_expiry(moment: datetime, time_zone: str) -> str:
    """Format an expiry compactly in the session's time zone and the active language, e.g.
    "Tue Mar 5 14:30 EST" (English), "5 mar 14:30 EST" (Spanish)."""
    try:
        zone = zoneinfo.ZoneInfo(time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = zoneinfo.ZoneInfo(settings.TIME_ZONE)
    # Django's formatter, not strftime: it names days and months in the active language, and
    # does not depend on the process's C locale.
    return dateformat.format(moment.astimezone(zone), str(EXPIRY_FORMAT))


def coder_url() -> str:
    return str(settings.CODER_URL)


def _fill(template: StrOrPromise, values: dict[str, str]) -> str:
    # str() renders a lazy default in the active language (the caller's `speaking`).
    return str(template).format_map(values)


def _first_fitting(templates: Sequence[StrOrPromise], values: dict[str, str]) -> str:
    """Fill the fullest template that fits one segment, else the last (tersest) one."""
    for template in templates:
        text = _fill(template, values)
        if segments(text) == 1:
            return text
    return _fill(templates[-1], values)


def _render(
    override: str,
    allowed: tuple[str, ...],
    defaults: Sequence[StrOrPromise],
    values: dict[str, str],
    required: tuple[str, ...] = (),
) -> str:
    """Fill a session's override when it is valid, else the best-fitting default.

    A stored override can predate a rule (one written with {username} before Coder's email
    login was understood): such a text would leave students stuck, so the default goes out.
    """
    if override.strip() and not override_problems(override, allowed, required):
        return _fill(override.strip(), values)
    return _first_fitting(defaults, values)


def _account_values(account: Account) -> dict[str, str]:
    return {
        "url": coder_url(),
        "email": account.login_email,
        "username": account.coder_username,
        "expires": format_expiry(account.expires_at, account.session.time_zone),
    }


def credentials_text(account: Account, password: str) -> str:
    """Return the first SMS a student gets: Coder URL, login email, password, expiry."""
    with speaking(account.session):
        values = {**_account_values(account), "password": password}
        override = account.session.credentials_message
        return _render(
            override, CREDENTIALS_PLACEHOLDERS, CREDENTIALS_DEFAULTS, values, CREDENTIALS_REQUIRED
        )


def resend_text(account: Account, password: str) -> str:
    """Return the SMS carrying a new password (repeat text, RESEND, admin action, recovery)."""
    with speaking(account.session):
        values = {**_account_values(account), "password": password}
        override = account.session.credentials_message
        return _render(
            override, CREDENTIALS_PLACEHOLDERS, RESEND_DEFAULTS, values, CREDENTIALS_REQUIRED
        )


def failure_text(account: Account) -> str:
    """Return the SMS telling a student their account could not be created."""
    return in_language(FAILURE_TEXT, account.session)


def minutes_left(account: Account, now: datetime | None = None) -> int:
    seconds = (account.expires_at - (now or timezone.now())).total_seconds()
    return max(1, math.ceil(seconds / 60))


def warning_text(account: Account, now: datetime | None = None) -> str:
    """Return the SMS warning a student that their account is about to be deleted."""
    with speaking(account.session):
        values = {**_account_values(account), "minutes": str(minutes_left(account, now))}
        override = account.session.warning_message
        return _render(override, WARNING_PLACEHOLDERS, WARNING_DEFAULTS, values)


def ended_before_ready_text(account: Account) -> str:
    """Return the SMS for a student whose session ended before their account was ready."""
    return in_language(ENDED_BEFORE_READY_TEXT, account.session)


def deleted_text(account: Account) -> str:
    """Return the SMS confirming that a student's account is gone."""
    with speaking(account.session):
        return _fill(DELETED_TEXT, {"username": account.coder_username or "account"})


def test_text(session: Session) -> str:
    """Return the test SMS an instructor sends from the session page."""
    with speaking(session):
        return _fill(TEST_TEXT, {"phrase": session.phrase})


def not_open_reply(session: Session) -> str:
    """Return the reply to a phrase texted before its session opens, saying when it does."""
    with speaking(session):
        opens = format_expiry(session.opens_at, session.time_zone)
        return _fill(NOT_OPEN_REPLY, {"opens": opens})


def _describe(names: tuple[str, ...]) -> str:
    return ", ".join("{" + name + "}" for name in names)


def placeholder_problems(template: str, allowed: tuple[str, ...]) -> list[str]:
    """List what is wrong with the placeholders of an override (empty when it is fine)."""
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError:
        return ['Unmatched "{" or "}". Write {{ or }} for a literal brace.']
    problems = []
    for name, spec, conversion in fields:
        if name == "":
            problems.append("Empty placeholder {}. Write {{}} for literal braces.")
        elif name not in allowed and not spec and not conversion and name.isidentifier():
            problems.append(f"Unknown placeholder {{{name}}}. Use only {_describe(allowed)}.")
        elif name not in allowed or spec or conversion:
            problems.append(
                f"Placeholders take no attributes, indexes or formats: {{{name}}} is not "
                f"allowed. Use only {_describe(allowed)}."
            )
    return list(dict.fromkeys(problems))


def _sample(allowed: tuple[str, ...]) -> dict[str, str]:
    sample = {
        "url": coder_url() or "https://coder.example.edu",
        "username": "cs-" + "x" * 6,
        "email": credentials.email_for("cs-" + "x" * 6),
        "password": "xxxx-xxxx-xxxx",
        "expires": "Wed Sep 30 23:59 AEST",
        "minutes": "999",
    }
    return {name: sample[name] for name in allowed}


def override_problems(
    template: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()
) -> list[str]:
    """List what is wrong with an override text: placeholders, required ones, length."""
    if not template.strip():
        return []
    problems = placeholder_problems(template, allowed)
    if problems:
        return problems
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    missing = [name for name in required if name not in names]
    if "email" in missing and "username" in names:
        problems.append(
            "Coder's login form asks for the email address, not the username: the message "
            "must contain {email}, or students cannot log in."
        )
        missing.remove("email")
    if missing:
        problems.append(
            f"The message must contain {_describe(tuple(missing))}, or students cannot log in."
        )
    if len(_fill(template.strip(), _sample(allowed))) > MAX_BODY_LENGTH:
        problems.append(f"The message is too long: at most {MAX_BODY_LENGTH} characters filled in.")
    return problems


def session_override_errors(session: Session) -> dict[str, list[str]]:
    """Return the override problems of a session by field, for Session.clean()."""
    checks = {
        "credentials_message": override_problems(
            session.credentials_message or "", CREDENTIALS_PLACEHOLDERS, CREDENTIALS_REQUIRED
        ),
        "warning_message": override_problems(session.warning_message or "", WARNING_PLACEHOLDERS),
    }
    return {field: problems for field, problems in checks.items() if problems}


def validate_session_overrides(session: Session) -> None:
    """Raise ValidationError naming each override field whose text is unusable."""
    errors = session_override_errors(session)
    if errors:
        raise ValidationError(errors)


# Sent to every student when an instructor extends the session, so that no SMS a student keeps
# states an expiry that is no longer true. Fullest first; the first that fits one segment goes.
NEW_EXPIRY_DEFAULTS: tuple[StrOrPromise, ...] = (
    _(
        "Good news: your instructor extended the class. Your Coder account {username} now "
        "expires {expires}."
    ),
    _("Your Coder account now expires {expires}."),
)


def new_expiry_text(account: Account) -> str:
    """Return the SMS telling a student the new expiry of their account, after an extension."""
    with speaking(account.session):
        return _first_fitting(NEW_EXPIRY_DEFAULTS, _account_values(account))


# Sent once to a student still waiting because Coder is in trouble; provisioning keeps trying.
DELAYED_TEXT = _(
    "Your Coder account is taking longer than usual to set up. Your login details will "
    "come by SMS as soon as it is ready."
)


def delayed_text(account: Account) -> str:
    """Return the SMS telling a student their account is delayed and will come by SMS."""
    return in_language(DELAYED_TEXT, account.session)
