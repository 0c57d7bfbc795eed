"""Error reports to Sentry carry no phone number, SMS body, password or token.

Events are captured by a transport that keeps them in memory (no network), after the real
Django integration and our before_send have run; the assertions read the exact bytes that
would have been sent.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from io import BytesIO
from pathlib import Path
from urllib.parse import urlencode, urlsplit
from wsgiref.util import setup_testing_defaults

import pytest
import sentry_sdk
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import IntegrityError, close_old_connections
from django.http import HttpRequest, HttpResponse
from django.urls import path
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from registrations import enrollment
from registrations.credentials import generate_password
from registrations.error_reporting import (
    FILTERED,
    init_sentry,
    scrub_breadcrumb,
    scrub_event,
    scrub_text,
)
from tests.conftest import PUBLIC_BASE_URL, STUDENT_PHONE, sign, twilio_params

ROOT = Path(__file__).resolve().parent.parent
# What the student texts; the session's phrase is "python lab 3".
BODY = "Python  Lab 3!"
CODER_TOKEN = "QdUFvcYkJF-kPxSjhZUJBgIPsNgUlN25L"
NATIONAL_PHONE = "(415) 555-0199"
PASSWORD = generate_password()
# A password of no recognisable shape: only its field's name gives it away.
ADMIN_PASSWORD = "hunter2 staple"
# Where Twilio says the sender is: the student's whereabouts.
CITY, ZIP = "SAN FRANCISCO", "94105"


class MemoryTransport(Transport):
    """Keeps every envelope instead of sending it."""

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    def sent(self) -> str:
        return b"".join(e.serialize() for e in self.envelopes).decode()

    def events(self) -> list[dict]:
        return [e.get_event() for e in self.envelopes if e.get_event() is not None]


@pytest.fixture
def sentry():
    """Start Sentry with our settings and an in-memory transport; stop it afterwards."""

    def start(*, include_local_variables: bool = False) -> MemoryTransport:
        transport = MemoryTransport()
        init_sentry(
            "https://public@sentry.invalid/1",
            environment="test",
            include_local_variables=include_local_variables,
            transport=transport,
        )
        return transport

    yield start
    sentry_sdk.get_client().close()
    sentry_sdk.get_global_scope().set_client(None)


def explode(request: HttpRequest) -> HttpResponse:
    """Fail with everything the request carried in the message, as a careless library would."""
    phone, body, password = request.POST["phone"], request.POST["body"], request.POST["password"]
    raise ValueError(f"could not save {request.POST!r}: {phone} {body} {password}")


urlpatterns = [path("boom/", explode)]


def assert_secret_free(sent: str) -> None:
    # Bodies sit in JSON, so compare case-insensitively and without escapes getting in the way.
    text = sent.lower()
    for secret in (
        STUDENT_PHONE,
        STUDENT_PHONE[1:],
        NATIONAL_PHONE,
        "555-0199",
        PASSWORD,
        CODER_TOKEN,
        "python lab 3",
        "python  lab 3",
        "see you in lab",
        ADMIN_PASSWORD,
        "hunter2",
    ):
        assert secret.lower() not in text, f"{secret!r} was sent to Sentry"


def test_a_failing_webhook_reports_no_phone_or_body(
    sentry, client, send_sms, open_session, monkeypatch
):
    transport = sentry(include_local_variables=True)

    def enroll_fails(session, phone, **kwargs):
        password = PASSWORD  # noqa: F841  (a local that must not be reported)
        # PostgreSQL echoes the values of a violated unique key.
        raise IntegrityError(f"duplicate key DETAIL: Key (session_id, phone)=(1, {phone})")

    monkeypatch.setattr(enrollment, "enroll", enroll_fails)
    client.raise_request_exception = False
    response = send_sms(BODY, FromCity=CITY, FromZip=ZIP)
    assert response.status_code == 500
    sent = transport.sent()
    assert "IntegrityError" in sent and "enroll_fails" in sent
    assert_secret_free(sent)
    assert CITY.lower() not in sent.lower() and ZIP not in sent
    (event,) = [e for e in transport.events() if e.get("exception")]
    assert "data" not in event["request"]


def wsgi_post(path: str, params: dict, **headers: str) -> str:
    """POST through Django's WSGI handler, as gunicorn calls it; return the status line."""
    body = urlencode(params).encode()
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "CONTENT_TYPE": "application/x-www-form-urlencoded",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": BytesIO(body),
        "wsgi.url_scheme": "https",
        "HTTP_HOST": urlsplit(PUBLIC_BASE_URL).netloc,
        **headers,
    }
    setup_testing_defaults(environ)
    status: list[str] = []
    # As Django's test client does: closing "old" connections would end the test's transaction.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        b"".join(get_wsgi_application()(environ, lambda line, _headers: status.append(line)))
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    return status[0]


