"""The SMS transport: a small interface, and Twilio's REST API as its one implementation.

The outbox (`sms`) and the probe (`probes`) call a `SmsTransport` and hear back outcomes: a
`SentMessage`, or a `TransportError` whose `Failure` says what went wrong (opted out, bad
number, our credentials rejected, worth retrying). Twilio's status and error codes are read
here, in `_failure`, and nowhere else.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import importlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import requests
from django.conf import settings
from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from registrations import outbound_http
from registrations.checks import missing_twilio_settings
from registrations.phones import mask_phone

TWILIO_API = "https://api.twilio.com"

# Twilio error codes (https://www.twilio.com/docs/api/errors).
OPTED_OUT_CODE = 21610
BAD_NUMBER_CODES = frozenset({21211, 21614})
# 20003: our account sid or auth token is wrong (https://www.twilio.com/docs/errors/20003).
AUTH_FAILED_CODE = 20003
CREDENTIALS_ADVICE = (
    "Twilio rejects our credentials: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN."
)

_LONG_NUMBER = re.compile(r"\+?\d[\d ()-]{6,}\d")
# What a Twilio message sid can be (it is stored in a 64-character column).
_TWILIO_SID = re.compile(r"[A-Za-z0-9]{2,64}")
# Twilio's error codes are small positive numbers; anything else is junk, and would not fit
# the 32-bit integer column the outbox stores codes in.
_MAX_ERROR_CODE = 2**31 - 1


class Failure(enum.Enum):
    """Why the transport did not take a message, as much as a caller needs to know."""

    # The recipient opted out (texted STOP): never send to them again.
    OPTED_OUT = "opted_out"
    # Not a number that can receive an SMS: the same request fails again.
    BAD_NUMBER = "bad_number"
    # Our account sid or auth token is wrong: a configuration problem, not the message's.
    CREDENTIALS_REJECTED = "credentials_rejected"
    # Rate limited, or an outage on the provider's side: the same request may work later.
    BUSY = "busy"
    # No answer at all: a network error ...
    UNREACHABLE = "unreachable"
    # ... or the provider took longer than our timeout.
    TIMED_OUT = "timed_out"
    # Settings are missing: nothing was sent, and may be once they are set.
    NOT_CONFIGURED = "not_configured"
    # Any other refusal: the same request fails again.
    REFUSED = "refused"


_RETRYABLE = frozenset(
    {Failure.BUSY, Failure.UNREACHABLE, Failure.TIMED_OUT, Failure.NOT_CONFIGURED}
)


class TransportError(Exception):
    """A send or a check that did not go through; `message` may be stored and shown."""

    def __init__(
        self,
        kind: Failure,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        cause: str = "",
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        # The provider's HTTP status, or None when it never answered.
        self.status = status
        # The provider's error code, for the record; callers decide on `kind`.
        self.code = code
        # The name of the exception underneath, e.g. "ReadTimeout".
        self.cause = cause

    @property
    def answered(self) -> bool:
        return self.status is not None

    @property
    def opted_out(self) -> bool:
        return self.kind is Failure.OPTED_OUT

    @property
    def credentials_rejected(self) -> bool:
        return self.kind is Failure.CREDENTIALS_REJECTED

    @property
    def retryable(self) -> bool:
        return self.kind in _RETRYABLE


@dataclass(frozen=True)
class SentMessage:
    """The provider accepted a message: its id there, and the status it answered with."""

    sid: str
    status: str


@dataclass(frozen=True)
class AccountState:
    """What the provider says of our account once it has accepted our credentials."""

    status: str

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True)
class StatusReport:
    """One delivery status callback, read: the new status, the message's id, any error."""

    status: str
    sid: str
    error_code: int | None
    opted_out: bool


class SmsTransport(Protocol):
    """What the outbox and the probe need from an SMS provider."""

    def send(
        self,
        *,
        to: str,
        body: str,
        from_: str,
        messaging_service_sid: str,
        status_callback: str | None,
    ) -> SentMessage:
        """Hand one SMS to the provider; raise TransportError when it does not take it."""
        ...

    def check_credentials(self) -> AccountState:
        """Ask the provider whether it accepts our credentials; raise TransportError if not."""
        ...

    def read_status_callback(self, params: Mapping[str, Any]) -> StatusReport | None:
        """Read a delivery status callback's fields; None when they are not well formed."""
        ...


# twilio ships no type information, so mypy sees its classes as Any.
class TimeoutHttpClient(TwilioHttpClient):  # type: ignore[misc]
    """Twilio's HTTP client with a timeout, optionally pointed at a fake server."""

    def __init__(self, timeout: float, base_url: str = "") -> None:
        super().__init__(timeout=timeout)
        self.base_url = base_url
        outbound_http.settle_environment(self.session, base_url or TWILIO_API)

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if self.base_url and url.startswith(TWILIO_API):
            url = self.base_url + url[len(TWILIO_API) :]
        return super().request(method, url, *args, **kwargs)


