"""The join card projected in class: the number to text, the phrase, and QR codes."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

import phonenumbers
import segno
from django.conf import settings
from django.utils.safestring import SafeString, mark_safe

from registrations.models import Session


@dataclass(frozen=True)
class JoinCard:
    number: str
    number_display: str
    phrase: str
    sms_uri: str
    qr_svg: SafeString
    ios_sms_uri: str
    ios_qr_svg: SafeString


def join_number(session: Session) -> str:
    """Return the number students text: the session's own, else the app's sending number."""
    return session.inbound_number or settings.TWILIO_FROM_NUMBER


def display_number(number: str) -> str:
    """Format a number for reading off a projector, e.g. +1 415-555-0123."""
    try:
        parsed = phonenumbers.parse(number, settings.PHONE_DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def sms_uri(number: str, phrase: str, *, ios: bool = False) -> str:
    """Return an sms: link that opens the SMS app with the phrase filled in.

    Android and RFC 5724 use `?body=`; iOS 8 to 12 only understand `&body=`.
    """
    return f"sms:{number}{'&' if ios else '?'}body={quote(phrase, safe='')}"


def qr_svg(uri: str) -> SafeString:
    """Render a QR code for the URI as inline SVG."""
    svg = segno.make(uri, error="m", micro=False).svg_inline(
        scale=1, omitsize=True, svgclass="join-qr", lineclass="join-qr-line"
    )
    # segno's output is path geometry only (no title/desc given): no user text reaches markup.
    return mark_safe(svg)


def join_card(session: Session) -> JoinCard | None:
    """Build the join card, or None when no number to text is configured."""
    number = join_number(session)
    if not number:
        return None
    uri, ios_uri = sms_uri(number, session.phrase), sms_uri(number, session.phrase, ios=True)
    return JoinCard(
        number=number,
        number_display=display_number(number),
        phrase=session.phrase,
        sms_uri=uri,
        qr_svg=qr_svg(uri),
        ios_sms_uri=ios_uri,
        ios_qr_svg=qr_svg(ios_uri),
    )