def test_through_the_wsgi_stack_a_twilio_request_keeps_only_harmless_headers(
    sentry, twilio_settings, open_session, monkeypatch
):
    transport = sentry(include_local_variables=True)
    twilio_settings.ALLOWED_HOSTS = [urlsplit(PUBLIC_BASE_URL).netloc]
    monkeypatch.setattr(enrollment, "enroll", lambda session, phone, **kw: 1 / 0)
    params = twilio_params(BODY, FromCity=CITY)
    signature = sign(PUBLIC_BASE_URL + "/twilio/sms/", params)
    assert wsgi_post("/twilio/sms/", params, HTTP_X_TWILIO_SIGNATURE=signature).startswith("500")
    (event,) = [e for e in transport.events() if e.get("exception")]
    assert event["request"]["url"] == PUBLIC_BASE_URL + "/twilio/sms/"
    assert "data" not in event["request"]
    assert event["request"]["headers"]["X-Twilio-Signature"] == FILTERED
    sent = transport.sent()
    assert "ZeroDivisionError" in sent and signature not in sent
    assert_secret_free(sent)


@pytest.mark.urls(__name__)
def test_a_failing_request_reports_no_phone_body_password_or_token(sentry, client, db):
    transport = sentry(include_local_variables=True)
    client.raise_request_exception = False
    response = client.post(
        "/boom/",
        {"phone": NATIONAL_PHONE, "body": "see you in lab", "password": ADMIN_PASSWORD},
        HTTP_AUTHORIZATION=f"Bearer {CODER_TOKEN}",
        HTTP_CODER_SESSION_TOKEN=CODER_TOKEN,
    )
    assert response.status_code == 500
    sent = transport.sent()
    assert "ValueError" in sent and "could not save" in sent
    assert_secret_free(sent)


def test_a_worker_error_reports_no_password_body_or_phone(sentry):
    transport = sentry(include_local_variables=True)

    def send_credentials(phone: str) -> None:
        body = f"Your Coder account is ready. Password: {PASSWORD}"  # noqa: F841
        raise RuntimeError(f"Twilio refused the SMS to {phone} with password {PASSWORD}")

    try:
        send_credentials(STUDENT_PHONE)
    except RuntimeError:
        sentry_sdk.capture_exception()
    sent = transport.sent()
    assert "Twilio refused the SMS to" in sent
    assert_secret_free(sent)


def test_breadcrumbs_are_scrubbed_before_they_are_kept(sentry):
    transport = sentry()
    logging.getLogger("tests.breadcrumbs").warning("texting %s", STUDENT_PHONE)
    sentry_sdk.add_breadcrumb(
        category="httplib",
        data={"url": f"https://api.twilio.com/Messages.json?To=%2B{STUDENT_PHONE[1:]}"},
    )
    sentry_sdk.capture_message("something odd")
    sent = transport.sent()
    assert "texting" in sent and "api.twilio.com" in sent
    assert_secret_free(sent)


def test_local_variables_are_left_out_by_default(sentry):
    transport = sentry(include_local_variables=False)

    def fail() -> None:
        innocent_name = "see you in lab"  # noqa: F841
        raise RuntimeError("boom")

    try:
        fail()
    except RuntimeError:
        sentry_sdk.capture_exception()
    (event,) = transport.events()
    frames = event["exception"]["values"][0]["stacktrace"]["frames"]
    assert all("vars" not in frame for frame in frames)


