"""Session phrases and SMS keywords: normalisation and the rules a phrase must follow."""

from __future__ import annotations

import re
import string
import unicodedata

# Carrier keywords Twilio (and carriers) handle themselves; a phrase must never be one.
CARRIER_STOP_WORDS = frozenset(
    {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout"}
)
CARRIER_START_WORDS = frozenset({"start", "yes", "unstop"})
CARRIER_HELP_WORDS = frozenset({"help", "info"})
# Our own keywords (documented in README): delete my account now / send me a new password.
DONE_WORD = "done"
RESEND_WORD = "resend"
APP_KEYWORDS = frozenset({DONE_WORD, RESEND_WORD})
RESERVED_WORDS = CARRIER_STOP_WORDS | CARRIER_START_WORDS | CARRIER_HELP_WORDS | APP_KEYWORDS

PHRASE_MIN_LENGTH = 4
PHRASE_MAX_LENGTH = 64

_WHITESPACE = re.compile(r"\s+")
# Phones "smarten" what students type (iOS turns ' into ’ by default); NFKC leaves these alone.
_SMART_PUNCTUATION = str.maketrans(
    {
        **dict.fromkeys("‘’‚‛′`", "'"),
        **dict.fromkeys("“”„‟″", '"'),
        **dict.fromkeys("‐‑‒–—―−", "-"),
    }
)
_EDGE_PUNCTUATION = string.punctuation + "“”‘’«»¡¿…·–—"


def _visible(text: str) -> str:
    # Phone keyboards insert zero-width and other format characters (Unicode category Cf) that
    # the student never sees; they must not make a correctly typed phrase fail to match.
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cf")


def normalize_phrase(text: str) -> str:
    """Case-fold, collapse inner whitespace and strip surrounding whitespace and punctuation."""
    # NFKC folds full-width letters and ligatures, so "ｐｙｔｈｏｎ" matches "python".
    folded = unicodedata.normalize("NFKC", _visible(text)).translate(_SMART_PUNCTUATION)
    folded = folded.casefold()
    collapsed = _WHITESPACE.sub(" ", folded).strip()
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
