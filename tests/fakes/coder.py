"""A stateful fake Coder server: real HTTP on 127.0.0.1, a twin of REAL Coder (coder/coder).

Usable from pytest (`with FakeCoder() as coder: ...`) and standalone for demos and benchmarks:

    python -m tests.fakes.coder --port 7080 --latency 0.05

Request bodies are checked against the definitions in `classroom-subset.json` (Coder's own
swagger, cut down) and then against the rules the real server enforces on top of its spec
(name rule, case-insensitive uniqueness, password entropy, 201/409/410/417 answers...).

The fake follows Coder's Go source, not this app: every rule carries a comment naming the Go
file and function it copies, and tests/test_fake_coder_twin.py pins them. Never bend a rule to
make the app pass; if Coder changes, change the rule together with its comment and its test.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import math
import os
import re
import secrets
import signal
import string
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import unquote

from tests.fakes import BaseFakeServer, FailRule, FakeRequest, FakeResponse

DEFAULT_TOKEN = "fake-coder-owner-token"
DEFAULT_ORG_ID = "5b8a4f0e-2c7d-4a1b-9e3f-6d0c1a2b3c4d"
NIL_UUID = "00000000-0000-0000-0000-000000000000"
API_PREFIX = "/api/v2"
NEVER = "0001-01-01T00:00:00Z"
MIN_PASSWORD_ENTROPY = 52.0
MAX_PASSWORD_BYTES = 64
# coderd/coderd.go New: options.APIRateLimit defaults to 512, options.LoginRateLimit to 60.
DEFAULT_API_RATE_LIMIT = 512
LOGIN_RATE_LIMIT = 60
# coderd/coderd.go: every limiter is httpmw.RateLimit(count, time.Minute).
RATE_LIMIT_WINDOW_SECONDS = 60
# coderd/userpassword/userpassword.go Compare: an empty hash (no such user, or a user without a
# password) is compared against a hash of "hunter2", to keep the timing of a real comparison.
SIMULATED_PASSWORD = "hunter2"
# codersdk/name.go UserRealNameValid: at most 128 characters, no surrounding spaces.
MAX_REAL_NAME_LENGTH = 128
# coderd/httpmw/apikey.go ExtractAPIKey: LastUsed (and the user's last_seen_at) move at most hourly.
API_KEY_TOUCH_SECONDS = 3600

# Where the API subset lives: an explicit override, a copy inside the repository, or the shared one.
SPEC_CANDIDATES = (
    os.environ.get("CODER_API_SUBSET", ""),
    str(Path(__file__).resolve().parents[2] / "docs" / "coder-api" / "classroom-subset.json"),
    str(Path(__file__).resolve().parent / "classroom-subset.json"),
    str(Path(__file__).resolve().parents[3] / "shared" / "coder-api" / "classroom-subset.json"),
)

_NAME_RE = re.compile(r"[a-zA-Z0-9]+(?:-[a-zA-Z0-9]+)*")


# go-playground/validator regexes.go emailRegexString is the `validate:"email"` tag Coder's
# request structs use (codersdk/users.go). Its regex backtracks exponentially in Python's engine
# (Go's RE2 does not), so it is ported as the language it accepts, checked in linear time:
#   local "@" domain, split at the last "@";
#   local  = dot-atom (atom chars and single inner dots) or a quoted string;
#   domain = (label ".")+ tld ["."], label: inner chars starting and ending with a letter or
#            digit, tld: inner chars starting and ending with a letter; inner = letter, digit,
#            "-", "." or "~". (label ".")+ accepts exactly what one label + "." accepts, since
#            labels may hold dots.
# "Letter" includes the regex's Unicode ranges; "digit" is ASCII 0-9 (RE2's \d).
_ATOM_SPECIALS = frozenset("!#$%&'*+-/=?^_`{|}~")


def _email_unicode(char: str) -> bool:
    code = ord(char)
    return 0xA0 <= code <= 0xD7FF or 0xF900 <= code <= 0xFDCF or 0xFDF0 <= code <= 0xFFEF


def _email_alpha(char: str) -> bool:
    return ("a" <= char <= "z") or ("A" <= char <= "Z") or _email_unicode(char)


def _email_alnum(char: str) -> bool:
    return _email_alpha(char) or "0" <= char <= "9"


def _email_local_ok(local: str) -> bool:
    if len(local) >= 2 and local[0] == local[-1] == '"':
        body = local[1:-1]
        for k, char in enumerate(body):
            if char == "\n":
                # Only inside folding white space: CR LF followed by a space or a tab.
                if k == 0 or body[k - 1] != "\r" or k + 1 >= len(body) or body[k + 1] not in " \t":
                    return False
            elif not ("\x01" <= char <= "\x7f" or _email_unicode(char)):
                return False
        return True
    if not local or local[0] == "." or local[-1] == "." or ".." in local:
        return False
    return all(c == "." or _email_alnum(c) or c in _ATOM_SPECIALS for c in local)


def _email_domain_ok(domain: str) -> bool:
    candidates = [domain] + ([domain[:-1]] if domain.endswith(".") else [])
    for text in candidates:
        if len(text) < 3 or not _email_alnum(text[0]) or not _email_alpha(text[-1]):
            continue
        if not all(_email_alnum(c) or c in "-.~" for c in text):
            continue
        # Some "." with a letter/digit before it (end of the label) and a letter after it
        # (start of the tld).
        if any(
            text[j] == "." and _email_alnum(text[j - 1]) and _email_alpha(text[j + 1])
            for j in range(1, len(text) - 1)
        ):
            return True
    return False


def is_email(value: str) -> bool:
    """go-playground/validator's `email` tag (regexes.go emailRegexString), as Coder checks it."""
    local, at, domain = value.rpartition("@")
    return bool(at) and _email_local_ok(local) and _email_domain_ok(domain)


USER_QUERY_KEYS = {
    "status",
    "role",
    "name",
    "login_type",
    "created_before",
    "created_after",
    "last_seen_before",
    "last_seen_after",
}
WORKSPACE_QUERY_KEYS = {
    "owner",
    "template",
    "name",
    "status",
    "organization",
    "id",
    "has-agent",
    "dormant",
    "outdated",
    "last_used_before",
    "last_used_after",
    "param",
}
TEMPLATE_QUERY_KEYS = {"exact_name", "name", "organization", "deprecated", "display_name"}

# Build stages: 0 = job pending, 1 = job running, 2 = job finished (succeeded or failed).
_STATUS_BY_STAGE = {
    "start": ("pending", "starting", "running"),
    "stop": ("pending", "stopping", "stopped"),
    "delete": ("pending", "deleting", "deleted"),
}
_JOB_STATUS_BY_STAGE = ("pending", "running", "succeeded")


# go-password-validator v0.3.0, ported with its quirks: Coder scores passwords with it.
_SEQUENCES = ("0123456789", "qwertyuiop", "asdfghjkl", "zxcvbnm", "abcdefghijklmnopqrstuvwxyz")
_CHAR_CLASSES = (
    "!@$&*",
    "_-., ",
    "\"#%'()+/:;<=>?[\\]^{|}~",
    "abcdefghijklmnopqrstuvwxyz",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "0123456789",
)
_LOG2E = 1.4426950408889634074


def _go_log2(x: float) -> float:
    """math.Log2 as Go computes it (exact for powers of two), so sums match Go's bit for bit."""
    frac, exp = math.frexp(x)
    if frac == 0.5:
        return float(exp - 1)
    return math.log(frac) * _LOG2E + exp


def _remove_more_than_two_from_sequence(text: str, seq: str) -> str:
    # A literal port of the Go loop; it does not find every run, and Coder inherits that.
    runes, matches, i = list(text), 0, 0
    while i < len(runes):
        j = 0
        while j < len(seq):
            if i >= len(runes):
                break
            if runes[i] != seq[j]:
                matches = 0
                j += 1
                continue
            matches += 1
            if matches > 2:
                del runes[i]
            else:
                i += 1
            j += 1
        i += 1
    return "".join(runes)


def _remove_more_than_two_repeating(text: str) -> str:
    runes, prev_prev, prev, i = list(text), "\0", "\0", 0
    while i < len(runes):
        r = runes[i]
        if r == prev and r == prev_prev:
            del runes[i]
            i -= 1
        prev_prev, prev = prev, r
        i += 1
    return "".join(runes)


def password_length(password: str) -> int:
    """L of the entropy formula: runs collapsed, then counted in UTF-8 bytes as Go's len() does."""
    text = _remove_more_than_two_repeating(password)
    for seq in _SEQUENCES + tuple(s[::-1] for s in _SEQUENCES):
        text = _remove_more_than_two_from_sequence(text, seq)
    return len(text.encode("utf-8"))


def password_base(password: str) -> int:
    """B of the entropy formula: sizes of the classes used, plus 1 per other distinct character."""
    used: set[int] = set()
    base = 0
    for char in set(password):
        index = next((k for k, chars in enumerate(_CHAR_CLASSES) if char in chars), None)
        if index is None:
            base += 1
        else:
            used.add(index)
    return base + sum(len(_CHAR_CLASSES[k]) for k in used)


def password_entropy(password: str) -> float:
    """Bits of entropy as go-password-validator v0.3.0 scores them (L x log2(B), summed)."""
    bits_per_char = _go_log2(password_base(password))
    total = 0.0
    for _ in range(password_length(password)):
        total += bits_per_char
    return total


def password_problem(password: str) -> str | None:
    """Coder's userpassword.Validate: None when acceptable, else the error text it gives."""
    if password_entropy(password) < MIN_PASSWORD_ENTROPY:
        return _weak_password_message(password)
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        return f"password must be no more than {MAX_PASSWORD_BYTES} characters"
    return None


def _weak_password_message(password: str) -> str:
    present = [any(c in chars for c in password) for chars in _CHAR_CLASSES]
    replace, sep, other, lower, upper, digits = present
    hints = []
    if not (other and sep and replace):
        hints.append("including more special characters")
    if not lower:
        hints.append("using lowercase letters")
    if not upper:
        hints.append("using uppercase letters")
    if not digits:
        hints.append("using numbers")
    if hints:
        return f"insecure password, try {', '.join(hints)} or using a longer password"
    return "insecure password, try using a longer password"


def name_problem(name: str) -> str | None:
    """Coder's NameValid for usernames, workspace, template and organization names."""
    if len(name) > 32:
        return "must be <= 32 characters"
    if len(name) < 1:
        return "must be >= 1 character"
    if name in ("new", "create"):
        return f"cannot use {name!r} as a name"
    if not _NAME_RE.fullmatch(name):
        return "must be alphanumeric with hyphens"
    return None


