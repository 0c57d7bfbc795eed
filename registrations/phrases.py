"""Session phrases: normalisation and the rules a phrase must follow."""

from __future__ import annotations

import re
import string

# Carrier keywords Twilio (and carriers) handle themselves; a phrase must never be one.
CARRIER_STOP_WORDS = frozenset(
    {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"}
)
CARRIER_START_WORDS = frozenset({"start", "yes", "unstop"})
CARRIER_HELP_WORDS = frozenset({"help", "info"})
# Our own keywords (documented in README).
APP_KEYWORDS = frozenset({"done", "resend"})
RESERVED_WORDS = CARRIER_STOP_WORDS | CARRIER_START_WORDS | CARRIER_HELP_WORDS | APP_KEYWORDS

PHRASE_MIN_LENGTH = 4
PHRASE_MAX_LENGTH = 64

_WHITESPACE = re.compile(r"\s+")
_EDGE_PUNCTUATION = string.punctuation + "“”‘’«»¡¿…·"


def normalize_phrase(text: str) -> str:
    """Case-fold, collapse inner whitespace and strip surrounding whitespace and punctuation."""
    collapsed = _WHITESPACE.sub(" ", text.casefold()).strip()
    return collapsed.strip(_EDGE_PUNCTUATION + " ").strip()


def phrase_problem(text: str) -> str | None:
    """Say what is wrong with a phrase for a session, or None when it is acceptable."""
    normalized = normalize_phrase(text)
    if len(normalized) < PHRASE_MIN_LENGTH:
        return f"The phrase must be at least {PHRASE_MIN_LENGTH} characters long."
    if len(normalized) > PHRASE_MAX_LENGTH:
        return f"The phrase must be at most {PHRASE_MAX_LENGTH} characters long."
    if normalized in RESERVED_WORDS:
        return (
            f"“{normalized.upper()}” is a reserved SMS keyword (STOP, HELP, START, DONE, RESEND…); "
            "choose another phrase."
        )
    return None
