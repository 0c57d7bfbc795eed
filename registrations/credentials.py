"""Coder usernames, temporary passwords and our email marker: readable in an SMS, valid for Coder.

Passwords are scored with Coder's own rule (go-password-validator v0.3.0, see
../shared/coder-api/NOTES.md): bits = L x log2(B). Coder rejects anything under 52 bits; we
regenerate until a password scores at least ``MIN_ENTROPY_BITS`` so no create ever meets a
400 "Password not strong enough!".
"""

from __future__ import annotations

import math
import re
import secrets

from django.conf import settings
from django.utils.crypto import salted_hmac

# Lower case and digits only: no Shift on a laptop, no autocorrect surprises when copied from an
# SMS. Look-alikes are left out: i/l/1, o/0 (and with them the ambiguity between them).
READABLE_LETTERS = "abcdefghjkmnpqrstuvwxyz"
READABLE_DIGITS = "23456789"
READABLE_ALPHABET = READABLE_LETTERS + READABLE_DIGITS

# Three groups of four, e.g. "k7pw-m3rt-q9zx": 12 random symbols of 31 (59 bits of real entropy),
# 70-75 bits by Coder's rule.
PASSWORD_GROUPS = 3
PASSWORD_GROUP_SIZE = 4
PASSWORD_SEPARATOR = "-"
CODER_MIN_ENTROPY_BITS = 52
# Margin over Coder's minimum so that no corner of its scoring can reject one of ours.
MIN_ENTROPY_BITS = 60

USERNAME_RANDOM_LENGTH = 6
USERNAME_MAX_LENGTH = 32
USERNAME_RE = re.compile(r"^[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*$")
# Coder refuses these two words as names.
RESERVED_USERNAMES = frozenset({"new", "create"})

# Students type the marked email, so the derived deployment id is short: 5 of 31 readable
# characters (28 million values) keeps two deployments from ever sharing one by chance.
DEPLOYMENT_ID_LENGTH = 5
_DEPLOYMENT_SALT = "registrations.credentials.deployment"

# go-password-validator v0.3.0 character classes (base.go) and collapsed sequences (length.go).
_CHAR_CLASSES = (
    "!@$&*",
    "_-., ",
    "\"#%'()+/:;<=>?[\\]^{|}~",
    "abcdefghijklmnopqrstuvwxyz",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "0123456789",
)
_SEQUENCES = ("0123456789", "qwertyuiop", "asdfghjkl", "zxcvbnm", "abcdefghijklmnopqrstuvwxyz")


def _base(password: str) -> int:
    """Sum the sizes of the classes used, plus one per character outside every class."""
    used = set(password)
    base = sum(len(chars) for chars in _CHAR_CLASSES if used & set(chars))
    return base + sum(1 for c in used if not any(c in chars for chars in _CHAR_CLASSES))


def _remove_repeats(chars: list[str]) -> list[str]:
    """Drop the third and later of a run of one character (removeMoreThanTwoRepeatingChars)."""
    kept: list[str] = []
    for c in chars:
        if len(kept) >= 2 and kept[-1] == c and kept[-2] == c:
            continue
        kept.append(c)
    return kept


def _remove_sequence(chars: list[str], sequence: str) -> list[str]:
    """Port removeMoreThanTwoFromSequence literally, quirks included, so scores match Coder's."""
    runes = list(chars)
    matches = 0
    i = 0
    while i < len(runes):
        for expected in sequence:
            if i >= len(runes):
                break
            if runes[i] != expected:
                matches = 0
                continue
            matches += 1
            if matches > 2:
                del runes[i]
            else:
                i += 1
        i += 1
    return runes


def _length(password: str) -> int:
    chars = _remove_repeats(list(password))
    for sequence in _SEQUENCES + tuple(s[::-1] for s in _SEQUENCES):
        chars = _remove_sequence(chars, sequence)
    # Go's len() of a string counts bytes.
    return len("".join(chars).encode())


