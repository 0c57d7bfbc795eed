"""A fake Twilio REST server: real HTTP on 127.0.0.1, the Messages resource and the Account.

Point the app at it with TWILIO_API_BASE_URL=<fake.url> and the fake's account sid and token.
It records every message, can fail or reject on demand, and can post signed status callbacks
the way Twilio does, so end-to-end tests exercise the real signature check.

    python -m tests.fakes.twilio --port 7090 --callbacks

For trying the app locally it can also show an inbox (`inbox=True`, on by default when run
standalone): `GET /inbox` lists every message sent, newest first, as a page that refreshes
itself, and `GET /inbox.json` as JSON. The inbox is a debugging page of this fake, not part of
Twilio's API: it sits outside Twilio's /2010-04-01/ routes, needs no credentials, and is never
recorded in `requests_log`. With `inbox=False` (the default in tests) those paths answer 404
like any unknown Twilio route, so the fake's API behaviour is the same either way.
"""

from __future__ import annotations

import argparse
import base64
import html
import math
import random
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs

import requests
from twilio.request_validator import RequestValidator

from tests.fakes import BaseFakeServer, FakeRequest, FakeResponse

DEFAULT_ACCOUNT_SID = "AC" + "f" * 32
DEFAULT_AUTH_TOKEN = "fake-twilio-auth-token"
API_VERSION = "2010-04-01"

ERROR_MESSAGES = {
    20003: "Authenticate",
    20404: "The requested resource was not found",
    20429: "Too Many Requests",
    20500: "Internal Server Error",
    20503: "Service Unavailable",
    21211: "Invalid 'To' Phone Number",
    21602: "Message body is required.",
    21603: "A 'From' phone number is required.",
    21604: "A 'To' phone number is required.",
    21610: "Attempt to send to unsubscribed recipient",
    21614: "'To' number is not a valid mobile number",
    21617: "The concatenated message body exceeds the 1600 character limit.",
}
_E164 = re.compile(r"\+[1-9]\d{6,14}")
_GSM_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = set("^{}\\[~]|€\f")


def segments(body: str) -> int:
    """SMS segments Twilio bills for this body (GSM-7 when possible, else UCS-2)."""
    if all(c in _GSM_BASIC or c in _GSM_EXTENDED for c in body):
        septets = sum(2 if c in _GSM_EXTENDED else 1 for c in body)
        return 1 if septets <= 160 else math.ceil(septets / 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)


def _rfc2822(value: datetime) -> str:
    return format_datetime(value)


