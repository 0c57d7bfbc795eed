"""Error reporting to Sentry, with phone numbers, SMS bodies and secrets scrubbed first.

Every event and transaction passes through `RequestScrubber` (before Sentry serialises it,
while the whole request is at hand) and then `scrub_event` (Sentry's before_send); every
breadcrumb through `scrub_breadcrumb`. Together they remove:

- phone numbers: E.164 (`+14155550123`, `%2B1...` in a URL) and other runs of 7-15 digits
  that look like one (`(415) 555-0123`, `415.555.0123`); ISO dates and times are kept;
- SMS bodies: the whole request data of the Twilio webhooks (and every value of it, wherever
  else in the event it shows up: an exception message, a local variable), and any field or
  `key=value` named like a body, text, phone or sender;
- secrets: any field or `key=value` named like a password, secret, token, authorization,
  cookie or signature; Coder session tokens, our password format (`k7pw-m3rt-q9zx`), bearer
  credentials, 32-hex-digit tokens (Twilio's auth token) and passwords in URLs.

A value sent under a sensitive name (a form's `password`, a local `body`) is also removed
wherever else it appears in the event, such as an exception message that echoes it. Scrubbing
is by shape and by name, so it also removes harmless look-alikes (a 10-digit id, a hex
digest): an error report missing a number is better than one holding a phone. This module
imports nothing of the app but `phrases`, because settings.py loads it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import sentry_sdk
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.logging import ignore_logger
from sentry_sdk.scrubber import EventScrubber

from registrations.phrases import normalize_phrase

if TYPE_CHECKING:
    from sentry_sdk._types import Event, Hint

FILTERED = "[Filtered]"

# Paths whose requests are Twilio's: their form is a student's text, number and whereabouts.
TWILIO_PATH_PREFIX = "/twilio/"
# Fields of a Twilio request that identify nothing and help debugging; every other value of
# the request is removed wherever it appears in the event.
_TWILIO_HARMLESS_FIELDS = frozenset(
    {
        "MessageSid",
        "SmsMessageSid",
        "SmsSid",
        "AccountSid",
        "MessagingServiceSid",
        "ApiVersion",
        "NumMedia",
        "NumSegments",
        "SmsStatus",
        "MessageStatus",
        "ErrorCode",
    }
)
# Shorter values (a "1", a country code) would blank out unrelated text everywhere, and so
# would the reprs of flags; digits alone are phones (removed by shape) or counts.
_MIN_HARVESTED_LENGTH = 4
_NOT_WORTH_HUNTING = frozenset({"True", "False", "None"})

# Names of fields, headers, local variables and `key=value` pairs whose value is dropped.
_SENSITIVE_NAME = re.compile(
    r"pass|pwd|secret|token|authoriz|cookie|csrf|signature|api_?key|dsn|credential|sessionid"
    r"|body|phone|from|^to$|to_number|^text$|^sms$",
    re.IGNORECASE,
)
# Keys of the event's own structure (ids, times, source code) that hold no user data and
# whose digit runs must survive (an event id, a line of our code).
_STRUCTURAL_KEYS = frozenset(
    {
        "event_id",
        "trace_id",
        "span_id",
        "parent_span_id",
        "timestamp",
        "start_timestamp",
        "release",
        "environment",
        "platform",
        "level",
        "sdk",
        "modules",
        "abs_path",
        "filename",
        "module",
        "function",
        "pre_context",
        "context_line",
        "post_context",
        "lineno",
        "in_app",
    }
)

# A `name=value` or `"name": "value"` inside a string (a repr, a query string, a log line).
# A value in a list (`'Body': ['hi']`, a QueryDict's repr) counts as the key's value too.
_KEY_VALUE = re.compile(
    r"""(?P<key>\b[A-Za-z_][\w-]*)(?P<sep>['"]?\s*[=:]\s*\[?)"""
    r"""(?:(?P<q>['"])(?:(?!(?P=q)).)*(?P=q)|[^\s&,;(){}\[\]'"]+)"""
)
_URL_USERINFO = re.compile(r"(?<=://)[^/\s:@]+:[^/\s@]+@")
_BEARER = re.compile(r"\b(bearer|basic|token)\s+[^\s'\",]+", re.IGNORECASE)
# Coder session token: a 10-character id, a dash, a 22-character secret.
_CODER_TOKEN = re.compile(r"(?<![\w-])[A-Za-z0-9]{10}-[A-Za-z0-9]{22}(?![\w-])")
# Our temporary password: three groups of four (registrations.credentials), any case.
_PASSWORD = re.compile(r"(?<![\w-])[A-Za-z0-9]{4}-[A-Za-z0-9]{4}-[A-Za-z0-9]{4}(?![\w-])")
_HEX_TOKEN = re.compile(r"(?<![\w-])[0-9a-fA-F]{32}(?![\w-])")
# Dates are matched first so that `2026-11-30 02:25` is never mistaken for a phone number.
_DATE = r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
_DIGITS = r"\d(?:[ .()\-]{0,3}\d){6,14}"
_PHONE_OR_DATE = re.compile(
    rf"(?P<date>(?<![\w.\-]){_DATE})"
    rf"|(?:\+|%2[Bb])\(?{_DIGITS}(?!\d)"
    rf"|(?<![\w.\-/])\(?{_DIGITS}(?![\w])"
)


# Values noted by RequestScrubber (which sees the whole request) for scrub_event to remove:
# Sentry runs both for one event in one go, in the thread that captured it.
_noted: ContextVar[tuple[str, ...]] = ContextVar("error_reporting_noted", default=())


class RequestScrubber(EventScrubber):
    """Sentry's own scrubber, run before the event is serialised and trimmed to ten fields.

    The one moment the whole request is at hand: it empties a Twilio webhook's data and notes
    every value sent under a sensitive name (a password typed into a form, the token of an
    Authorization header), so that scrub_event removes them wherever else they show up.
    """

    def scrub_event(self, event: Event) -> None:
        _noted.set(tuple(_take_request_values(event)))
        super().scrub_event(event)


def scrub_event(event: Event, hint: Hint) -> Event:
    """Remove phones, SMS bodies and secrets from an event (Sentry's before_send)."""
    noted = _noted.get() + tuple(_take_request_values(event)) + tuple(_named_values(event))
    _noted.set(())
    return cast("Event", _scrub_mapping(cast(dict[str, Any], event), _literal_scrubber(noted)))


def scrub_breadcrumb(crumb: dict[str, Any], hint: Hint) -> dict[str, Any]:
    """Remove phones, SMS bodies and secrets from a breadcrumb (Sentry's before_breadcrumb)."""
    return _scrub_mapping(crumb, _literal_scrubber(_named_values(crumb)))


def scrub_text(text: str) -> str:
    """Remove phone numbers, passwords and tokens from one string."""
    text = _URL_USERINFO.sub(FILTERED + "@", text)
    # Before key=value: in `Authorization: Bearer x` the value is two words.
    text = _BEARER.sub(lambda m: f"{m.group(1)} {FILTERED}", text)
    text = _KEY_VALUE.sub(_filter_sensitive_value, text)
    for shape in (_CODER_TOKEN, _PASSWORD, _HEX_TOKEN):
        text = shape.sub(FILTERED, text)
    return _PHONE_OR_DATE.sub(lambda m: m.group("date") or FILTERED, text)


def is_sensitive_name(name: str) -> bool:
    return bool(_SENSITIVE_NAME.search(name))


def _filter_sensitive_value(match: re.Match[str]) -> str:
    if not is_sensitive_name(match.group("key")):
        return match.group(0)
    quote = match.group("q") or ""
    return f"{match.group('key')}{match.group('sep')}{quote}{FILTERED}{quote}"


def _is_twilio(event: Event, request: dict[str, Any]) -> bool:
    # The URL is missing when the request did not come through the WSGI handler (tests); the
    # transaction (the URL pattern) or Twilio's own fields still tell.
    path = urlsplit(str(request.get("url") or "")).path
    transaction = str(event.get("transaction") or "")
    data = request.get("data")
    fields = set(data) if isinstance(data, Mapping) else set()
    return (
        path.startswith(TWILIO_PATH_PREFIX)
        or transaction.startswith(TWILIO_PATH_PREFIX)
        or bool(fields & {"AccountSid", "MessageSid", "SmsSid"})
    )


def _take_request_values(event: Event) -> list[str]:
    """Empty a Twilio webhook's request data in place; return the request's values to remove."""
    request = event.get("request")
    if not isinstance(request, dict):
        return []
    twilio = _is_twilio(event, request)
    found: list[str] = []
    for name, value in _fields(request.get("data")):
        if (twilio and name not in _TWILIO_HARMLESS_FIELDS) or is_sensitive_name(name):
            # The webhook matches a text case- and space-insensitively: locals hold that too.
            found += [value, normalize_phrase(value)]
    for name, value in _fields(request.get("headers")) + _fields(request.get("cookies")):
        if is_sensitive_name(name):
            found += [value, value.split(" ", 1)[-1]]  # the token of "Bearer <token>"
    if twilio:
        for key in ("data", "query_string", "cookies"):
            request.pop(key, None)
    return found


def _fields(data: Any) -> list[tuple[str, str]]:
    """Every (name, text) of a mapping; all values of a QueryDict field, not just the last."""
    if not isinstance(data, Mapping):
        return []
    found: list[tuple[str, str]] = []
    for name in data:
        values = data.getlist(name) if hasattr(data, "getlist") else data[name]
        for value in values if isinstance(values, list) else [values]:
            if isinstance(value, str):
                found.append((str(name), value.strip()))
    return found


def _named_values(obj: Any) -> list[str]:
    """Every text held under a sensitive name anywhere in obj (a local `body`, an `extra`)."""
    found: list[str] = []
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if isinstance(value, str) and is_sensitive_name(str(key)):
                found.append(value.strip().strip("'\""))
            elif key not in _STRUCTURAL_KEYS:
                found += _named_values(value)
    elif isinstance(obj, list | tuple):
        for item in obj:
            found += _named_values(item)
    return found


def _literal_scrubber(literals: Iterable[str]) -> Callable[[str], str]:
    """Return a string scrubber that also removes these exact texts (any case)."""
    words = sorted({w for w in literals if _worth_hunting(w)}, key=len, reverse=True)
    pattern = re.compile("|".join(map(re.escape, words)), re.IGNORECASE) if words else None

    def scrub(text: str) -> str:
        if pattern is not None:
            text = pattern.sub(FILTERED, text)
        return scrub_text(text)

    return scrub


def _worth_hunting(text: str) -> bool:
    return (
        len(text) >= _MIN_HARVESTED_LENGTH
        and text not in _NOT_WORTH_HUNTING
        and text != FILTERED
        and not text.isdigit()
    )


def _scrub_mapping(mapping: dict[str, Any], scrub: Callable[[str], str]) -> dict[str, Any]:
    for key, value in list(mapping.items()):
        if key in _STRUCTURAL_KEYS:
            continue
        if is_sensitive_name(str(key)) and value not in (None, "", [], {}):
            mapping[key] = FILTERED
        else:
            mapping[key] = _scrub_value(value, scrub)
    return mapping


def _scrub_value(value: Any, scrub: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return _scrub_mapping(value, scrub)
    if isinstance(value, list | tuple):
        return [_scrub_value(item, scrub) for item in value]
    return value


def init_sentry(
    dsn: str,
    *,
    environment: str,
    release: str = "",
    traces_sample_rate: float = 0.0,
    include_local_variables: bool = False,
    transport: Any = None,
) -> None:
    """Start reporting errors of this process (web or worker) to Sentry, scrubbed."""
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release or None,
        integrations=[DjangoIntegration()],
        # send_default_pii stays off: no user ids, IP addresses or cookies are attached.
        include_local_variables=include_local_variables,
        traces_sample_rate=traces_sample_rate,
        event_scrubber=RequestScrubber(),
        before_send=scrub_event,
        before_send_transaction=scrub_event,
        before_breadcrumb=scrub_breadcrumb,
        transport=transport,
    )
    # Scanners send bad Host headers all day; each would otherwise be an "error".
    ignore_logger("django.security.DisallowedHost")