def entropy_bits(password: str) -> float:
    """Score a password the way Coder does (go-password-validator v0.3.0 GetEntropy)."""
    base = _base(password)
    if base == 0:
        return 0.0
    return _length(password) * math.log2(base)


def generate_password() -> str:
    """Return a fresh SMS-friendly password that scores at least MIN_ENTROPY_BITS."""
    while True:
        groups = (
            "".join(secrets.choice(READABLE_ALPHABET) for _ in range(PASSWORD_GROUP_SIZE))
            for _ in range(PASSWORD_GROUPS)
        )
        password = PASSWORD_SEPARATOR.join(groups)
        # A run ("aaa", "345", "qwe") shortens Coder's L; draw again rather than send it.
        if _length(password) == len(password) and entropy_bits(password) >= MIN_ENTROPY_BITS:
            return password


def username_prefix() -> str:
    """Return CODER_USERNAME_PREFIX reduced to what Coder accepts (may be empty)."""
    words = re.findall(r"[a-z0-9]+", settings.CODER_USERNAME_PREFIX.lower())
    limit = USERNAME_MAX_LENGTH - USERNAME_RANDOM_LENGTH - 1
    return "-".join(words)[:limit].strip("-")


def generate_username() -> str:
    """Return a short, readable candidate username such as "cs-k7pw3m"."""
    while True:
        tail = "".join(secrets.choice(READABLE_ALPHABET) for _ in range(USERNAME_RANDOM_LENGTH))
        prefix = username_prefix()
        username = f"{prefix}-{tail}" if prefix else tail
        if is_valid_username(username):
            return username


def is_valid_username(username: str) -> bool:
    """Say whether Coder would accept this username."""
    return (
        len(username) <= USERNAME_MAX_LENGTH
        and bool(USERNAME_RE.match(username))
        and username.lower() not in RESERVED_USERNAMES
    )


def deployment_id() -> str:
    """Return this installation's id: DEPLOYMENT_ID, else one derived from SECRET_KEY.

    A keyed hash, so two deployments with different keys (staging and production) differ
    without anyone choosing, and the same deployment keeps its id across restarts.
    """
    if settings.DEPLOYMENT_ID:
        return str(settings.DEPLOYMENT_ID).lower()
    digest = salted_hmac(_DEPLOYMENT_SALT, "deployment-id", algorithm="sha256").digest()
    size = len(READABLE_ALPHABET)
    return "".join(READABLE_ALPHABET[byte % size] for byte in digest[:DEPLOYMENT_ID_LENGTH])


def email_for(username: str) -> str:
    """Return the login email, carrying this deployment's marker, of a user we create.

    The marker sits in the email because a student can change their Coder username and display
    name (PUT /users/{user}/profile) but never their email.
    """
    return f"{username.lower()}.{deployment_id()}@{settings.CODER_EMAIL_DOMAIN.lower()}"


def marker_username(email: str | None) -> str | None:
    """Return the username an email of this deployment's marker form was made for, else None.

    All of it must match: the domain, our deployment id, and a valid username starting with
    our prefix. Anything else, a real person's address at the same domain or another
    deployment's student, is not ours.
    """
    local, at, domain = (email or "").lower().rpartition("@")
    if not at or domain != settings.CODER_EMAIL_DOMAIN.lower():
        return None
    username, dot, marker = local.rpartition(".")
    if not dot or marker != deployment_id() or not _is_generated(username):
        return None
    return username


def _is_generated(username: str) -> bool:
    """Say whether a username has the shape generate_username gives: our prefix, then more."""
    prefix = username_prefix()
    return is_valid_username(username) and (not prefix or username.startswith(prefix + "-"))


def is_our_email(email: str | None) -> bool:
    """Say whether a Coder user's email marks it as created by this deployment."""
    return marker_username(email) is not None


def is_ours(username: str, email: str | None) -> bool:
    """Say whether a Coder user with this username and email is one this app created for it."""
    return email is not None and email.lower() == email_for(username)
