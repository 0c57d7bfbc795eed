"""Phone numbers: parse to E.164 and mask for display and logs."""

from __future__ import annotations

import phonenumbers
from django.conf import settings


def normalize_phone(raw: str | None) -> str | None:
    """Return the E.164 form of a phone number, or None if it is not a valid number."""
    if not raw or len(raw) > 32:
        return None
    try:
        parsed = phonenumbers.parse(raw.strip(), settings.PHONE_DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def mask_phone(phone: str | None) -> str:
    """Hide all but the last two digits: +1•••••••67."""
    if not phone:
        return "—"
    keep = 2 if len(phone) > 6 else 0
    head = "+" if phone.startswith("+") else ""
    hidden = len(phone) - len(head) - keep
    return head + "•" * hidden + (phone[-keep:] if keep else "")


def region_of(phone: str | None) -> str | None:
    """Return the ISO region code of a number ("US", "CA"), or None when it has none."""
    if not phone:
        return None
    try:
        parsed = phonenumbers.parse(phone, settings.PHONE_DEFAULT_REGION)
    except phonenumbers.NumberParseException:
        return None
    region = phonenumbers.region_code_for_number(parsed)
    # "001" is the code of non-geographic numbers (satellite, international networks).
    return region if region and region.isalpha() else None
