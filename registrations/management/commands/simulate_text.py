"""Text the app as a student's phone would, through Twilio: a signed webhook to /twilio/sms/.

For trying the app without a phone or a Twilio number (with `make fake-services`), and for
checking a deployment's webhook end to end. The request is exactly what Twilio posts for an
incoming SMS, signed with TWILIO_AUTH_TOKEN for PUBLIC_BASE_URL, so the app checks it as it
checks Twilio's; nothing is sent to Twilio itself.
"""

from __future__ import annotations

import re
import uuid
from typing import Any
from xml.etree import ElementTree

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from twilio.request_validator import RequestValidator

from registrations.phones import mask_phone, normalize_phone

DEFAULT_PHONE = "+14155550123"
LOCAL_APP = "http://127.0.0.1:8000"
WEBHOOK_PATH = "/twilio/sms/"
TIMEOUT_SECONDS = 20


def incoming_sms(body: str, phone: str, to: str) -> dict[str, str]:
    """The form fields Twilio posts for an incoming SMS (Messaging webhook parameters)."""
    sid = "SM" + uuid.uuid4().hex
    return {
        "MessageSid": sid,
        "SmsMessageSid": sid,
        "SmsSid": sid,
        "AccountSid": settings.TWILIO_ACCOUNT_SID,
        "MessagingServiceSid": settings.TWILIO_MESSAGING_SERVICE_SID,
        "From": phone,
        "To": to,
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }


def reply_text(twiml: str) -> str:
    """The text of the TwiML answer's <Message> ("" when the app answers with silence)."""
    try:
        root = ElementTree.fromstring(twiml)
    except ElementTree.ParseError:
        return ""
    return " ".join((node.text or "").strip() for node in root.iter("Message"))


class Command(BaseCommand):
    help = (
        "Send the app a signed incoming-SMS webhook, as Twilio does when a student texts "
        "(for local trials with `make fake-services`). The credentials SMS itself goes out "
        "through Twilio (the fake's inbox)."
    )
    # A client of the running app: the app's own system checks are not this command's business.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("body", help='What the student texts, e.g. "python lab 3".')
        parser.add_argument(
            "--phone", default=DEFAULT_PHONE, help=f"The student's phone (default {DEFAULT_PHONE})."
        )
        parser.add_argument(
            "--to", default="", help="The number texted (default: TWILIO_FROM_NUMBER)."
        )
        parser.add_argument(
            "--url",
            default="",
            help=f"Where the app listens (default: PUBLIC_BASE_URL, else {LOCAL_APP}).",
        )

    def handle(self, *args: Any, body: str, phone: str, to: str, url: str, **options: Any) -> None:
        if not settings.TWILIO_AUTH_TOKEN:
            raise CommandError("TWILIO_AUTH_TOKEN is not set: there is nothing to sign with.")
        student = normalize_phone(phone)
        if student is None:
            raise CommandError(f"“{phone}” is not a phone number.")
        to = to or settings.TWILIO_FROM_NUMBER or "+15005550006"
        base = (url or settings.PUBLIC_BASE_URL or LOCAL_APP).rstrip("/")
        # Twilio signs the public URL it was configured with; the app checks that one.
        signed_url = (settings.PUBLIC_BASE_URL or base).rstrip("/") + WEBHOOK_PATH
        params = incoming_sms(body, student, to)
        signature = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(
            signed_url, params
        )
        try:
            response = requests.post(
                base + WEBHOOK_PATH,
                data=params,
                headers={"X-Twilio-Signature": signature},
                timeout=TIMEOUT_SECONDS,
            )
        except requests.RequestException as exc:
            raise CommandError(f"The app at {base} did not answer: {exc}") from exc
        if response.status_code != 200:
            detail = re.sub(r"\s+", " ", response.text)[:200]
            raise CommandError(f"The app answered {response.status_code}: {detail}")
        self.stdout.write(f"Texted “{body}” from {mask_phone(student)} to {to}: answered 200.")
        reply = reply_text(response.text)
        if reply:
            self.stdout.write(f"The app replied: {reply}")
        else:
            self.stdout.write(
                "No reply in the answer: the credentials come as their own SMS within seconds "
                "(with the fakes: see the fake Twilio's inbox)."
            )