def preload() -> None:
    """Import what the first SMS would: twilio-python loads its REST API on first use.

    About a hundred modules, some 80 ms of CPU; a worker does it as it starts, so that a class
    burst meets warm workers instead of every worker importing at once.
    """
    importlib.import_module("twilio.rest.api.v2010.account.message")


@functools.lru_cache(maxsize=4)
def _client(account_sid: str, auth_token: str, timeout: float, base_url: str) -> Client:
    return Client(
        account_sid, auth_token, http_client=TimeoutHttpClient(timeout=timeout, base_url=base_url)
    )


def get_client() -> Client:
    """Return this process's Twilio client for the current settings."""
    return _client(
        settings.TWILIO_ACCOUNT_SID,
        settings.TWILIO_AUTH_TOKEN,
        settings.TWILIO_TIMEOUT,
        settings.TWILIO_API_BASE_URL,
    )


class TwilioTransport:
    """Twilio's Programmable Messaging REST API, with the client `get_client` builds."""

    def send(
        self,
        *,
        to: str,
        body: str,
        from_: str,
        messaging_service_sid: str,
        status_callback: str | None,
    ) -> SentMessage:
        """Create a Message (POST /2010-04-01/Accounts/{sid}/Messages.json)."""
        if missing := missing_twilio_settings():
            raise TransportError(
                Failure.NOT_CONFIGURED, f"Twilio is not configured: {', '.join(missing)}."
            )
        params = {"to": to, "body": body}
        # A messaging service picks the sender from its own pool: no From alongside it.
        if messaging_service_sid:
            params["messaging_service_sid"] = messaging_service_sid
        else:
            params["from_"] = from_
        if status_callback:
            params["status_callback"] = status_callback
        with _translated_errors():
            created = get_client().messages.create(**params)
        return SentMessage(sid=created.sid, status=created.status or "")

    def check_credentials(self) -> AccountState:
        """Fetch our Account resource (GET /2010-04-01/Accounts/{sid}.json)."""
        with _translated_errors():
            # The cheapest authenticated call. Its answer carries the auth token: read only
            # the status.
            account = get_client().api.v2010.accounts(settings.TWILIO_ACCOUNT_SID).fetch()
        return AccountState(status=account.status)

    def read_status_callback(self, params: Mapping[str, Any]) -> StatusReport | None:
        """Read Twilio's status callback form; None when its MessageSid is malformed."""
        sid = params.get("MessageSid") or params.get("SmsSid") or ""
        if sid and not _TWILIO_SID.fullmatch(sid):
            return None
        code = _error_code(params.get("ErrorCode"))
        return StatusReport(
            status=str(params.get("MessageStatus") or params.get("SmsStatus") or "").lower(),
            sid=sid,
            error_code=code,
            opted_out=_failure(None, code) is Failure.OPTED_OUT,
        )


def get_transport() -> SmsTransport:
    """Return the SMS transport for the current settings."""
    return TwilioTransport()


@contextlib.contextmanager
def _translated_errors() -> Iterator[None]:
    """Turn whatever the twilio library or the network raises into one TransportError."""
    try:
        yield
    except TwilioException as exc:
        raise _answered_error(exc) from exc
    except requests.RequestException as exc:
        kind = Failure.TIMED_OUT if isinstance(exc, requests.Timeout) else Failure.UNREACHABLE
        name = type(exc).__name__
        raise TransportError(kind, f"Network error talking to Twilio: {name}.", cause=name) from exc


def _answered_error(exc: TwilioException) -> TransportError:
    # A TwilioRestException carries Twilio's answer; the library's own errors carry neither.
    status = getattr(exc, "status", None)
    status = status if isinstance(status, int) else None
    code = getattr(exc, "code", None)
    code = code if isinstance(code, int) else None
    kind = _failure(status, code)
    if kind is Failure.CREDENTIALS_REJECTED:
        text = CREDENTIALS_ADVICE
    else:
        said = getattr(exc, "msg", "") or getattr(exc, "title", "") or type(exc).__name__
        text = _scrub(str(said))
    return TransportError(kind, text, status=status, code=code, cause=type(exc).__name__)


def _failure(status: int | None, code: int | None) -> Failure:
    """Decide what a Twilio error answer means: the one place its codes are read."""
    if code == OPTED_OUT_CODE:
        return Failure.OPTED_OUT
    # A 403 with another code (e.g. 21408, region not enabled) is about the message, not us.
    if status == 401 or code == AUTH_FAILED_CODE:
        return Failure.CREDENTIALS_REJECTED
    if status is not None and (status == 429 or status >= 500):
        return Failure.BUSY
    if code in BAD_NUMBER_CODES:
        return Failure.BAD_NUMBER
    return Failure.REFUSED


def _scrub(text: str) -> str:
    """Mask anything that looks like a phone number (Twilio echoes the To number in errors)."""
    return _LONG_NUMBER.sub(lambda m: mask_phone(m.group(0)), text)


def _error_code(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 <= number <= _MAX_ERROR_CODE else None