@pytest.mark.parametrize(
    "phone",
    [
        "+14155550123",
        "+1 (415) 555-0123",
        "(415) 555-0123",
        "415.555.0123",
        "4155550123",
        "+44 20 7946 0958",
        "%2B14155550123",
        "0044 20 7946 0958",
    ],
)
def test_phone_numbers_in_any_usual_shape_are_removed(phone):
    assert scrub_text(f"texting {phone} now") == f"texting {FILTERED} now"


@pytest.mark.parametrize(
    "kept",
    [
        "2026-11-30 02:25",
        "2026-11-30T02:25:00.123456+00:00",
        "550e8400-e29b-41d4-a716-446655440000",
        "account 12 of session 3",
        "Coder POST /api/v2/users -> 500: internal",
        "took 0.1234s",
        "version 2.76.0",
    ],
)
def test_dates_ids_and_status_codes_survive(kept):
    assert scrub_text(kept) == kept


def test_passwords_tokens_and_secrets_by_name_are_removed():
    text = scrub_text(
        f"pw {generate_password()} token {CODER_TOKEN} password='hunter2' "
        "https://AC1:authtoken@api.twilio.com/x Authorization: Bearer abc.def"
    )
    for secret in ("hunter2", CODER_TOKEN, "authtoken", "abc.def"):
        assert secret not in text
    assert "-" not in text.split("pw ")[1].split(" ")[0]


def test_fields_named_like_secrets_or_bodies_are_filtered():
    event = {
        "extra": {
            "password": "x",
            "twilio_auth_token": "y",
            "Body": "hi",
            "phone": "z",
            "count": 3,
            "session_id": 4,
        },
        "request": {"url": "https://sms.example.test/admin/", "headers": {"Cookie": "a=b"}},
    }
    scrubbed = scrub_event(event, {})
    assert scrubbed["extra"] == {
        "password": FILTERED,
        "twilio_auth_token": FILTERED,
        "Body": FILTERED,
        "phone": FILTERED,
        "count": 3,
        "session_id": 4,
    }
    assert scrubbed["request"]["headers"] == {"Cookie": FILTERED}


def test_a_twilio_request_loses_its_data_and_its_values_everywhere_else():
    event = {
        "request": {
            "url": "https://sms.example.test/twilio/sms/",
            "data": {"Body": "Python  Lab 3!", "FromCity": "SAN FRANCISCO", "MessageSid": "SM1"},
        },
        "exception": {"values": [{"value": "no session for 'python lab 3' from SAN FRANCISCO"}]},
    }
    scrubbed = scrub_event(event, {})
    assert "data" not in scrubbed["request"]
    assert scrubbed["exception"]["values"][0]["value"] == (
        f"no session for '{FILTERED}' from {FILTERED}"
    )


def test_a_breadcrumb_is_scrubbed():
    crumb = scrub_breadcrumb({"message": f"sms to {STUDENT_PHONE}", "data": {"to": "x"}}, {})
    assert crumb == {"message": f"sms to {FILTERED}", "data": {"to": FILTERED}}


PROBE = """
import json, django, sentry_sdk
django.setup()
client = sentry_sdk.get_client()
before_send = client.options.get("before_send") if client.is_active() else None
print(json.dumps({"active": client.is_active(),
                  "before_send": getattr(before_send, "__name__", None),
                  "locals": client.options.get("include_local_variables")}))
"""


def sentry_state(**env: str) -> dict:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("SENTRY_", "DATABASE_URL"))
    }
    environment.update(
        {
            "DJANGO_SETTINGS_MODULE": "classroom_sms.settings",
            "ENV_FILE": "",
            "SECRET_KEY": "x",
            **env,
        }
    )
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_sentry_starts_only_when_sentry_dsn_is_set():
    assert sentry_state()["active"] is False
    state = sentry_state(SENTRY_DSN="https://public@sentry.invalid/1")
    assert state == {"active": True, "before_send": "scrub_event", "locals": False}


def test_the_sentry_settings_are_documented_in_env_example():
    documented = (ROOT / ".env.example").read_text()
    for name in (
        "SENTRY_DSN",
        "SENTRY_ENVIRONMENT",
        "SENTRY_RELEASE",
        "SENTRY_TRACES_SAMPLE_RATE",
        "SENTRY_INCLUDE_LOCAL_VARIABLES",
    ):
        assert f"\n{name}=" in documented, name