def _twilio_error(status: int, code: int, message: str | None = None) -> FakeResponse:
    return FakeResponse(
        status,
        {
            "code": code,
            "message": message or ERROR_MESSAGES.get(code, "Error"),
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
    )


INBOX_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="3">
<title>Fake Twilio inbox ({count})</title>
<style>
  body {{ font-family: system-ui, sans-serif; margin: 2em; }}
  table {{ border-collapse: collapse; width: 100%; }}
  th, td {{ border-bottom: 1px solid #ddd; padding: .4em .6em; text-align: left;
           vertical-align: top; }}
  pre {{ margin: 0; white-space: pre-wrap; font-family: ui-monospace, monospace; }}
  .note {{ color: #555; }}
</style></head><body>
<h1>Fake Twilio inbox</h1>
<p class="note">Every SMS the app sent through this fake Twilio (account {account}), newest
first; this page refreshes itself. It is a debugging page of the fake, not part of Twilio's
API. As JSON: <a href="/inbox.json">/inbox.json</a>.</p>
<table id="inbox"><thead><tr><th>Time (UTC)</th><th>To</th><th>From</th><th>Status</th>
<th>Message</th></tr></thead><tbody>{rows}</tbody></table>
</body></html>
"""


def _inbox_row(message: dict[str, Any]) -> str:
    time_of_day = message["date_created"][11:19]
    cells = [time_of_day, message["to"], message["from"] or "", message["status"]]
    escaped = "".join(f"<td>{html.escape(str(cell))}</td>" for cell in cells)
    return f"<tr>{escaped}<td><pre>{html.escape(message['body'])}</pre></td></tr>"


@dataclass(frozen=True)
class _Callback:
    url: str
    params: dict[str, str]


class FakeTwilio(BaseFakeServer):
    """Twilio's Messages API in memory.

    Knobs: `latency`, `down`, `fail_next(n, status=429|500|503, ...)`, `reject_number(phone,
    code)`, `undeliverable_number(phone, code)`, `deliver_callbacks`, `callback_delay`,
    `callback_statuses`.
    """

    def __init__(
        self,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        deliver_callbacks: bool = False,
        callback_delay: float = 0.0,
        callback_statuses: tuple[str, ...] = ("sent", "delivered"),
        inbox: bool = False,
    ) -> None:
        super().__init__(host=host, port=port, latency=latency)
        self.inbox = inbox
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.deliver_callbacks = deliver_callbacks
        self.callback_delay = callback_delay
        self.callback_statuses = callback_statuses
        self._messages: list[dict[str, Any]] = []
        self._requests: list[tuple[str, str, dict[str, str]]] = []
        self._rejections: dict[str, int] = {}
        self._undeliverable: dict[str, int] = {}
        self._callback_log: list[dict[str, Any]] = []
        self._pending_callbacks = 0
        self._callbacks_done = threading.Condition(self._lock)
        self._random = random.Random()

    # Test helpers.

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Every accepted message, oldest first (copies)."""
        with self._lock:
            return [dict(m) for m in self._messages]

    def messages_to(self, phone: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["to"] == phone]

    @property
    def requests_log(self) -> list[tuple[str, str, dict[str, str]]]:
        """Every request received, accepted or not, as (method, path, form fields)."""
        with self._lock:
            return list(self._requests)

    @property
    def callbacks(self) -> list[dict[str, Any]]:
        """Status callbacks posted so far: url, params, and the app's status code (or error)."""
        with self._lock:
            return [dict(c) for c in self._callback_log]

    def reject_number(self, phone: str, code: int = 21610) -> None:
        """Answer 400 with this Twilio error code to every message sent to `phone`."""
        with self._lock:
            self._rejections[phone] = code

    def undeliverable_number(self, phone: str, code: int = 30003) -> None:
        """Accept messages to `phone`, then report them undelivered with this error code."""
        with self._lock:
            self._undeliverable[phone] = code

    def clear(self) -> None:
        with self._lock:
            self._messages.clear()
            self._requests.clear()
            self._callback_log.clear()

    def wait_for_callbacks(self, timeout: float = 5.0) -> bool:
        """Block until every queued status callback has been posted; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._callbacks_done:
            while self._pending_callbacks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._callbacks_done.wait(remaining)
        return True

    def send_inbound(
        self,
        url: str,
        from_: str,
        body: str,
        *,
        to: str = "+15005550006",
        signed_url: str | None = None,
        timeout: float = 10.0,
    ) -> requests.Response:
        """POST an incoming SMS webhook to the app, signed as Twilio signs it.

        `signed_url` is the public URL Twilio would have called (behind a proxy it differs from
        the URL actually posted to).
        """
        sid = self._sid("SM")
        params = {
            "ToCountry": "US",
            "ToState": "CA",
            "SmsMessageSid": sid,
            "NumMedia": "0",
            "ToCity": "",
            "FromZip": "",
            "SmsSid": sid,
            "FromState": "",
            "SmsStatus": "received",
            "FromCity": "",
            "Body": body,
            "FromCountry": "US",
            "To": to,
            "ToZip": "",
            "NumSegments": str(segments(body)),
            "MessageSid": sid,
            "AccountSid": self.account_sid,
            "From": from_,
            "ApiVersion": API_VERSION,
        }
        signature = self._signature(signed_url or url, params)
        return requests.post(
            url, data=params, headers={"X-Twilio-Signature": signature}, timeout=timeout
        )

    # HTTP.

    def received(self, request: FakeRequest) -> None:
        if self._is_inbox(request):
            return  # a person looking at the inbox, not a client of Twilio's API
        with self._lock:
            self._requests.append((request.method, request.path, self._form(request)))

    def dispatch(self, request: FakeRequest) -> FakeResponse:
        if self._is_inbox(request):
            return self._inbox(request)
        form = self._form(request)
        rule = self.take_failure(request.method, request.path)
        if rule is not None:
            code = {429: 20429, 503: 20503}.get(rule.status, 20500)
            response = _twilio_error(rule.status, code)
            if rule.retry_after is not None:
                response.headers["Retry-After"] = rule.retry_after
            return response
        if not self._authorized(request):
            return _twilio_error(401, 20003)
        account = re.fullmatch(rf"/{API_VERSION}/Accounts/(?P<sid>[^/]+)\.json", request.path)
        if account:
            return self._fetch_account(request, account["sid"])
        match = re.fullmatch(
            rf"/{API_VERSION}/Accounts/(?P<sid>[^/]+)/Messages(?:/(?P<msg>SM[0-9a-f]{{32}}))?"
            r"\.json",
            request.path,
        )
        if not match or match["sid"] != self.account_sid:
            return _twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        if match["msg"]:
            return self._fetch(request, match["msg"])
        if request.method != "POST":
            return _twilio_error(405, 20004, "Method not allowed")
        return self._create(form)

    # The inbox: a debugging page of this fake (see the module docstring), not a Twilio route.

    INBOX_PATHS = ("/", "/inbox", "/inbox.json")

    def _is_inbox(self, request: FakeRequest) -> bool:
        return self.inbox and request.method in ("GET", "HEAD") and request.path in self.INBOX_PATHS

    def inbox_messages(self) -> list[dict[str, Any]]:
        """Every message sent, newest first, as the inbox shows them."""
        return [
            {
                "sid": m["sid"],
                "to": m["to"],
                "from": m["from"] or m["messaging_service_sid"],
                "body": m["body"],
                "status": m["status"],
                "segments": m["num_segments"],
                "date_created": m["date_created"].isoformat(),
            }
            for m in reversed(self.messages)
        ]

    def _inbox(self, request: FakeRequest) -> FakeResponse:
        messages = self.inbox_messages()
        if request.path == "/inbox.json":
            return FakeResponse(200, {"messages": messages})
        if request.path == "/":
            return FakeResponse(302, None, {"Location": "/inbox"})
        rows = "".join(_inbox_row(m) for m in messages)
        page = INBOX_PAGE.format(
            count=len(messages),
            rows=rows or '<tr><td colspan="5">Nothing sent yet.</td></tr>',
            account=html.escape(self.account_sid),
        )
        return FakeResponse(200, page.encode(), {"Content-Type": "text/html; charset=utf-8"})

    @staticmethod
    def _form(request: FakeRequest) -> dict[str, str]:
        fields = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        return {key: values[-1] for key, values in fields.items()}

    def _authorized(self, request: FakeRequest) -> bool:
        header = request.header("Authorization")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return user == self.account_sid and password == self.auth_token

    def _fetch_account(self, request: FakeRequest, sid: str) -> FakeResponse:
        """Fetch the Account resource, as Twilio's docs describe it:
        https://www.twilio.com/docs/iam/api/account#fetch-an-account-resource
        (wrong credentials never get here: 401 with error 20003, as for every resource).
        """
        if request.method != "GET":
            return _twilio_error(405, 20004, "Method not allowed")
        if sid != self.account_sid:
            return _twilio_error(404, 20404, f"The requested resource {request.path} was not found")
        uri = f"/{API_VERSION}/Accounts/{sid}"
        now = _rfc2822(datetime.now(UTC))
        return FakeResponse(
            200,
            {
                "auth_token": self.auth_token,
                "date_created": now,
                "date_updated": now,
                "friendly_name": "Fake Twilio account",
                "owner_account_sid": sid,
                "sid": sid,
                "status": "active",
                "subresource_uris": {"messages": uri + "/Messages.json"},
                "type": "Full",
                "uri": uri + ".json",
            },
        )

    def _fetch(self, request: FakeRequest, sid: str) -> FakeResponse:
        if request.method != "GET":
            return _twilio_error(405, 20004, "Method not allowed")
        with self._lock:
            message = next((m for m in self._messages if m["sid"] == sid), None)
            if message is None:
                return _twilio_error(
                    404, 20404, f"The requested resource {request.path} was not found"
                )
            return FakeResponse(200, self._message_json(message))

    def _create(self, form: dict[str, str]) -> FakeResponse:
        problem = self._validate(form)
        if problem is not None:
            return problem
        now = datetime.now(UTC)
        via_service = not form.get("From") and bool(form.get("MessagingServiceSid"))
        message = {
            "sid": self._sid("SM"),
            "to": form["To"],
            "from": form.get("From") or None,
            "body": form["Body"],
            "messaging_service_sid": form.get("MessagingServiceSid") or None,
            "status_callback": form.get("StatusCallback") or None,
            # A messaging service "accepts" first and picks a sender later, as Twilio does.
            "status": "accepted" if via_service else "queued",
            "num_segments": segments(form["Body"]),
            "error_code": None,
            "date_created": now,
            "date_updated": now,
        }
        with self._lock:
            self._messages.append(message)
            body = self._message_json(message)
            if self.deliver_callbacks and message["status_callback"]:
                self._queue_callbacks(message)
        return FakeResponse(201, body)

    def _validate(self, form: dict[str, str]) -> FakeResponse | None:
        to = form.get("To", "")
        if not to:
            return _twilio_error(400, 21604)
        if not (form.get("From") or form.get("MessagingServiceSid")):
            return _twilio_error(400, 21603)
        if not form.get("Body"):
            return _twilio_error(400, 21602)
        if len(form["Body"]) > 1600:
            return _twilio_error(400, 21617)
        if not _E164.fullmatch(to):
            return _twilio_error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        with self._lock:
            code = self._rejections.get(to)
        if code is not None:
            return _twilio_error(400, code)
        return None

    def _message_json(self, message: dict[str, Any]) -> dict[str, Any]:
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{message['sid']}"
        return {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "sid": message["sid"],
            "to": message["to"],
            "from": message["from"],
            "body": message["body"],
            "messaging_service_sid": message["messaging_service_sid"],
            "status": message["status"],
            "direction": "outbound-api",
            "num_segments": str(message["num_segments"]),
            "num_media": "0",
            "error_code": message["error_code"],
            "error_message": None,
            "price": None,
            "price_unit": "USD",
            "date_created": _rfc2822(message["date_created"]),
            "date_updated": _rfc2822(message["date_updated"]),
            "date_sent": None,
            "uri": uri + ".json",
            "subresource_uris": {"media": uri + "/Media.json"},
        }

    def _sid(self, prefix: str) -> str:
        with self._lock:
            return prefix + f"{self._random.getrandbits(128):032x}"

    def _signature(self, url: str, params: dict[str, str]) -> str:
        return RequestValidator(self.auth_token).compute_signature(url, params)

    # Status callbacks, posted in order from one background thread per message.

    def _queue_callbacks(self, message: dict[str, Any]) -> None:
        code = self._undeliverable.get(message["to"])
        statuses = ("sent", "undelivered") if code is not None else self.callback_statuses
        callbacks = []
        for status in statuses:
            params = {
                "SmsSid": message["sid"],
                "SmsStatus": status,
                "MessageStatus": status,
                "To": message["to"],
                "MessageSid": message["sid"],
                "AccountSid": self.account_sid,
                "ApiVersion": API_VERSION,
                "From": message["from"] or "+15005550006",
            }
            if message["messaging_service_sid"]:
                params["MessagingServiceSid"] = message["messaging_service_sid"]
            if status in ("undelivered", "failed"):
                params["ErrorCode"] = str(code or 30003)
            callbacks.append(_Callback(message["status_callback"], params))
        self._pending_callbacks += len(callbacks)
        threading.Thread(
            target=self._post_callbacks, args=(message, callbacks), daemon=True
        ).start()

    def _post_callbacks(self, message: dict[str, Any], callbacks: list[_Callback]) -> None:
        for callback in callbacks:
            if self.callback_delay > 0:
                time.sleep(self.callback_delay)
            with self._lock:
                message["status"] = callback.params["MessageStatus"]
                message["error_code"] = int(callback.params.get("ErrorCode", 0)) or None
                message["date_updated"] = datetime.now(UTC)
            result = self._post_callback(callback)
            with self._callbacks_done:
                self._callback_log.append(result)
                self._pending_callbacks -= 1
                self._callbacks_done.notify_all()

    def _post_callback(self, callback: _Callback) -> dict[str, Any]:
        result: dict[str, Any] = {"url": callback.url, "params": callback.params}
        headers = {"X-Twilio-Signature": self._signature(callback.url, callback.params)}
        try:
            response = requests.post(
                callback.url, data=callback.params, headers=headers, timeout=10
            )
            result["status_code"] = response.status_code
        except requests.RequestException as exc:
            result["error"] = type(exc).__name__
        return result


def main(argv: list[str] | None = None) -> None:
    """Run a fake Twilio until interrupted."""
    parser = argparse.ArgumentParser(description="Run a fake Twilio Messages API server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7090)
    parser.add_argument("--account-sid", default=DEFAULT_ACCOUNT_SID)
    parser.add_argument("--auth-token", default=DEFAULT_AUTH_TOKEN)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    parser.add_argument("--callbacks", action="store_true", help="post signed status callbacks")
    parser.add_argument("--callback-delay", type=float, default=0.0)
    parser.add_argument(
        "--no-inbox", action="store_true", help="do not serve the /inbox debugging page"
    )
    args = parser.parse_args(argv)
    fake = FakeTwilio(
        args.account_sid,
        args.auth_token,
        host=args.host,
        port=args.port,
        latency=args.latency,
        deliver_callbacks=args.callbacks,
        callback_delay=args.callback_delay,
        inbox=not args.no_inbox,
    )
    fake.start()
    print(f"Fake Twilio listening on {fake.url}", flush=True)
    if fake.inbox:
        print(f"Inbox (every SMS sent): {fake.url}/inbox", flush=True)
    print(
        f"TWILIO_API_BASE_URL={fake.url} TWILIO_ACCOUNT_SID={fake.account_sid} "
        f"TWILIO_AUTH_TOKEN={fake.auth_token}",
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        threading.Event().wait()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