def _now() -> datetime:
    return datetime.now(UTC)


def _ts(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value else NEVER


def _ts_or_null(value: datetime | None) -> str | None:
    return _ts(value) if value else None


def _parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _is_uuid(value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@cache
def load_spec(path: str | None = None) -> dict[str, Any]:
    """The API subset document, from `path` or the first candidate location that exists."""
    for candidate in (path,) if path else SPEC_CANDIDATES:
        if candidate and Path(candidate).is_file():
            return json.loads(Path(candidate).read_text())
    raise FileNotFoundError(
        "classroom-subset.json not found; set CODER_API_SUBSET to its path "
        f"(looked in {', '.join(c for c in SPEC_CANDIDATES if c)})"
    )


class _SchemaChecker:
    """jsonschema validators for the spec's definitions, with `#/definitions/...` refs resolved."""

    def __init__(self, spec: dict[str, Any]) -> None:
        from jsonschema import Draft4Validator, FormatChecker
        from referencing import Registry, Resource
        from referencing.jsonschema import DRAFT4

        resource = Resource.from_contents(spec, default_specification=DRAFT4)
        self._registry = Registry().with_resource("urn:coder-subset", resource)
        self._formats = FormatChecker(formats=())
        # Only uuid: Go fails to decode a malformed one, so it is a type error, not a rule.
        self._formats.checks("uuid")(_is_uuid)
        self._validator_class = Draft4Validator
        self.definitions = set(spec.get("definitions", {}))

    def errors(self, definition: str, body: Any) -> list[Any]:
        if definition not in self.definitions:
            raise KeyError(f"{definition} is not in the API subset")
        schema = {"$ref": f"urn:coder-subset#/definitions/{definition}"}
        validator = self._validator_class(
            schema, registry=self._registry, format_checker=self._formats
        )
        return list(validator.iter_errors(body))


class ApiError(Exception):
    """Raised inside handlers to answer with a Coder error body."""

    def __init__(
        self,
        status: int,
        message: str,
        detail: str = "",
        validations: list[dict[str, str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.response = FakeResponse(
            status, _error_body(message, detail, validations), dict(headers or {})
        )


class _Answer(Exception):
    """Raised to send a ready-made response (a middleware's refusal, e.g. httprate's 428)."""

    def __init__(self, response: FakeResponse) -> None:
        super().__init__(response.status)
        self.response = response


def _error_body(
    message: str, detail: str = "", validations: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"message": message}
    if detail:
        body["detail"] = detail
    if validations:
        body["validations"] = validations
    return body


def _validation(field_name: str, detail: str) -> dict[str, str]:
    return {"field": field_name, "detail": detail}


def _tag_failed(field_name: str, tag: str, value: str) -> dict[str, str]:
    """httpapi.go Read: one go-playground validation error, as Coder words it."""
    return _validation(field_name, f'Validation failed for tag "{tag}" with value: "{value}"')


def _json_kind(value: Any) -> str:
    """The JSON kind encoding/json names in an UnmarshalTypeError."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _password_matches(stored: str, given: str) -> bool:
    """coderd/userpassword/userpassword.go Compare (the fake keeps passwords in clear)."""
    return (stored or SIMULATED_PASSWORD) == given


class LoggedRequest(NamedTuple):
    """(method, path, json body) of one request; path is the wire path without query string."""

    method: str
    path: str
    body: Any


class Answered(NamedTuple):
    """The status the fake answered a request with, and when (the fake's clock, seconds)."""

    method: str
    path: str
    status: int
    at: float


@dataclass(frozen=True)
class RecordedRequest:
    """A request with its query and headers, for tests that need more than `requests_log`."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any
    headers: dict[str, str]


@dataclass
class _Org:
    id: str
    name: str
    display_name: str
    is_default: bool
    created_at: datetime


@dataclass
class _Template:
    id: str
    name: str
    display_name: str
    organization_id: str
    active_version_id: str
    deprecated: bool
    default_ttl_ms: int
    created_at: datetime
    # The active version's rich parameters, as GET .../rich-parameters renders them, and the
    # template's use_classic_parameter_flow (see set_template_parameters).
    parameters: list[dict[str, Any]] = field(default_factory=list)
    classic_parameter_flow: bool = False


@dataclass
class _User:
    id: str
    username: str
    email: str
    name: str
    password: str
    login_type: str
    status: str
    organization_ids: list[str]
    roles: list[dict[str, str]]
    created_at: datetime
    updated_at: datetime
    last_seen_at: datetime | None = None
    deleted: bool = False


@dataclass
class _Build:
    id: str
    workspace_id: str
    build_number: int
    transition: str
    initiator_id: str
    template_version_id: str
    created_at: datetime
    created_mono: float
    fail: bool = False
    polls: int = 0
    stage: int = 0
    started_at: datetime | None = None
    completed_at: datetime | None = None


@dataclass
class _Workspace:
    id: str
    name: str
    owner_id: str
    organization_id: str
    template_id: str
    created_at: datetime
    updated_at: datetime
    ttl_ms: int | None
    autostart_schedule: str | None
    automatic_updates: str
    rich_parameter_values: list[dict[str, str]]
    builds: list[_Build] = field(default_factory=list)
    # provisionerdserver CompleteJob sets workspaces.deleted when a delete build succeeds; no
    # later build clears it (a new delete build on a deleted workspace leaves it deleted).
    deleted: bool = False

    @property
    def latest(self) -> _Build:
        return self.builds[-1]


@dataclass
class _Session:
    """An API key: the owner's configured token, or a session token from POST /users/login."""

    user_id: str
    # coderd/apikey/apikey.go Generate: a new key has LastUsed = time.Time{} (never).
    last_used: datetime | None = None


class _HttpRate:
    """One go-chi/httprate limiter (limiter.go Handler, calculateRate; local_counter.go).

    Fixed windows aligned on the clock (time.Now().UTC().Truncate(window)); a request is
    refused when round(previous * (window - elapsed) / window + current) + 1 > limit, and only
    requests let through are counted. Every limiter instance (httpmw.RateLimit call) has its
    own counters.
    """

    def __init__(self, window: float = RATE_LIMIT_WINDOW_SECONDS) -> None:
        self.window = window
        self._counts: dict[str, dict[float, int]] = {}

    def hit(self, key: str, limit: int, now: float) -> tuple[bool, dict[str, str]]:
        """Count one request under `key`; (allowed, the headers httprate sets)."""
        current = math.floor(now / self.window) * self.window
        previous = current - self.window
        counts = self._counts.setdefault(key, {})
        for start in [w for w in counts if w < previous]:
            del counts[start]
        elapsed = now - current
        estimate = counts.get(previous, 0) * (self.window - elapsed) / self.window
        rate = math.floor(estimate + counts.get(current, 0) + 0.5)  # Go's math.Round
        headers = {
            "X-Ratelimit-Limit": str(limit),
            "X-Ratelimit-Reset": str(int(current + self.window)),
        }
        if rate + 1 > limit:
            headers["X-Ratelimit-Remaining"] = str(limit - rate)
            # RFC 6585: httprate always sends the whole window, not the time left.
            headers["Retry-After"] = str(int(self.window))
            return False, headers
        counts[current] = counts.get(current, 0) + 1
        headers["X-Ratelimit-Remaining"] = str(limit - rate - 1)
        return True, headers


def _canonical_ip(ip: str) -> str:
    """go-chi/httprate httprate.go canonicalizeIP: IPv4 as is, IPv6 by its /64 prefix."""
    first = next((c for c in ip if c in ".:"), "")
    if first != ":":
        return ip
    try:
        network = ipaddress.ip_network(f"{ip}/64", strict=False)
    except ValueError:
        return ip
    return str(network.network_address)


def _go_parse_bool(value: str) -> bool | None:
    """strconv.ParseBool: the spellings Go accepts, None for anything else."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    return None


def _like(pattern: str, text: str) -> bool:
    """Postgres ILIKE: % is any run, _ any one character, backslash escapes; case-insensitive."""
    regex, escaped = [], False
    for char in pattern:
        if escaped:
            regex.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            regex.append(".*")
        elif char == "_":
            regex.append(".")
        else:
            regex.append(re.escape(char))
    return re.fullmatch("".join(regex), text, re.IGNORECASE | re.DOTALL) is not None


class _Route(NamedTuple):
    method: str
    pattern: re.Pattern[str]
    handler: str
    # coderd/coderd.go: which routes sit behind apiKeyMiddleware, and which have their own
    # httpmw.RateLimit(options.LoginRateLimit, time.Minute) group.
    auth: bool
    limiter: str | None
    # Whether the fake models a member's own session token on this route (see _authorize).
    member_self: bool


def _route(
    method: str,
    pattern: str,
    handler: str,
    *,
    auth: bool = True,
    limiter: str | None = None,
    member_self: bool = False,
) -> _Route:
    return _Route(method, re.compile(pattern), handler, auth, limiter, member_self)


SEG = r"(?P<{}>[^/]+)"
ROUTES = (
    # coderd/coderd.go: /buildinfo has no apiKeyMiddleware.
    _route("GET", r"/buildinfo", "_buildinfo", auth=False),
    _route("GET", r"/users", "_list_users"),
    _route("POST", r"/users", "_create_user"),
    # coderd/coderd.go: /users/login and /users/validate-password share the LoginRateLimit
    # group and are not behind apiKeyMiddleware: no token needed.
    _route("POST", r"/users/login", "_login", auth=False, limiter="login"),
    _route("POST", r"/users/validate-password", "_validate_password", auth=False, limiter="login"),
    _route("GET", r"/users/" + SEG.format("user"), "_get_user", member_self=True),
    _route("DELETE", r"/users/" + SEG.format("user"), "_delete_user"),
    _route(
        "PUT",
        r"/users/" + SEG.format("user") + r"/status/(?P<action>suspend|activate)",
        "_set_status",
    ),
    _route("PUT", r"/users/" + SEG.format("user") + r"/profile", "_put_profile", member_self=True),
    # Its own RateLimit sits after ExtractUserParam (coderd.go), so _set_password applies it.
    _route(
        "PUT", r"/users/" + SEG.format("user") + r"/password", "_set_password", member_self=True
    ),
    _route("POST", r"/users/" + SEG.format("user") + r"/workspaces", "_create_workspace"),
    _route(
        "POST",
        r"/organizations/" + SEG.format("org") + r"/members/" + SEG.format("user") + r"/workspaces",
        "_create_workspace",
    ),
    _route("GET", r"/organizations", "_list_organizations"),
    _route("GET", r"/organizations/" + SEG.format("org"), "_get_organization"),
    _route("GET", r"/organizations/" + SEG.format("org") + r"/templates", "_org_templates"),
    _route("GET", r"/templates", "_search_templates"),
    _route("GET", r"/templates/" + SEG.format("template"), "_get_template"),
    _route("GET", r"/workspaces", "_list_workspaces"),
    _route("GET", r"/workspaces/" + SEG.format("workspace"), "_get_workspace"),
    _route("GET", r"/workspaces/" + SEG.format("workspace") + r"/builds", "_list_builds"),
    _route("POST", r"/workspaces/" + SEG.format("workspace") + r"/builds", "_create_build"),
    _route("GET", r"/workspacebuilds/" + SEG.format("build"), "_get_build"),
    _route(
        "GET",
        r"/templateversions/" + SEG.format("version") + r"/rich-parameters",
        "_template_version_rich_parameters",
    ),
)


class FakeCoder(BaseFakeServer):
    """An in-memory Coder deployment behind a real HTTP server.

    Knobs (attributes; change them at any time): `latency`, `down`, `build_polls`,
    `build_seconds`, `fail_delete_builds`, `fail_start_builds`, `rate_limit_per_minute` (None:
    no rate limiting at all; a number: Coder's API limit, plus the login/password limits of
    `login_rate_limit_per_minute`), `clock` (wall-clock seconds, for the rate-limit windows);
    and `fail_next(n, status, method=, path_prefix=, retry_after=)`.

    Tokens: the owner's `token`, and the session tokens POST /users/login hands out. A member's
    session token is modelled only for the member's own GET /users/{user}, PUT .../profile and
    PUT .../password; anywhere else the fake refuses it with 403 (a limit of the fake, said so
    in the answer's detail), rather than guess Coder's RBAC.

    Builds: each stage (job pending, then running) lasts `build_polls` GETs that show the build
    (GET /workspacebuilds/{id}, GET /workspaces[/{id}[/builds]]) or `build_seconds` seconds,
    whichever ends first; `build_polls=0` finishes builds as soon as anyone looks, and
    `build_polls=None` with `build_seconds` set makes progress purely time-driven.
    """

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        build_polls: int | None = 2,
        build_seconds: float | None = None,
        rate_limit_per_minute: int | None = None,
        version: str = "v2.28.0-fake",
        owner_username: str = "admin",
        spec_path: str | None = None,
    ) -> None:
        super().__init__(host=host, port=port, latency=latency)
        self.token = token
        self.version = version
        self.build_polls = build_polls
        self.build_seconds = build_seconds
        self.fail_delete_builds = 0
        self.fail_start_builds = 0
        self.rate_limit_per_minute = rate_limit_per_minute
        self.login_rate_limit_per_minute = LOGIN_RATE_LIMIT
        self.clock = time.time
        self.deployment_id = str(uuid.uuid4())
        self._schema = _SchemaChecker(load_spec(spec_path))
        self._records: list[RecordedRequest] = []
        self._answers: list[Answered] = []
        # coderd/coderd.go: apiRateLimiter, the /users login group's limiter and the /password
        # route's limiter are three httpmw.RateLimit instances, each with its own counters.
        self._limiters = {"api": _HttpRate(), "login": _HttpRate(), "password": _HttpRate()}
        self._sessions: dict[str, _Session] = {}
        self._orgs: dict[str, _Org] = {}
        self._templates: dict[str, _Template] = {}
        self._users: dict[str, _User] = {}
        self._workspaces: dict[str, _Workspace] = {}
        self._builds: dict[str, _Build] = {}
        # Versions no longer active, by id: (template id, rich parameters).
        self._old_versions: dict[str, tuple[str, list[dict[str, Any]]]] = {}
        now = _now()
        self._orgs[DEFAULT_ORG_ID] = _Org(DEFAULT_ORG_ID, "coder", "Coder", True, now)
        self.owner = self._add_user(
            owner_username,
            f"{owner_username}@example.com",
            "Fake-Owner-Password-1234",
            status="active",
            roles=[{"name": "owner", "display_name": "Owner", "organization_id": ""}],
        )
        self._owner_session = _Session(self.owner.id)

    # Seeding and introspection helpers for tests.

    def add_organization(self, name: str, display_name: str = "") -> dict[str, Any]:
        """Add a non-default organization; the owner becomes a member."""
        with self._lock:
            org = _Org(str(uuid.uuid4()), name, display_name or name, False, _now())
            self._orgs[org.id] = org
            self.owner.organization_ids.append(org.id)
            return self._org_json(org)

    def add_template(
        self,
        name: str,
        *,
        display_name: str = "",
        organization: str | None = None,
        deprecated: bool = False,
        default_ttl_ms: int = 0,
    ) -> dict[str, Any]:
        """Add a template (in the default organization unless `organization` is given)."""
        with self._lock:
            org = self._find_org(organization or "default")
            if org is None:
                raise ValueError(f"unknown organization {organization!r}")
            template = _Template(
                str(uuid.uuid4()),
                name,
                display_name,
                org.id,
                str(uuid.uuid4()),
                deprecated,
                default_ttl_ms,
                _now(),
            )
            self._templates[template.id] = template
            return self._template_json(template)

    def set_template_parameters(
        self, template: str, parameters: list[dict[str, Any]], *, classic_flow: bool = True
    ) -> dict[str, Any]:
        """Push a new active version of `template` (name or id) with these rich parameters.

        Each parameter is a dict of codersdk.TemplateVersionParameter fields; left out are
        filled in as the Terraform provider does (coder_parameter: `required` is true exactly
        when there is no default, `type` is "string"). The fake checks build parameters only on
        the classic parameter flow (codersdk/richparameters.go): the dynamic flow renders the
        template's Terraform (coderd/dynamicparameters), which the fake cannot.
        """
        with self._lock:
            found = next((t for t in self._templates.values() if template in (t.id, t.name)), None)
            if found is None:
                raise ValueError(f"unknown template {template!r}")
            self._old_versions[found.active_version_id] = (found.id, found.parameters)
            found.active_version_id = str(uuid.uuid4())
            found.parameters = [_rich_parameter(p) for p in parameters]
            found.classic_parameter_flow = classic_flow
            return self._template_json(found)

    def add_user(
        self,
        username: str,
        password: str = "Seeded-Password-1234",
        *,
        email: str | None = None,
        status: str = "active",
        login_type: str = "password",
    ) -> dict[str, Any]:
        """Seed a member of the default organization, bypassing the API's checks.

        A user whose login type is not "password" gets no password, whatever is passed:
        coderd/users.go CreateUser only hashes a password that was given, and postUser refuses
        one for other login types.
        """
        with self._lock:
            user = self._add_user(
                username,
                email or f"{username}@example.com",
                password if login_type == "password" else "",
                status=status,
                login_type=login_type,
            )
            return self._user_json(user)

    @property
    def requests_log(self) -> list[LoggedRequest]:
        """Every request received so far, as (method, path, json body)."""
        with self._lock:
            return [LoggedRequest(r.method, r.path, r.body) for r in self._records]

    def requests(self, method: str | None = None, path_prefix: str = "") -> list[RecordedRequest]:
        """Received requests with query and headers, optionally filtered."""
        with self._lock:
            return [
                r
                for r in self._records
                if (method is None or r.method == method.upper()) and r.path.startswith(path_prefix)
            ]

    def clear_log(self) -> None:
        with self._lock:
            self._records.clear()
            self._answers.clear()

    def users_by_username(self) -> dict[str, dict[str, Any]]:
        """Live (not deleted) users, owner included, keyed by username."""
        with self._lock:
            return {u.username: self._user_json(u) for u in self._users.values() if not u.deleted}

    def live_users(
        self, marker_domain: str | None = None, *, include_owner: bool = False
    ) -> list[dict[str, Any]]:
        """Live users, the token owner left out; only emails @marker_domain when given."""
        with self._lock:
            users = [u for u in self._users.values() if not u.deleted]
            if not include_owner:
                users = [u for u in users if u.id != self.owner.id]
            if marker_domain:
                suffix = "@" + marker_domain.lower()
                users = [u for u in users if u.email.lower().endswith(suffix)]
            return [self._user_json(u) for u in sorted(users, key=lambda u: u.username.lower())]

    def workspaces_of(self, username: str) -> list[dict[str, Any]]:
        """The user's workspaces that are not deleted yet (without counting as a poll)."""
        with self._lock:
            user = self._user_by_name(username)
            if user is None:
                return []
            return [
                self._workspace_json(ws)
                for ws in self._workspaces.values()
                if ws.owner_id == user.id and not self._is_deleted(ws)
            ]

    def live_counts(self, marker_domain: str) -> tuple[int, int]:
        """(users, workspaces) of users @marker_domain not deleted yet: a cheap poll for
        benchmarks (no JSON; like workspaces_of, it does not count as a poll of a build)."""
        suffix = "@" + marker_domain.lower()
        with self._lock:
            ours = {u.id for u in self._users.values() if u.email.lower().endswith(suffix)}
            users = sum(not self._users[i].deleted for i in ours)
            workspaces = sum(
                ws.owner_id in ours and not self._is_deleted(ws) for ws in self._workspaces.values()
            )
            return users, workspaces

    # There is deliberately no Python shortcut to log a user in: a student logs in over HTTP
    # with the email and password texted to them (tests/student.py), as Coder requires.

    # HTTP dispatch.

    def default_headers(self) -> dict[str, str]:
        return {"X-Coder-Build-Version": self.version}

    def dispatch(self, request: FakeRequest) -> FakeResponse:
        response = self._dispatch(request)
        with self._lock:
            self._answers.append(
                Answered(request.method, request.path, response.status, self.clock())
            )
        return response

    def _dispatch(self, request: FakeRequest) -> FakeResponse:
        rule = self.take_failure(request.method, request.path)
        if rule is not None and not rule.after:
            return self._injected(rule)
        response = self._handle(request)
        return response if rule is None else self._injected(rule)

    @property
    def answers(self) -> list[Answered]:
        """What the fake answered to each request, in order: (method, path, status, clock())."""
        with self._lock:
            return list(self._answers)

    def _handle(self, request: FakeRequest) -> FakeResponse:
        if not request.path.startswith(API_PREFIX + "/"):
            return FakeResponse(404, _error_body("Route not found."))
        path = request.path[len(API_PREFIX) :]
        headers: dict[str, str] = {}
        try:
            with self._lock:
                # coderd/coderd.go: apiRateLimiter is the first middleware of /api/v2, before
                # routing and before any API key is read, so it keys by client IP and path.
                self._limit(request, "api", self.rate_limit_per_minute, None, headers)
                route, params = self._match(request, path)
                if route.limiter == "login":
                    limit = self._login_limit()
                    self._limit(request, "login", limit, None, headers)
                actor = self._authenticate(request) if route.auth else None
                self._authorize(route, actor)
                response: FakeResponse = getattr(self, route.handler)(
                    request, actor, headers, **params
                )
        except (ApiError, _Answer) as exc:
            response = exc.response
        response.headers = {**headers, **response.headers}
        return response

    def received(self, request: FakeRequest) -> None:
        body: Any = None
        if request.body:
            try:
                body = json.loads(request.body)
            except ValueError:
                body = request.body.decode("utf-8", "replace")
        record = RecordedRequest(request.method, request.path, request.query, body, request.headers)
        with self._lock:
            self._records.append(record)

    def _injected(self, rule: FailRule) -> FakeResponse:
        headers = {}
        if rule.status == 429:
            # go-chi/httprate limiter.go Handler: Retry-After is always the whole window (60s).
            headers["Retry-After"] = rule.retry_after or str(RATE_LIMIT_WINDOW_SECONDS)
            limit = self.rate_limit_per_minute or DEFAULT_API_RATE_LIMIT
            message = f"You've been rate limited for sending more than {limit} requests in 1m0s."
        else:
            if rule.retry_after is not None:
                headers["Retry-After"] = rule.retry_after
            message = "Injected failure from the fake Coder server."
        return FakeResponse(rule.status, _error_body(message), headers)

    # Middleware: rate limits, API keys.

    def _login_limit(self) -> int | None:
        # Rate limiting is all on or all off in the fake: on, the login/password limiters use
        # coderd.go's options.LoginRateLimit (60).
        return None if self.rate_limit_per_minute is None else self.login_rate_limit_per_minute

    def _limit(
        self,
        request: FakeRequest,
        name: str,
        limit: int | None,
        actor: _User | None,
        headers: dict[str, str],
    ) -> None:
        """coderd/httpmw/ratelimit.go RateLimit: httprate keyed by user-or-IP, then endpoint."""
        if limit is None or limit <= 0:
            return  # ratelimit.go: count <= 0 means no limiter at all
        if actor is None:
            # No API key in the context yet: httprate.KeyByIP.
            who = _canonical_ip(request.client_ip)
        else:
            bypass = _go_parse_bool(request.header("X-Coder-Bypass-Ratelimit"))
            if not bypass:
                who = actor.id
            elif self._is_owner(actor):
                return  # a random key per request: owners bypass this limiter
            else:
                # The key func errs; httprate limiter.go answers 428 with http.Error's text.
                text = '"X-Coder-Bypass-Ratelimit" provided but user is not owner\n'
                raise _Answer(
                    FakeResponse(
                        428,
                        text.encode(),
                        {
                            "Content-Type": "text/plain; charset=utf-8",
                            "X-Content-Type-Options": "nosniff",
                        },
                    )
                )
        # httprate.KeyByEndpoint: r.URL.Path (decoded, without the query); composed "ip:path:".
        key = f"{who}:{unquote(request.path)}:"
        allowed, limit_headers = self._limiters[name].hit(key, limit, self.clock())
        headers.update(limit_headers)
        if not allowed:
            message = f"You've been rate limited for sending more than {limit} requests in 1m0s."
            raise ApiError(429, message, headers=dict(headers))

    def _authenticate(self, request: FakeRequest) -> _User:
        """coderd/httpmw/apikey.go ExtractAPIKey, for the owner's token and login sessions."""
        token = request.header("Coder-Session-Token")
        if not token:
            raise ApiError(401, 'Cookie "coder_session_token" or query parameter must be provided.')
        session = self._owner_session if token == self.token else self._sessions.get(token)
        user = self._users.get(session.user_id) if session is not None else None
        if session is None or user is None:
            raise ApiError(401, "API key is invalid.", "The API key secret is invalid.")
        now = _now()
        # apikey.go: LastUsed moves at most hourly, and with it the user's last_seen_at
        # (UpdateUserLastSeenAt also sets updated_at).
        if session.last_used is None or (now - session.last_used).total_seconds() > (
            API_KEY_TOUCH_SECONDS
        ):
            session.last_used = now
            user.last_seen_at = now
            user.updated_at = now
        # apikey.go: a dormant user is activated by using a key; any other inactive status
        # is refused.
        if user.status == "dormant":
            user.status = "active"
            user.updated_at = now
        if user.status != "active":
            raise ApiError(
                401,
                f'User is not active (status = "{user.status}"). '
                "Contact an admin to reactivate your account.",
            )
        return user

    @staticmethod
    def _is_owner(user: _User) -> bool:
        return any(role.get("name") == "owner" for role in user.roles)

    def _authorize(self, route: _Route, actor: _User | None) -> None:
        """The fake's line on members: only their own user routes (no guessing at RBAC)."""
        if actor is None or self._is_owner(actor) or route.member_self:
            return
        raise self._member_refused()

    @staticmethod
    def _member_refused() -> ApiError:
        return ApiError(
            403,
            "Forbidden.",
            "FakeCoder models a member's session token only on their own GET /users/{user}, "
            "PUT /users/{user}/profile and PUT /users/{user}/password.",
        )

    def _new_session(self, user: _User) -> str:
        """coderd/apikey/apikey.go Generate: "<10-char id>-<22-char secret>", never used yet."""
        alphabet = string.ascii_letters + string.digits
        key_id = "".join(secrets.choice(alphabet) for _ in range(10))
        secret = "".join(secrets.choice(alphabet) for _ in range(22))
        token = f"{key_id}-{secret}"
        self._sessions[token] = _Session(user.id)
        return token

    def _drop_sessions(self, user: _User) -> None:
        self._sessions = {t: s for t, s in self._sessions.items() if s.user_id != user.id}

    def _match(self, request: FakeRequest, path: str) -> tuple[_Route, dict[str, str]]:
        path_matched = False
        for route in ROUTES:
            match = route.pattern.fullmatch(path)
            if not match:
                continue
            path_matched = True
            if route.method != request.method:
                continue
            return route, {k: unquote(v) for k, v in match.groupdict().items()}
        if path_matched:
            raise ApiError(405, "Method not allowed.")
        # coderd/coderd.go: /api/v2's NotFound handler, httpapi.RouteNotFound.
        raise ApiError(404, "Route not found.")

    # Request body checks.

    def _read_strings(
        self, request: FakeRequest, go_type: str, fields: tuple[str, ...]
    ) -> dict[str, str]:
        """coderd/httpapi/httpapi.go Read's json.Decode into a struct of string fields.

        Go's encoding/json matches keys case-insensitively (an exact match first), leaves a
        field at "" for a missing key or a null, and fails on a value of another type.
        """
        if not request.body:
            raise ApiError(400, "Request body must be valid JSON.", "EOF")
        try:
            body = json.loads(request.body)
        except ValueError as exc:
            raise ApiError(400, "Request body must be valid JSON.", str(exc)) from None
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ApiError(
                400,
                "Request body must be valid JSON.",
                f"json: cannot unmarshal {_json_kind(body)} into Go value of type {go_type}",
            )
        values: dict[str, str] = {}
        for name in fields:
            key = name if name in body else next((k for k in body if k.lower() == name), None)
            value = body.get(key) if key is not None else None
            if value is None:
                values[name] = ""
            elif isinstance(value, str):
                values[name] = value
            else:
                struct = go_type.rsplit(".", 1)[-1]
                raise ApiError(
                    400,
                    "Request body must be valid JSON.",
                    f"json: cannot unmarshal {_json_kind(value)} into Go struct field "
                    f"{struct}.{name} of type string",
                )
        return values

    def _body(self, request: FakeRequest, definition: str) -> dict[str, Any]:
        """Decode and check a body as Coder's httpapi.Read does (JSON, then field rules)."""
        if not request.body:
            raise ApiError(400, "Request body must be valid JSON.", "EOF")
        try:
            body = json.loads(request.body)
        except ValueError as exc:
            raise ApiError(400, "Request body must be valid JSON.", str(exc)) from None
        if body is None:
            body = {}
        if isinstance(body, dict):
            # Go decodes a JSON null into the zero value: the field is simply left unset.
            body = {k: v for k, v in body.items() if v is not None}
        errors = self._schema.errors(definition, body)
        decode_errors = [e for e in errors if e.validator in ("type", "format")]
        if decode_errors:
            first = decode_errors[0]
            where = ".".join(str(p) for p in first.absolute_path) or "body"
            raise ApiError(400, "Request body must be valid JSON.", f"{where}: {first.message}")
        validations = self._schema_validations(errors)
        if validations:
            raise ApiError(400, "Validation failed.", validations=validations)
        return body

    @staticmethod
    def _schema_validations(errors: list[Any]) -> list[dict[str, str]]:
        found: dict[str, dict[str, str]] = {}
        for error in errors:
            if error.validator == "required":
                for name in error.validator_value:
                    if name not in error.instance:
                        found[name] = _validation(
                            name, 'Validation failed for tag "required" with value: ""'
                        )
                continue
            name = str(error.absolute_path[0]) if error.absolute_path else "body"
            tag = "oneof" if error.validator == "enum" else str(error.validator)
            found[name] = _validation(
                name, f'Validation failed for tag "{tag}" with value: "{error.instance}"'
            )
        return list(found.values())

    # Lookups.

    def _find_org(self, value: str) -> _Org | None:
        if value.lower() in ("default", NIL_UUID):
            return self._orgs[DEFAULT_ORG_ID]
        if _is_uuid(value):
            return self._orgs.get(str(uuid.UUID(value)))
        return next((o for o in self._orgs.values() if o.name.lower() == value.lower()), None)

    def _org_param(self, value: str) -> _Org:
        org = self._find_org(value)
        if org is None:
            raise ApiError(404, "Resource not found or you do not have access to this resource")
        return org

    def _user_by_name(self, username: str) -> _User | None:
        name = username.lower()
        return next(
            (u for u in self._users.values() if not u.deleted and u.username.lower() == name),
            None,
        )

    def _user_by_email(self, email: str) -> _User | None:
        # coderd/database/queries/users.sql GetUserByEmailOrUsername with Username "" (as
        # userauth.go loginRequest calls it): LOWER(email) = LOWER(@email), deleted = false.
        wanted = email.lower()
        return next(
            (u for u in self._users.values() if not u.deleted and u.email.lower() == wanted),
            None,
        )

    def _user_param(self, value: str, actor: _User | None) -> _User:
        """coderd/httpmw/userparam.go extractUserContext: "me", a UUID, or a username.

        "me" and a UUID go through GetUserByID, which does not filter deleted rows, so a
        deleted user is found by id on every /users/{user} route. A username goes through
        GetUserByEmailOrUsername, which never finds a deleted user.
        """
        user: _User | None
        if value == "me":
            user = actor
        elif _is_uuid(value):
            user = self._users.get(str(uuid.UUID(value)))
        else:
            user = self._user_by_name(value)
        if user is None:
            raise ApiError(
                400, '"user" must be an existing uuid or username.', f'queried user="{value}"'
            )
        if actor is not None and not self._is_owner(actor) and user.id != actor.id:
            raise self._member_refused()
        return user

    def _workspace_param(self, value: str) -> _Workspace:
        if not _is_uuid(value):
            raise ApiError(400, f'Invalid UUID "{value}".')
        workspace = self._workspaces.get(str(uuid.UUID(value)))
        if workspace is None:
            raise ApiError(404, "Resource not found or you do not have access to this resource")
        return workspace

    # Build progression.

    def _stage_now(self, build: _Build, *, observe: bool) -> int:
        """Advance the build (monotonically) and return its stage; `observe` counts a poll."""
        if build.stage < 2:
            seen_before = build.polls
            polls, seconds = self.build_polls, self.build_seconds
            by_polls = 0 if polls is None else (2 if polls <= 0 else seen_before // polls)
            elapsed = time.monotonic() - build.created_mono
            by_time = 0 if seconds is None else (2 if seconds <= 0 else int(elapsed / seconds))
            stage = min(2, max(build.stage, by_polls, by_time))
            if stage >= 1 and build.started_at is None:
                build.started_at = _now()
            if stage == 2:
                build.completed_at = _now()
            build.stage = stage
        if observe:
            build.polls += 1
        return build.stage

    def _is_active(self, build: _Build) -> bool:
        return self._stage_now(build, observe=False) < 2

    def _is_deleted(self, workspace: _Workspace) -> bool:
        """workspaces.deleted, set once a delete build's job succeeds (never unset)."""
        latest = workspace.latest
        if (
            not workspace.deleted
            and latest.transition == "delete"
            and not latest.fail
            and self._stage_now(latest, observe=False) == 2
        ):
            # provisionerdserver CompleteJob: UpdateWorkspaceDeletedByID on a successful delete;
            # a failed delete (FailJob) leaves the workspace alive.
            workspace.deleted = True
        return workspace.deleted

    def _new_build(self, workspace: _Workspace, transition: str, fail: bool) -> _Build:
        number = workspace.builds[-1].build_number + 1 if workspace.builds else 1
        template = self._templates.get(workspace.template_id)
        build = _Build(
            id=str(uuid.uuid4()),
            workspace_id=workspace.id,
            build_number=number,
            transition=transition,
            initiator_id=self.owner.id,
            template_version_id=template.active_version_id if template else NIL_UUID,
            created_at=_now(),
            created_mono=time.monotonic(),
            fail=fail,
        )
        workspace.builds.append(build)
        workspace.updated_at = build.created_at
        self._builds[build.id] = build
        return build

    # Rendering.

    def _org_json(self, org: _Org) -> dict[str, Any]:
        return {
            "id": org.id,
            "name": org.name,
            "display_name": org.display_name,
            "description": "",
            "icon": "",
            "is_default": org.is_default,
            "created_at": _ts(org.created_at),
            "updated_at": _ts(org.created_at),
        }

    def _user_json(self, user: _User) -> dict[str, Any]:
        return {
            "id": user.id,
            "username": user.username,
            "email": user.email,
            "name": user.name,
            "avatar_url": "",
            "status": user.status,
            "login_type": user.login_type,
            "theme_preference": "",
            "organization_ids": list(user.organization_ids),
            "roles": [dict(r) for r in user.roles],
            "created_at": _ts(user.created_at),
            "updated_at": _ts(user.updated_at),
            "last_seen_at": _ts(user.last_seen_at),
        }

    def _template_json(self, template: _Template) -> dict[str, Any]:
        org = self._orgs[template.organization_id]
        return {
            "id": template.id,
            "name": template.name,
            "display_name": template.display_name,
            "description": "",
            "icon": "",
            "provisioner": "terraform",
            "organization_id": org.id,
            "organization_name": org.name,
            "organization_display_name": org.display_name,
            "organization_icon": "",
            "active_version_id": template.active_version_id,
            "active_user_count": 0,
            "deprecated": template.deprecated,
            "deprecation_message": "Deprecated." if template.deprecated else "",
            "default_ttl_ms": template.default_ttl_ms,
            "activity_bump_ms": 3600000,
            "failure_ttl_ms": 0,
            "time_til_dormant_ms": 0,
            "time_til_dormant_autodelete_ms": 0,
            "allow_user_autostart": True,
            "allow_user_autostop": True,
            "allow_user_cancel_workspace_jobs": False,
            "require_active_version": False,
            "created_by_id": self.owner.id,
            "created_by_name": self.owner.username,
            "created_at": _ts(template.created_at),
            "updated_at": _ts(template.created_at),
            "build_time_stats": {
                "start": {"P50": None, "P95": None},
                "stop": {"P50": None, "P95": None},
                "delete": {"P50": None, "P95": None},
            },
            "max_port_share_level": "owner",
            "cors_behavior": "simple",
            "use_classic_parameter_flow": template.classic_parameter_flow,
        }

    def _build_json(self, build: _Build) -> dict[str, Any]:
        workspace = self._workspaces[build.workspace_id]
        owner = self._users[workspace.owner_id]
        stage = build.stage
        failed = stage == 2 and build.fail
        status = "failed" if failed else _STATUS_BY_STAGE[build.transition][stage]
        job_status = "failed" if failed else _JOB_STATUS_BY_STAGE[stage]
        return {
            "id": build.id,
            "build_number": build.build_number,
            "workspace_id": workspace.id,
            "workspace_name": workspace.name,
            "workspace_owner_id": owner.id,
            "workspace_owner_name": owner.username,
            "workspace_owner_avatar_url": "",
            "template_version_id": build.template_version_id,
            "template_version_name": "v1",
            "template_version_preset_id": None,
            "transition": build.transition,
            "status": status,
            "reason": "initiator",
            "initiator_id": build.initiator_id,
            "initiator_name": self.owner.username,
            "job": {
                "id": build.id,
                "status": job_status,
                "type": "workspace_build",
                "error": "terraform apply: injected failure" if failed else None,
                "error_code": None,
                "created_at": _ts(build.created_at),
                "started_at": _ts_or_null(build.started_at),
                "completed_at": _ts_or_null(build.completed_at),
                "canceled_at": None,
                "organization_id": workspace.organization_id,
                "file_id": NIL_UUID,
                "tags": {"scope": "organization", "owner": ""},
                "queue_position": 0,
                "queue_size": 0,
                "logs_overflowed": False,
                "input": {"workspace_build_id": build.id},
            },
            "resources": [],
            "daily_cost": 0,
            "deadline": None,
            "max_deadline": None,
            "matched_provisioners": {"count": 1, "available": 1},
            "has_ai_task": False,
            "has_external_agent": False,
            "created_at": _ts(build.created_at),
            "updated_at": _ts(build.completed_at or build.created_at),
        }

    def _workspace_json(self, workspace: _Workspace) -> dict[str, Any]:
        owner = self._users[workspace.owner_id]
        org = self._orgs[workspace.organization_id]
        template = self._templates.get(workspace.template_id)
        return {
            "id": workspace.id,
            "name": workspace.name,
            "owner_id": owner.id,
            "owner_name": owner.username,
            "owner_avatar_url": "",
            "organization_id": org.id,
            "organization_name": org.name,
            "template_id": workspace.template_id,
            "template_name": template.name if template else "",
            "template_display_name": template.display_name if template else "",
            "template_icon": "",
            "template_active_version_id": template.active_version_id if template else NIL_UUID,
            "template_require_active_version": False,
            "template_allow_user_cancel_workspace_jobs": False,
            "template_use_classic_parameter_flow": bool(
                template and template.classic_parameter_flow
            ),
            "latest_build": self._build_json(workspace.latest),
            "latest_app_status": None,
            "outdated": False,
            "autostart_schedule": workspace.autostart_schedule,
            "ttl_ms": workspace.ttl_ms,
            "automatic_updates": workspace.automatic_updates,
            "last_used_at": _ts(workspace.updated_at),
            "deleting_at": None,
            "dormant_at": None,
            "next_start_at": None,
            "health": {"healthy": True, "failing_agents": []},
            "allow_renames": False,
            "favorite": False,
            "is_prebuild": False,
            "created_at": _ts(workspace.created_at),
            "updated_at": _ts(workspace.updated_at),
        }

    # Handlers: one per route, each returning the body the real server gives.

    def _buildinfo(
        self, request: FakeRequest, actor: _User | None, headers: dict[str, str]
    ) -> FakeResponse:
        return FakeResponse(
            200,
            {
                "version": self.version,
                "external_url": "https://github.com/coder/coder/commit/fake",
                "dashboard_url": self.url,
                "deployment_id": self.deployment_id,
                "agent_api_version": "2.0",
                "provisioner_api_version": "1.0",
                "telemetry": False,
                "upgrade_message": "",
                "workspace_proxy": False,
                "webpush_public_key": "",
            },
        )

    def _list_organizations(
        self, request: FakeRequest, actor: _User | None, headers: dict[str, str]
    ) -> FakeResponse:
        orgs = sorted(self._orgs.values(), key=lambda o: (not o.is_default, o.name))
        return FakeResponse(200, [self._org_json(o) for o in orgs])

    def _get_organization(
        self, request: FakeRequest, actor: _User | None, headers: dict[str, str], org: str
    ) -> FakeResponse:
        return FakeResponse(200, self._org_json(self._org_param(org)))

    def _org_templates(
        self, request: FakeRequest, actor: _User | None, headers: dict[str, str], org: str
    ) -> FakeResponse:
        org_id = self._org_param(org).id
        templates = [t for t in self._templates.values() if t.organization_id == org_id]
        return FakeResponse(
            200, [self._template_json(t) for t in sorted(templates, key=lambda t: t.name.lower())]
        )

    def _search_templates(
        self, request: FakeRequest, actor: _User | None, headers: dict[str, str]
    ) -> FakeResponse:
        terms, filters = self._parse_query(request.param("q"), TEMPLATE_QUERY_KEYS, "template")
        templates = sorted(self._templates.values(), key=lambda t: t.name.lower())
        return FakeResponse(
            200,
            [
                self._template_json(t)
                for t in templates
                if self._template_matches(t, terms, filters)
            ],
        )

    def _template_matches(
        self, template: _Template, terms: list[str], filters: dict[str, str]
    ) -> bool:
        name = template.name.lower()
        org = self._orgs[template.organization_id]
        checks = [
            all(term in name for term in terms),
            "exact_name" not in filters or name == filters["exact_name"],
            "name" not in filters or filters["name"] in name,
            "display_name" not in filters
            or filters["display_name"] in template.display_name.lower(),
            "deprecated" not in filters
            or str(template.deprecated).lower() == filters["deprecated"],
            "organization" not in filters or filters["organization"] in (org.id, org.name.lower()),
        ]
        return all(checks)

    def _get_template(
        self, request: FakeRequest, actor: _User | None, headers: dict[str, str], template: str
    ) -> FakeResponse:
        if not _is_uuid(template):
            raise ApiError(400, f'Invalid UUID "{template}".')
        found = self._templates.get(str(uuid.UUID(template)))
        if found is None:
            raise ApiError(404, "Resource not found or you do not have access to this resource")
        return FakeResponse(200, self._template_json(found))

    def _get_user(
        self, request: FakeRequest, actor: _User | None, headers: dict[str, str], user: str
    ) -> FakeResponse:
        # coderd/users.go userByName: whatever ExtractUserParam found, a deleted row by id too.
        return FakeResponse(200, self._user_json(self._user_param(user, actor)))

    def _login(
        self, request: FakeRequest, actor: _User | None, headers: dict[str, str]
    ) -> FakeResponse:
        """coderd/userauth.go postLogin and loginRequest."""
        body = self._read_strings(
            request, "codersdk.LoginWithPasswordRequest", ("email", "password")
        )
        email, password = body["email"], body["password"]
        # codersdk/users.go LoginWithPasswordRequest: email `validate:"required,email"`,
        # password `validate:"required"`; httpapi.Read reports each failing field.
        validations = []
        if not email:
            validations.append(_tag_failed("email", "required", email))
        elif not is_email(email):
            validations.append(_tag_failed("email", "email", email))
        if not password:
            validations.append(_tag_failed("password", "required", password))
        if validations:
            raise ApiError(400, "Validation failed.", validations=validations)
        # loginRequest: GetUserByEmailOrUsername(Email: req.Email) looks up by email only
        # (case-insensitively, live users only); a missing user compares as an empty hash.
        user = self._user_by_email(email)
        if not _password_matches(user.password if user else "", password):
            raise ApiError(401, "Incorrect email or password.")
        login_type = user.login_type if user else ""
        if login_type != "password":
            # Reached only when the password matched: for a user without a password (or no
            # user at all) that is userpassword.Compare's simulated "hunter2".
            raise ApiError(
                403,
                'Incorrect login type, attempting to use "password" but user is of login '
                f'type "{login_type}"',
            )
        assert user is not None
        now = _now()
        # loginRequest: ActivateDormantUser (UpdateUserStatus sets status and updated_at only).
        if user.status == "dormant":
            user.status = "active"
            user.updated_at = now
        if user.status != "active":
            raise ApiError(
                401,
                f"Your account is {user.status}. Contact an admin to reactivate your account.",
            )
        # postLogin: createAPIKey stores a key whose LastUsed is zero; last_seen_at moves the
        # first time the key is used (httpmw/apikey.go), not here.
        token = self._new_session(user)
        return FakeResponse(
            201,
            {"session_token": token},
            {"Set-Cookie": f"coder_session_token={token}; Path=/; HttpOnly; SameSite=Lax"},
        )

    def _put_profile(
        self, request: FakeRequest, actor: _User | None, headers: dict[str, str], user: str
    ) -> FakeResponse:
        """coderd/users.go putUserProfile."""
        target = self._user_param(user, actor)
        body = self._read_strings(
            request, "codersdk.UpdateUserProfileRequest", ("username", "name")
        )
        username, name = body["username"], body["name"]
        # codersdk/users.go UpdateUserProfileRequest: username `validate:"required,username"`,
        # name `validate:"user_real_name"` (codersdk/name.go UserRealNameValid).
        validations = []
        if not username:
            validations.append(_tag_failed("username", "required", username))
        elif name_problem(username):
            validations.append(_tag_failed("username", "username", username))
        if len(name) > MAX_REAL_NAME_LENGTH or name != name.strip():
            validations.append(_tag_failed("name", "user_real_name", name))
        if validations:
            raise ApiError(400, "Validation failed.", validations=validations)
        # GetUserByEmailOrUsername(Username: ...): a live user with that name, any case.
        existing = self._user_by_name(username)
        if existing is not None and existing.id != target.id:
            raise ApiError(
                409,
                "A user with this username already exists.",
                validations=[_validation("username", "This username is already in use.")],
            )
        # UpdateUserProfile writes the name as sent: leaving "name" out clears it.
        target.username = username
        target.name = name
        target.updated_at = _now()
        return FakeResponse(200, self._user_json(target))

    def _list_users(
        self, request: FakeRequest, actor: _User | None, headers: dict[str, str]
    ) -> FakeResponse:
        terms, filters = self._parse_query(request.param("q"), USER_QUERY_KEYS, "user")
        users = sorted(
            (
                u
                for u in self._users.values()
                if not u.deleted and self._user_matches(u, terms, filters)
            ),
            key=lambda u: u.username.lower(),
        )
        after_id = request.param("after_id")
        if after_id:
            ids = [u.id for u in users]
            users = users[ids.index(after_id) + 1 :] if after_id in ids else []
        page = self._page(users, request)
        return FakeResponse(200, {"users": [self._user_json(u) for u in page], "count": len(users)})

    def _user_matches(self, user: _User, terms: list[str], filters: dict[str, str]) -> bool:
        role_names = {r["name"] for r in user.roles} | {"member"}
        checks = [
            # users.sql GetUsers: email ILIKE '%search%' OR username ILIKE '%search%'.
            all(
                _like(f"%{term}%", user.email) or _like(f"%{term}%", user.username)
                for term in terms
            ),
            "status" not in filters or user.status in filters["status"].split(","),
            "role" not in filters or filters["role"] in role_names,
            "name" not in filters or filters["name"] in user.name.lower(),
            "login_type" not in filters or user.login_type in filters["login_type"].split(","),
            self._time_ok(user.created_at, filters, "created"),
            self._time_ok(user.last_seen_at, filters, "last_seen"),
        ]
        return all(checks)

    def _time_ok(self, value: datetime | None, filters: dict[str, str], prefix: str) -> bool:
        for suffix, before in (("_before", True), ("_after", False)):
            raw = filters.get(prefix + suffix)
            if raw is None:
                continue
            bound = _parse_time(raw)
            if bound is None:
                raise ApiError(
                    400,
                    "Invalid user search query.",
                    validations=[
                        _validation(
                            prefix + suffix,
                            f"Query param {prefix + suffix!r} must be a "
                            "valid date format (2006-01-02T15:04:05Z07:00)",
                        )
                    ],
                )
            moment = value or datetime.min.replace(tzinfo=UTC)
            if (before and moment >= bound) or (not before and moment <= bound):
                return False
        return True

    @staticmethod
    def _parse_query(q: str, keys: set[str], kind: str) -> tuple[list[str], dict[str, str]]:
        terms: list[str] = []
        filters: dict[str, str] = {}
        for part in q.lower().split():
            if ":" not in part:
                terms.append(part)
                continue
            key, value = part.split(":", 1)
            if key not in keys:
                raise ApiError(
                    400,
                    f"Invalid {kind} search query.",
                    validations=[_validation(key, f'"{key}" is not a valid query param')],
                )
            filters[key] = value
        return terms, filters

    @staticmethod
    def _page(items: list[Any], request: FakeRequest) -> list[Any]:
        try:
            offset = int(request.param("offset", "0") or 0)
            limit = int(request.param("limit", "0") or 0)
        except ValueError:
            raise ApiError(400, "Query parameters have invalid values.") from None
        if offset < 0 or limit < 0:
            raise ApiError(400, "Query parameters have invalid values.")
        return items[offset : offset + limit] if limit else items[offset:]

    def _create_user(
        self, request: FakeRequest, actor: _User | None, headers: dict[str, str]
    ) -> FakeResponse:
        body = self._body(request, "codersdk.CreateUserRequestWithOrgs")
        self._check_user_fields(body)
        login_type = body.get("login_type") or "password"
        password = body.get("password", "")
        if login_type != "password" and password:
            raise ApiError(
                400, f'Password cannot be set for non-password ("{login_type}") authentication.'
            )
        org_ids = list(body.get("organization_ids") or [])
        if not org_ids and body.get("organization_id"):
            org_ids = [body["organization_id"]]  # the pre-multi-org field is still honoured
        if not org_ids:
            # coderd/users.go postUser.
            raise ApiError(
                400,
                "No organization specified to place the user as a member of. It is required "
                "to specify at least one organization id to place the user in.",
                "required at least 1 value for the array 'organization_ids'",
                validations=[
                    _validation("organization_ids", "Missing values, this cannot be empty")
                ],
            )
        if self._user_by_name(body["username"]) or self._email_taken(body["email"]):
            raise ApiError(409, "User already exists.")
        orgs = []
        for org_id in org_ids:
            org = self._find_org(str(org_id)) if _is_uuid(org_id) else None
            if org is None:
                raise ApiError(404, f'Organization does not exist with the provided id "{org_id}".')
            orgs.append(org.id)
        if login_type == "password":
            problem = password_problem(password)
            if problem:
                raise ApiError(
                    400,
                    "Password not strong enough!",
                    validations=[_validation("password", problem)],
                )
        user = self._add_user(
            body["username"],
            body["email"],
            password,
            name=body.get("name", ""),
            status=body.get("user_status") or "dormant",
            login_type=login_type,
            organization_ids=list(dict.fromkeys(orgs)),
        )
        return FakeResponse(201, self._user_json(user))

    def _check_user_fields(self, body: dict[str, Any]) -> None:
        validations = []
        username, email = body.get("username", ""), body.get("email", "")
        name = body.get("name", "")
        if not username or name_problem(username):
            tag = "required" if not username else "username"
            validations.append(
                _validation(
                    "username", f'Validation failed for tag "{tag}" with value: "{username}"'
                )
            )
        if not email or not is_email(email):
            tag = "required" if not email else "email"
            validations.append(
                _validation("email", f'Validation failed for tag "{tag}" with value: "{email}"')
            )
        if len(name) > 128 or name != name.strip():
            validations.append(
                _validation(
                    "name", f'Validation failed for tag "user_real_name" with value: "{name}"'
                )
            )
        if validations:
            raise ApiError(400, "Validation failed.", validations=validations)

    def _email_taken(self, email: str) -> bool:
        email = email.lower()
        return any(not u.deleted and u.email.lower() == email for u in self._users.values())

    def _add_user(
        self,
        username: str,
        email: str,
        password: str,
        *,
        name: str = "",
        status: str = "active",
        login_type: str = "password",
        organization_ids: list[str] | None = None,
        roles: list[dict[str, str]] | None = None,
    ) -> _User:
        now = _now()
        user = _User(
            id=str(uuid.uuid4()),
            username=username,
            email=email,
            name=name,
            password=password,
            login_type=login_type,
            status=status,
            organization_ids=organization_ids or [DEFAULT_ORG_ID],
            roles=roles or [],
            created_at=now,
            updated_at=now,
        )
        self._users[user.id] = user
        return user

    def _set_status(
        self,
        request: FakeRequest,
        actor: _User | None,
        headers: dict[str, str],
        user: str,
        action: str,
    ) -> FakeResponse:
        # coderd/users.go putUserStatus: no check of `deleted`, so a deleted user fetched by id
        # is suspended or activated like any other.
        target = self._user_param(user, actor)
        if action == "suspend":
            if actor is not None and target.id == actor.id:
                raise ApiError(400, "You cannot suspend yourself.")
            if self._is_owner(target):
                raise ApiError(
                    400,
                    'You cannot suspend a user with the "owner" role. You must '
                    "remove the role first.",
                )
        target.status = "suspended" if action == "suspend" else "active"
        target.updated_at = _now()
        return FakeResponse(200, self._user_json(target))

    def _set_password(
        self, request: FakeRequest, actor: _User | None, headers: dict[str, str], user: str
    ) -> FakeResponse:
        """coderd/users.go putUserPassword (a deleted user fetched by id is updated too)."""
        target = self._user_param(user, actor)
        # coderd.go: r.Route("/password", RateLimit(options.LoginRateLimit)) runs after
        # ExtractUserParam and apiKeyMiddleware, so it keys by the token's user, not the IP.
        self._limit(request, "password", self._login_limit(), actor, headers)
        body = self._body(request, "codersdk.UpdateUserPasswordRequest")
        password = body.get("password", "")
        old_password = body.get("old_password", "")
        if not password:
            raise ApiError(
                400, "Validation failed.", validations=[_tag_failed("password", "required", "")]
            )
        if target.login_type != "password":
            raise ApiError(400, "Users without password login type cannot change their password.")
        if actor is not None and actor.id == target.id and not old_password:
            raise ApiError(400, "Old password is required.")
        problem = password_problem(password)
        if problem:
            raise ApiError(400, "Invalid password.", validations=[_validation("password", problem)])
        if old_password and not _password_matches(target.password, old_password):
            raise ApiError(
                400,
                "Old password is incorrect.",
                validations=[_validation("old_password", "Old password is incorrect.")],
            )
        if _password_matches(target.password, password):
            raise ApiError(400, "New password cannot match old password.")
        # UpdateUserHashedPassword leaves updated_at alone; DeleteAPIKeysByUserID logs the
        # user out everywhere.
        target.password = password
        self._drop_sessions(target)
        return FakeResponse(204)

    def _validate_password(
        self, request: FakeRequest, actor: _User | None, headers: dict[str, str]
    ) -> FakeResponse:
        body = self._body(request, "codersdk.ValidateUserPasswordRequest")
        problem = password_problem(body.get("password", ""))
        return FakeResponse(200, {"valid": problem is None, "details": problem or ""})

    def _delete_user(
        self, request: FakeRequest, actor: _User | None, headers: dict[str, str], user: str
    ) -> FakeResponse:
        """coderd/users.go deleteUser."""
        # A deleted user fetched by id passes every check again and answers 200 once more;
        # only a username (never matching a deleted user) gets ExtractUserParam's 400.
        target = self._user_param(user, actor)
        if actor is not None and target.id == actor.id:
            raise ApiError(403, "You cannot delete yourself!")
        # GetWorkspaces(OwnerID) skips workspaces whose delete build has succeeded only.
        for workspace in self._workspaces.values():
            if workspace.owner_id == target.id and not self._is_deleted(workspace):
                raise ApiError(
                    417,
                    "You cannot delete a user that has workspaces. Delete their "
                    "workspaces and try again!",
                )
        # UpdateUserDeletedByID sets deleted only; the delete_deleted_user_resources trigger
        # removes the user's API keys.
        target.deleted = True
        self._drop_sessions(target)
        return FakeResponse(200, {"message": "User has been deleted!"})

    def _create_workspace(
        self,
        request: FakeRequest,
        actor: _User | None,
        headers: dict[str, str],
        user: str,
        org: str | None = None,
    ) -> FakeResponse:
        owner = self._user_param(user, actor)
        member_org = self._org_param(org) if org is not None else None
        if member_org is not None and member_org.id not in owner.organization_ids:
            raise ApiError(404, "Resource not found or you do not have access to this resource")
        body = self._body(request, "codersdk.CreateWorkspaceRequest")
        name = body.get("name", "")
        if name_problem(name):
            raise ApiError(
                400,
                "Validation failed.",
                validations=[
                    _validation(
                        "name", f'Validation failed for tag "workspace_name" with value: "{name}"'
                    )
                ],
            )
        template = self._workspace_template(body)
        if member_org is not None and template.organization_id != member_org.id:
            raise ApiError(400, "Template is not in the organization.")
        if template.deprecated:
            raise ApiError(
                400,
                f'Template "{template.name}" has been deprecated, and cannot be '
                "used to create a new workspace.",
            )
        ttl_ms = body.get("ttl_ms")
        if ttl_ms is not None and ttl_ms < 60000:
            raise ApiError(
                400,
                "Invalid Workspace Time to Shutdown.",
                validations=[
                    _validation("ttl_ms", "time until shutdown must be at least one minute")
                ],
            )
        if any(
            ws.owner_id == owner.id and ws.name.lower() == name.lower() and not self._is_deleted(ws)
            for ws in self._workspaces.values()
        ):
            raise ApiError(
                409,
                f'Workspace "{name}" already exists.',
                validations=[
                    _validation("name", "This value is already in use and should be unique.")
                ],
            )
        if template.classic_parameter_flow:
            _check_build_parameters(template.parameters, body.get("rich_parameter_values") or [])
        workspace = self._add_workspace(owner, template, body)
        return FakeResponse(201, self._workspace_json(workspace))

    def _workspace_template(self, body: dict[str, Any]) -> _Template:
        template_id, version_id = body.get("template_id"), body.get("template_version_id")
        if template_id and version_id:
            raise ApiError(400, "You cannot specify both a Template ID and a Template Version ID.")
        if not template_id and not version_id:
            raise ApiError(400, "You must provide either a template_id or a template_version_id.")
        for template in self._templates.values():
            if template.id == template_id or template.active_version_id == version_id:
                return template
        raise ApiError(
            400,
            f'Template "{template_id or version_id}" doesn\'t exist.',
            validations=[_validation("template_id", "template not found")],
        )

    def _add_workspace(self, owner: _User, template: _Template, body: dict[str, Any]) -> _Workspace:
        now = _now()
        workspace = _Workspace(
            id=str(uuid.uuid4()),
            name=body["name"],
            owner_id=owner.id,
            organization_id=template.organization_id,
            template_id=template.id,
            created_at=now,
            updated_at=now,
            ttl_ms=body.get("ttl_ms"),
            autostart_schedule=body.get("autostart_schedule"),
            automatic_updates=body.get("automatic_updates") or "never",
            rich_parameter_values=list(body.get("rich_parameter_values") or []),
        )
        self._workspaces[workspace.id] = workspace
        fail = self.fail_start_builds > 0
        if fail:
            self.fail_start_builds -= 1
        self._new_build(workspace, "start", fail)
        return workspace

    def _list_workspaces(
        self, request: FakeRequest, actor: _User | None, headers: dict[str, str]
    ) -> FakeResponse:
        terms, filters = self._parse_query(request.param("q"), WORKSPACE_QUERY_KEYS, "workspace")
        shown = []
        for workspace in self._workspaces.values():
            self._stage_now(workspace.latest, observe=True)
            if not self._is_deleted(workspace) and self._workspace_matches(
                workspace, terms, filters
            ):
                shown.append(workspace)
        shown.sort(key=lambda ws: (self._users[ws.owner_id].username.lower(), ws.name.lower()))
        page = self._page(shown, request)
        return FakeResponse(
            200, {"workspaces": [self._workspace_json(ws) for ws in page], "count": len(shown)}
        )

    def _workspace_matches(
        self, workspace: _Workspace, terms: list[str], filters: dict[str, str]
    ) -> bool:
        owner = self._users[workspace.owner_id].username.lower()
        name = workspace.name.lower()
        for term in terms:
            # A bare "owner/name" or "name" also works, as in Coder's search box.
            term_owner, _, term_name = term.rpartition("/")
            if (term_owner and term_owner != owner) or term_name not in name:
                return False
        wanted_owner = filters.get("owner")
        if wanted_owner == "me":
            wanted_owner = self.owner.username.lower()
        template = self._templates.get(workspace.template_id)
        org = self._orgs[workspace.organization_id]
        status = self._build_json(workspace.latest)["status"]
        checks = [
            wanted_owner is None or wanted_owner == owner,
            "name" not in filters or filters["name"] in name,
            "template" not in filters
            or (template is not None and template.name.lower() == filters["template"]),
            "status" not in filters or status == filters["status"],
            "id" not in filters or workspace.id == filters["id"],
            "organization" not in filters or filters["organization"] in (org.id, org.name.lower()),
        ]
        return all(checks)

    def _get_workspace(
        self, request: FakeRequest, actor: _User | None, headers: dict[str, str], workspace: str
    ) -> FakeResponse:
        """coderd/workspaces.go workspace.

        The 410 is this handler's, not the middleware's: httpmw/workspaceparam.go
        ExtractWorkspaceParam uses GetWorkspaceByID, which finds deleted workspaces, so the
        other /workspaces/{workspace} routes (builds) work on a deleted workspace.
        """
        found = self._workspace_param(workspace)
        self._stage_now(found.latest, observe=True)
        raw = request.param("include_deleted")
        show_deleted = False
        if raw != "":
            parsed = _go_parse_bool(raw)
            if parsed is None:
                raise ApiError(
                    400,
                    f'Invalid boolean value "{raw}" for "include_deleted" query param.',
                    validations=[_validation("deleted", "Must be a valid boolean")],
                )
            show_deleted = parsed
        if self._is_deleted(found) and not show_deleted:
            # Message as of coder/coder#25826 (it used to say '?deleted=true').
            raise ApiError(
                410,
                f'Workspace "{found.id}" was deleted, you can view this '
                "workspace by specifying '?include_deleted=true' and trying again.",
            )
        return FakeResponse(200, self._workspace_json(found))

    def _list_builds(
        self, request: FakeRequest, actor: _User | None, headers: dict[str, str], workspace: str
    ) -> FakeResponse:
        found = self._workspace_param(workspace)
        self._stage_now(found.latest, observe=True)
        builds = list(reversed(found.builds))
        return FakeResponse(200, [self._build_json(b) for b in self._page(builds, request)])

    def _create_build(
        self, request: FakeRequest, actor: _User | None, headers: dict[str, str], workspace: str
    ) -> FakeResponse:
        """coderd/workspacebuilds.go postWorkspaceBuilds, then wsbuilder.go Build."""
        found = self._workspace_param(workspace)
        body = self._body(request, "codersdk.CreateWorkspaceBuildRequest")
        transition = body["transition"]
        orphan = bool(body.get("orphan"))
        if self._is_deleted(found) and transition != "delete":
            # coder/coder#20584 refuses start and stop on a deleted workspace and keeps delete
            # allowed. Its status and wording were not in the stored source; 410 and this text
            # are the fake's own, unverified.
            raise ApiError(410, f'Workspace "{found.id}" was deleted.')
        if orphan and transition != "delete":
            raise ApiError(400, "Orphan is only permitted when deleting a workspace.")
        # wsbuilder.go checkRunningBuild. A delete build on an already deleted workspace is
        # accepted (201) like any other: the workspace stays deleted.
        if self._is_active(found.latest):
            raise ApiError(409, "A workspace build is already active.")
        fail = False
        if transition == "delete" and not orphan and self.fail_delete_builds > 0:
            self.fail_delete_builds -= 1
            fail = True
        if transition == "start" and self.fail_start_builds > 0:
            self.fail_start_builds -= 1
            fail = True
        build = self._new_build(found, transition, fail)
        return FakeResponse(201, self._build_json(build))

    def _get_build(
        self, request: FakeRequest, actor: _User | None, headers: dict[str, str], build: str
    ) -> FakeResponse:
        if not _is_uuid(build):
            raise ApiError(400, f'Invalid UUID "{build}".')
        found = self._builds.get(str(uuid.UUID(build)))
        if found is None:
            raise ApiError(404, "Resource not found or you do not have access to this resource")
        self._stage_now(found, observe=True)
        return FakeResponse(200, self._build_json(found))

    def _template_version_rich_parameters(
        self, request: FakeRequest, actor: _User | None, headers: dict[str, str], version: str
    ) -> FakeResponse:
        """coderd/templateversions.go templateVersionRichParameters.

        httpmw/templateversionparam.go ExtractTemplateVersionParam: a malformed id is 400, an
        unknown one 404. The fake's versions have always finished importing, so the handler's
        "Job hasn't completed!" never applies.
        """
        if not _is_uuid(version):
            raise ApiError(400, f'Invalid UUID "{version}".')
        version_id = str(uuid.UUID(version))
        active = next(
            (t for t in self._templates.values() if t.active_version_id == version_id), None
        )
        if active is not None:
            parameters = active.parameters
        elif version_id in self._old_versions:
            parameters = self._old_versions[version_id][1]
        else:
            raise ApiError(404, "Resource not found or you do not have access to this resource")
        return FakeResponse(200, [dict(p) for p in parameters])


def _rich_parameter(given: dict[str, Any]) -> dict[str, Any]:
    """A codersdk.TemplateVersionParameter as JSON (codersdk/templateversions.go): omitempty
    on display_name, validation_error/regex/min/max/monotonic; options never null."""
    has_default = "default_value" in given
    parameter: dict[str, Any] = {
        "name": given["name"],
        "description": given.get("description", ""),
        "description_plaintext": given.get("description", ""),
        "type": given.get("type", "string"),
        "form_type": given.get("form_type", "input"),
        "mutable": given.get("mutable", False),
        "default_value": given.get("default_value", ""),
        "icon": "",
        "options": [
            {"name": o.get("name", o["value"]), "description": "", "value": o["value"], "icon": ""}
            for o in given.get("options", [])
        ],
        # terraform-provider-coder provider/parameter.go: required is computed, true exactly
        # when the parameter has no default.
        "required": given.get("required", not has_default),
        "ephemeral": given.get("ephemeral", False),
    }
    for key in ("display_name", "validation_error", "validation_regex", "validation_monotonic"):
        if given.get(key):
            parameter[key] = given[key]
    for key in ("validation_min", "validation_max"):
        if given.get(key) is not None:
            parameter[key] = given[key]
    return parameter


def _go_quote(value: str) -> str:
    """Go's %q for the plain strings parameter names and values are."""
    return json.dumps(value, ensure_ascii=False)


_GO_ATOI = re.compile(r"[+-]?[0-9]+")


def _check_build_parameters(parameters: list[dict[str, Any]], values: list[Any]) -> None:
    """coderd/wsbuilder/wsbuilder.go getClassicParameters, for a workspace's first build.

    Each template parameter in turn goes through codersdk.ParameterResolver.ValidateResolve
    (codersdk/richparameters.go); the first refusal is a BuildError{400, "Unable to validate
    parameter %q", err}, written by httperror/wsbuild.go WriteWorkspaceBuildError with the
    error as detail. Values naming no parameter of the template are ignored, not refused.
    """
    for parameter in parameters:
        name = parameter["name"]
        # findNewBuildParameterValue: the first value of that exact name.
        given = next((v for v in values if isinstance(v, dict) and v.get("name") == name), None)
        if parameter["required"] and given is None:
            problem = f"Parameter {_go_quote(name)} is required but not provided"
        else:
            current = given.get("value", "") if given is not None else parameter["default_value"]
            problem = _build_parameter_problem(parameter, current)
            if problem:
                label = parameter.get("display_name") or name
                problem = f"can't validate build parameter {_go_quote(label)}: {problem}"
        if problem:
            raise ApiError(400, f"Unable to validate parameter {_go_quote(name)}", problem)


def _build_parameter_problem(parameter: dict[str, Any], current: str) -> str | None:
    """codersdk/richparameters.go validateBuildParameter (no previous build: a first build)."""
    if parameter["required"] and current == "":
        return "parameter value is required"
    if current == "":
        current = parameter["default_value"]
    options = [o["value"] for o in parameter["options"]]
    if options and not _in_option_set(parameter, options, current):
        # Go's %s of a []string: "[a b c]".
        return f"parameter value must match one of options: [{' '.join(options)}]"
    kind = parameter["type"]
    enabled = (
        parameter.get("validation_regex")
        or parameter.get("validation_min") is not None
        or parameter.get("validation_max") is not None
        or parameter.get("validation_monotonic")
        or kind in ("bool", "list(string)")
    )
    return _provider_validation_problem(parameter, kind, current) if enabled else None


def _in_option_set(parameter: dict[str, Any], options: list[str], value: str) -> bool:
    """richparameters.go inOptionSet: a multi-select list(string) checks each JSON item."""
    if parameter["type"] != "list(string)" or parameter.get("form_type") != "multi-select":
        return value in options
    try:
        checks = json.loads(value)
    except ValueError:
        return False
    return isinstance(checks, list) and all(c in options for c in checks)


def _provider_validation_problem(parameter: dict[str, Any], kind: str, value: str) -> str | None:
    """terraform-provider-coder provider/parameter.go Validation.Valid (no previous value)."""
    low, high = parameter.get("validation_min"), parameter.get("validation_max")
    regex, error = parameter.get("validation_regex", ""), parameter.get("validation_error", "")
    if kind != "number":
        if low is not None:
            return f"a min cannot be specified for a {kind} type"
        if high is not None:
            return f"a max cannot be specified for a {kind} type"
    if kind != "string" and regex:
        return f"a regex cannot be specified for a {kind} type"
    if kind == "bool" and value not in ("true", "false"):
        return 'boolean value can be either "true" or "false"'
    if kind == "string" and regex:
        if not error:
            return "an error must be specified with a regex validation"
        if re.search(regex, value) is None:  # Go's MatchString: anywhere in the value
            return f"{error} (value {_go_quote(value)} does not match {_go_quote(regex)})"
    if kind == "number":
        return _number_problem(value, low, high, error)
    if kind == "list(string)":
        try:
            items = json.loads(value)
        except ValueError:
            items = None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            return f"value {_go_quote(value)} is not valid list of strings"
    return None


def _number_problem(value: str, low: int | None, high: int | None, error: str) -> str | None:
    """Validation.Valid's number case; errorRendered (the template's own error) comes first."""

    def rendered(fallback: str) -> str:
        if not error:
            return fallback
        return (
            error.replace("{min}", str(low or 0))
            .replace("{max}", str(high or 0))
            .replace("{value}", value)
        )

    if not _GO_ATOI.fullmatch(value):  # strconv.Atoi
        return rendered(f"value {_go_quote(value)} is not a number")
    number = int(value)
    if low is not None and number < low:
        return rendered(f"value {number} is less than the minimum {low}")
    if high is not None and number > high:
        return rendered(f"value {number} is more than the maximum {high}")
    return None


def main(argv: list[str] | None = None) -> None:
    """Run a fake Coder until interrupted."""
    parser = argparse.ArgumentParser(description="Run a fake Coder API server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7080)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per request")
    parser.add_argument("--build-polls", type=int, default=2)
    parser.add_argument("--build-seconds", type=float, default=None)
    parser.add_argument("--rate-limit", type=int, default=None, help="requests per minute")
    parser.add_argument(
        "--template",
        action="append",
        default=None,
        help="template name to create (repeatable; default: docker)",
    )
    args = parser.parse_args(argv)
    fake = FakeCoder(
        args.token,
        host=args.host,
        port=args.port,
        latency=args.latency,
        build_polls=args.build_polls,
        build_seconds=args.build_seconds,
        rate_limit_per_minute=args.rate_limit,
    )
    for name in args.template or ["docker"]:
        fake.add_template(name)
    fake.start()
    print(f"Fake Coder listening on {fake.url}", flush=True)
    print(f"CODER_URL={fake.url} CODER_SESSION_TOKEN={fake.token}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        threading.Event().wait()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        fake.stop()


if __name__ == "__main__":
    main()
