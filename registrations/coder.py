"""Coder REST API client: one method per operation, typed results, one error type.

All HTTP goes through `CoderClient._request`, which adds the session token and a timeout, logs
method/path/status/elapsed (never bodies: they carry passwords), and retries what is safe to
retry. The rules it encodes come from the API contract in coder-api/NOTES.md.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

import requests
from requests.adapters import HTTPAdapter

from registrations import outbound_http

logger = logging.getLogger(__name__)

IDEMPOTENT_METHODS = frozenset({"GET", "PUT", "DELETE", "HEAD", "OPTIONS"})
NEVER = "0001-01-01T00:00:00Z"
UNKNOWN_USER_MESSAGE = "must be an existing uuid or username"
# The start of wsbuilder.go's messages for parameters it refuses (see ParametersRefused).
PARAMETERS_REFUSED_MESSAGE = "Unable to validate parameter"
PAGE_SIZE = 100
# Coder caps no page size (coderd/pagination.go: limit 0 means all); big pages, few requests.
LIST_PAGE_SIZE = 500
# Job states in which Coder refuses a new build with 409.
ACTIVE_JOB_STATUSES = frozenset({"pending", "running", "canceling"})


class CoderError(Exception):
    """A failed Coder call: an error answer, or no answer at all (status None).

    Callers act on the subclass (what happened), never on the HTTP status; `retryable` says
    whether the same call may work later, and is decided here, in `_classify`, only.
    """

    def __init__(
        self,
        method: str,
        path: str,
        status: int | None,
        message: str,
        *,
        detail: str = "",
        validations: list[dict[str, Any]] | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.status = status
        self.message = message
        self.detail = detail
        self.validations = validations or []
        self.retryable = _is_retryable(status) if retryable is None else retryable
        self.retry_after = retry_after
        super().__init__(str(self))

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only attributes would be lost by Exception's default pickling (task results).
        return (_rebuild, (type(self), self.__dict__))

    def __str__(self) -> str:
        status = "no response" if self.status is None else str(self.status)
        text = f"Coder {self.method} {self.path} -> {status}: {self.message}"
        if self.validations:
            fields = "; ".join(
                f"{v.get('field', '?')}: {v.get('detail', '')}" for v in self.validations
            )
            text += f" [{fields}]"
        return text

    @classmethod
    def from_response(cls, method: str, path: str, response: requests.Response) -> CoderError:
        body = _json_or_none(response)
        body = body if isinstance(body, dict) else {}
        message = str(body.get("message") or response.reason or "HTTP error")
        validations = body.get("validations") or []
        kind = _classify(response.status_code, message)
        return kind(
            method,
            path,
            response.status_code,
            message,
            detail=str(body.get("detail") or ""),
            validations=[v for v in validations if isinstance(v, dict)],
            retry_after=_parse_retry_after(response.headers.get("Retry-After")),
        )

    @classmethod
    def from_exception(cls, method: str, path: str, exc: requests.RequestException) -> CoderError:
        kind = "timed out" if isinstance(exc, requests.Timeout) else "network error"
        return Unreachable(method, path, None, f"{kind} ({type(exc).__name__})")


def _rebuild(kind: type[CoderError], state: dict[str, Any]) -> CoderError:
    error = kind.__new__(kind)
    error.__dict__.update(state)
    Exception.__init__(error, str(error))
    return error


class CoderNotConfigured(CoderError):
    """CODER_URL or CODER_SESSION_TOKEN is not set: worth trying again once it is."""

    def __init__(self, message: str = "CODER_URL and CODER_SESSION_TOKEN must be set") -> None:
        super().__init__("", "", None, message, retryable=True)

    def __str__(self) -> str:
        return self.message


class Unreachable(CoderError):
    """No answer: refused, timed out or cut off. Worth another try."""


class Unauthorized(CoderError):
    """401: Coder rejects our session token."""


class Forbidden(CoderError):
    """403: the token's user may not do this (not an owner)."""


class RateLimited(CoderError):
    """429: over Coder's rate limit; `retry_after` says when to come back."""


class ServerError(CoderError):
    """5xx: Coder (or a proxy in front of it) failed; worth another try."""


class InvalidRequest(CoderError):
    """400 for a request no retry can fix (a validation error, a weak password)."""


class UserGone(CoderError):
    """The user does not exist (Coder answers 400, not 404), or was deleted."""


class NotFound(CoderError):
    """404 for something other than a workspace (an organization, a template)."""


class Conflict(CoderError):
    """409: the thing already exists, or another operation is under way."""


class UsernameTaken(Conflict):
    """409 on POST /users: the username (any case) or the email is taken."""


class WorkspaceExists(Conflict):
    """409 on creating a workspace: the owner already has one of that name."""


class ParametersRefused(InvalidRequest):
    """400 on creating a workspace: the template's parameters refuse the values we sent.

    coderd/wsbuilder/wsbuilder.go answers "Unable to validate parameter \"NAME\"" (classic
    parameter flow) or "Unable to validate parameters" (dynamic parameters), with the reason in
    `detail` or `validations`: a required parameter missing, a value outside the options...
    """


class BuildActive(Conflict):
    """409 on a new build: the workspace's latest build has not finished yet."""


class WorkspaceGone(CoderError):
    """404 or 410 for a workspace: unknown, or already deleted."""


class WorkspacesRemain(CoderError):
    """417 on DELETE /users/{user}: the user still owns a workspace that is not deleted."""


def _is_retryable(status: int | None) -> bool:
    return status is None or status == 429 or status >= 500


def _narrow(error: CoderError, kinds: Mapping[type[CoderError], type[CoderError]]) -> CoderError:
    """The same error as the route's own kind (a 409 on POST /users means "username taken")."""
    kind = kinds.get(type(error))
    return error if kind is None else _rebuild(kind, error.__dict__)


def _classify(status: int, message: str) -> type[CoderError]:
    """The kind of error a status means on any route; routes narrow it (see `_request`)."""
    if status == 400:
        return UserGone if UNKNOWN_USER_MESSAGE in message else InvalidRequest
    kinds: dict[int, type[CoderError]] = {
        401: Unauthorized,
        403: Forbidden,
        404: NotFound,
        409: Conflict,
        410: WorkspaceGone,
        417: WorkspacesRemain,
        429: RateLimited,
    }
    if status >= 500:
        return ServerError
    return kinds.get(status, CoderError)


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _body(response: requests.Response) -> Any:
    """The JSON of a success answer; a 2xx that is not JSON (a proxy's page) is an error too."""
    try:
        return response.json()
    except ValueError:
        request = response.request
        path = urlsplit(request.url or "").path if request is not None else ""
        method = (request.method or "") if request is not None else ""
        raise CoderError(
            method, path, response.status_code, "answer is not JSON", retryable=False
        ) from None


def _parse_retry_after(value: str | None) -> float | None:
    """Retry-After is seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _never_sent(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached the server (no connection was made).

    A ConnectionError also covers "connection aborted" after the request went out, and a POST
    that went out may have been carried out: those must be looked up, not re-sent.
    """
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if not isinstance(exc, requests.ConnectionError) or isinstance(exc, requests.ReadTimeout):
        return False
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    text = f"{type(reason).__name__} {reason}" if reason is not None else str(exc)
    return any(
        marker in text
        for marker in (
            "NewConnectionError",
            "NameResolutionError",
            "ConnectTimeoutError",
            "Connection refused",
            "Failed to establish",
        )
    )


def parse_time(value: object) -> datetime | None:
    """An RFC 3339 time from Coder; None for null, "never" (year 1) and anything unreadable."""
    if not isinstance(value, str) or not value or value.startswith("0001-01-01"):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return "" if value is None else str(value)


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class BuildInfo:
    version: str
    external_url: str
    dashboard_url: str

    @classmethod
    def from_json(cls, data: object) -> BuildInfo:
        d = _mapping(data)
        return cls(_str(d, "version"), _str(d, "external_url"), _str(d, "dashboard_url"))


@dataclass(frozen=True)
class User:
    id: str
    username: str
    email: str = ""
    name: str = ""
    status: str = ""
    login_type: str = ""
    organization_ids: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    created_at: datetime | None = None
    last_seen_at: datetime | None = None

    @property
    def is_suspended(self) -> bool:
        return self.status == "suspended"

    @classmethod
    def from_json(cls, data: object) -> User:
        d = _mapping(data)
        roles = [
            r.get("name", "") if isinstance(r, Mapping) else str(r) for r in d.get("roles") or []
        ]
        return cls(
            id=_str(d, "id"),
            username=_str(d, "username"),
            email=_str(d, "email"),
            name=_str(d, "name"),
            status=_str(d, "status"),
            login_type=_str(d, "login_type"),
            organization_ids=[str(o) for o in d.get("organization_ids") or []],
            roles=[r for r in roles if r],
            created_at=parse_time(d.get("created_at")),
            last_seen_at=parse_time(d.get("last_seen_at")),
        )


@dataclass(frozen=True)
class Organization:
    id: str
    name: str
    display_name: str = ""
    is_default: bool = False

    @classmethod
    def from_json(cls, data: object) -> Organization:
        d = _mapping(data)
        return cls(
            _str(d, "id"), _str(d, "name"), _str(d, "display_name"), bool(d.get("is_default"))
        )


@dataclass(frozen=True)
class Template:
    id: str
    name: str
    display_name: str = ""
    organization_id: str = ""
    active_version_id: str = ""
    deprecated: bool = False

    @classmethod
    def from_json(cls, data: object) -> Template:
        d = _mapping(data)
        return cls(
            id=_str(d, "id"),
            name=_str(d, "name"),
            display_name=_str(d, "display_name"),
            organization_id=_str(d, "organization_id"),
            active_version_id=_str(d, "active_version_id"),
            deprecated=bool(d.get("deprecated")),
        )


def _optional_int(value: object) -> int | None:
    # validation_min/max are *int32 with omitempty: absent means "no bound", 0 is a bound.
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class TemplateParameterOption:
    name: str
    value: str
    description: str = ""

    @classmethod
    def from_json(cls, data: object) -> TemplateParameterOption:
        d = _mapping(data)
        return cls(_str(d, "name"), _str(d, "value"), _str(d, "description"))


@dataclass(frozen=True)
class TemplateParameter:
    """One rich parameter of a template version (codersdk.TemplateVersionParameter)."""

    name: str
    display_name: str = ""
    description: str = ""
    type: str = "string"
    form_type: str = ""
    mutable: bool = False
    default_value: str = ""
    required: bool = False
    ephemeral: bool = False
    options: tuple[TemplateParameterOption, ...] = ()
    validation_min: int | None = None
    validation_max: int | None = None
    validation_regex: str = ""
    validation_error: str = ""

    @property
    def label(self) -> str:
        return self.display_name or self.name

    @classmethod
    def from_json(cls, data: object) -> TemplateParameter:
        d = _mapping(data)
        return cls(
            name=_str(d, "name"),
            display_name=_str(d, "display_name"),
            # Coder's description is Markdown; the plaintext one is what a form can show.
            description=_str(d, "description_plaintext") or _str(d, "description"),
            type=_str(d, "type") or "string",
            form_type=_str(d, "form_type"),
            mutable=bool(d.get("mutable")),
            default_value=_str(d, "default_value"),
            required=bool(d.get("required")),
            ephemeral=bool(d.get("ephemeral")),
            options=tuple(TemplateParameterOption.from_json(o) for o in _items(d.get("options"))),
            validation_min=_optional_int(d.get("validation_min")),
            validation_max=_optional_int(d.get("validation_max")),
            validation_regex=_str(d, "validation_regex"),
            validation_error=_str(d, "validation_error"),
        )


@dataclass(frozen=True)
class WorkspaceBuild:
    id: str
    workspace_id: str = ""
    workspace_name: str = ""
    build_number: int = 0
    transition: str = ""
    status: str = ""
    job_status: str = ""
    job_error: str | None = None

    @property
    def is_active(self) -> bool:
        """Coder answers 409 to a new build while this one's job is unfinished."""
        return self.job_status in ACTIVE_JOB_STATUSES

    @property
    def is_deleted(self) -> bool:
        return self.transition == "delete" and self.status == "deleted"

    @property
    def is_failed(self) -> bool:
        return self.status == "failed" or self.job_status == "failed"

    @classmethod
    def from_json(cls, data: object) -> WorkspaceBuild:
        d = _mapping(data)
        job = _mapping(d.get("job"))
        number = d.get("build_number")
        return cls(
            id=_str(d, "id"),
            workspace_id=_str(d, "workspace_id"),
            workspace_name=_str(d, "workspace_name"),
            build_number=number if isinstance(number, int) else 0,
            transition=_str(d, "transition"),
            status=_str(d, "status"),
            job_status=_str(job, "status"),
            job_error=_str(job, "error") or None,
        )


@dataclass(frozen=True)
class Workspace:
    id: str
    name: str
    owner_id: str = ""
    owner_name: str = ""
    template_id: str = ""
    latest_build: WorkspaceBuild | None = None

    @property
    def status(self) -> str:
        """The workspace's state is its latest build's status (there is no `deleted` field)."""
        return self.latest_build.status if self.latest_build else ""

    @property
    def transition(self) -> str:
        return self.latest_build.transition if self.latest_build else ""

    @classmethod
    def from_json(cls, data: object) -> Workspace:
        d = _mapping(data)
        build = d.get("latest_build")
        return cls(
            id=_str(d, "id"),
            name=_str(d, "name"),
            owner_id=_str(d, "owner_id"),
            owner_name=_str(d, "owner_name"),
            template_id=_str(d, "template_id"),
            latest_build=WorkspaceBuild.from_json(build) if isinstance(build, Mapping) else None,
        )


def _items(value: object) -> list[Any]:
    """A JSON array, or [] for null and anything else (Coder sends null for empty lists)."""
    return value if isinstance(value, list) else []


def _segment(value: str) -> str:
    """A value placed in a URL path (usernames and ids are safe, but never trust that)."""
    return quote(str(value), safe="")


def _parameter_list(
    values: Mapping[str, object] | Sequence[Mapping[str, object]],
) -> list[dict[str, str]]:
    # Coder wants [{"name", "value"}] with string values; accept a plain mapping too.
    if isinstance(values, Mapping):
        return [{"name": str(k), "value": str(v)} for k, v in values.items()]
    return [{"name": str(v["name"]), "value": str(v["value"])} for v in values]


class Budget(Protocol):
    """Paces requests on routes whose rate limit is shared (registrations.rate_budget)."""

    def reserve(self, path: str) -> float:
        """Take a place for one request now (0), or say how many seconds to wait first."""

    def observe(self, path: str, status: int, headers: Mapping[str, str]) -> None:
        """Learn from an answer how much of the route's limit Coder has counted."""


class CoderClient:
    """A Coder deployment, spoken to with an owner's session token."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 10.0,
        max_retries: int = 2,
        max_sleep: float = 5.0,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        budget: Budget | None = None,
        pool_size: int = 10,
    ) -> None:
        base = url.rstrip("/")
        if base.endswith("/api/v2"):
            base = base[: -len("/api/v2")]
        self.url = base
        self.api_url = base + "/api/v2"
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_sleep = max_sleep
        self._token = token
        if session is None:
            session = requests.Session()
            # Deletion passes call Coder from several threads: one pooled connection each.
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            outbound_http.settle_environment(session, base)
        self._session = session
        self._sleep = sleep
        self.budget = budget
        self._org_ids: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"CoderClient({self.url!r})"

    def close(self) -> None:
        self._session.close()

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        narrow: Mapping[type[CoderError], type[CoderError]] | None = None,
        auth: bool = True,
    ) -> requests.Response:
        """Send one API call, retrying what is safe; return its 2xx answer or raise CoderError.

        `narrow` gives a general error the route's own meaning, e.g. {Conflict: UsernameTaken}.
        """
        method = method.upper()
        headers = {"Accept": "application/json"}
        if auth:
            headers["Coder-Session-Token"] = self._token
        attempt = 0
        while True:
            self._wait_for_budget(method, path)
            started = time.monotonic()
            try:
                response = self._session.request(
                    method,
                    self.api_url + path,
                    params=params,
                    json=json,
                    headers=headers,
                    timeout=self.timeout,
                )
            except requests.RequestException as exc:
                self._log(method, path, None, started)
                error = CoderError.from_exception(method, path, exc)
                if attempt < self.max_retries and self._may_resend(method, exc):
                    self._sleep(self._backoff(attempt))
                    attempt += 1
                    continue
                raise error from exc
            self._log(method, path, response.status_code, started)
            if self.budget is not None:
                self.budget.observe(path, response.status_code, response.headers)
            if 200 <= response.status_code < 300:
                return response
            error = _narrow(CoderError.from_response(method, path, response), narrow or {})
            delay = self._retry_delay(method, error, attempt)
            if delay is None:
                raise error
            self._sleep(delay)
            attempt += 1

    def _wait_for_budget(self, method: str, path: str) -> None:
        """Wait for a place in a shared route's budget; hand a long wait to the caller."""
        if self.budget is None:
            return
        while wait := self.budget.reserve(path):
            if wait > self.max_sleep:
                raise RateLimited(
                    method,
                    path,
                    None,
                    f"Coder's rate limit for {path} is used up for now; paced by us",
                    retryable=True,
                    retry_after=wait,
                )
            self._sleep(wait)

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        """`_request`, then the decoded body of its 2xx answer."""
        return _body(self._request(method, path, **kwargs))

    def _may_resend(self, method: str, exc: requests.RequestException) -> bool:
        # A POST that timed out may have been carried out: the caller must look it up instead.
        return method in IDEMPOTENT_METHODS or _never_sent(exc)

    def _retry_delay(self, method: str, error: CoderError, attempt: int) -> float | None:
        """Seconds to wait before retrying this error answer, or None to raise it now."""
        if not error.retryable or attempt >= self.max_retries:
            return None
        if error.status == 429:
            if error.retry_after is None:
                return self._backoff(attempt)
            # Longer than we may block a worker: hand it to the caller (task retry, later).
            return error.retry_after if error.retry_after <= self.max_sleep else None
        # A 5xx on a POST may have come after the create happened; only idempotent calls repeat.
        return self._backoff(attempt) if method in IDEMPOTENT_METHODS else None

    @staticmethod
    def _backoff(attempt: int) -> float:
        return 0.25 * (1 << attempt)

    @staticmethod
    def _log(method: str, path: str, status: int | None, started: float) -> None:
        elapsed_ms = (time.monotonic() - started) * 1000
        logger.debug("coder %s %s -> %s in %.0f ms", method, path, status or "error", elapsed_ms)

    def build_info(self) -> BuildInfo:
        """GET /buildinfo (no token): is the server reachable, and which version is it?"""
        return BuildInfo.from_json(self._json("GET", "/buildinfo", auth=False))

    def current_user(self) -> User:
        """GET /users/me: the token's owner (a cheap token check)."""
        return User.from_json(self._json("GET", "/users/me"))

    def organizations(self) -> list[Organization]:
        """GET /organizations."""
        return [Organization.from_json(o) for o in _items(self._json("GET", "/organizations"))]

    def organization(self, org: str) -> Organization:
        """GET /organizations/{organization}: by UUID, name, "default" or the nil UUID."""
        return Organization.from_json(self._json("GET", f"/organizations/{_segment(org)}"))

    def resolve_organization_id(self, org: str | None) -> str:
        """The id of `org` (UUID or name), or of the default organization when None/""."""
        key = org or ""
        if key not in self._org_ids:
            if key:
                found = self.organization(key).id
            else:
                default = [o for o in self.organizations() if o.is_default]
                if not default:
                    raise CoderError(
                        "GET", "/organizations", 200, "no default organization", retryable=False
                    )
                found = default[0].id
            self._org_ids[key] = found
        return self._org_ids[key]

    def templates(self, org: str) -> list[Template]:
        """GET /organizations/{organization}/templates."""
        response = self._request("GET", f"/organizations/{_segment(org)}/templates")
        return [Template.from_json(t) for t in _items(_body(response))]

    def template_by_name(self, name: str, org: str | None = None) -> Template | None:
        """GET /templates?q=exact_name:NAME (in `org` when given); None when there is none."""
        query = f"exact_name:{name}" + (f" organization:{org}" if org else "")
        found = self._json("GET", "/templates", params={"q": query})
        templates = [Template.from_json(t) for t in _items(found)]
        return next((t for t in templates if t.name.lower() == name.lower()), None)

    def template_rich_parameters(self, template_version_id: str) -> list[TemplateParameter]:
        """GET /templateversions/{templateversion}/rich-parameters: the version's parameters."""
        path = f"/templateversions/{_segment(template_version_id)}/rich-parameters"
        return [TemplateParameter.from_json(p) for p in _items(self._json("GET", path))]

    def create_user(
        self,
        username: str,
        email: str,
        password: str,
        organization_id: str,
        name: str = "",
        user_status: str = "active",
    ) -> User:
        """POST /users (201). Raises UsernameTaken when the username or email is taken."""
        body = {
            "username": username,
            "email": email,
            "password": password,
            "login_type": "password",
            "name": name,
            # Coder's default is "dormant"; active shows the account as usable straight away.
            "user_status": user_status,
            "organization_ids": [organization_id],
        }
        taken = {Conflict: UsernameTaken}
        return User.from_json(self._json("POST", "/users", json=body, narrow=taken))

    def get_user(self, user: str) -> User | None:
        """GET /users/{user} by username, UUID or "me"; None when Coder does not know it."""
        try:
            return User.from_json(self._json("GET", f"/users/{_segment(user)}"))
        except UserGone:
            return None

    def list_users(
        self, q: str = "", limit: int = PAGE_SIZE, offset: int = 0
    ) -> tuple[list[User], int]:
        """GET /users?q=&limit=&offset=: one page of users and the total number of matches."""
        params = {"q": q, "limit": limit, "offset": offset}
        data = _mapping(self._json("GET", "/users", params=params))
        users = [User.from_json(u) for u in _items(data.get("users"))]
        count = data.get("count")
        return users, count if isinstance(count, int) else len(users)

    def iter_users(self, q: str = "") -> Iterator[User]:
        """Every user matching `q`, page by page (GET /users)."""
        offset = 0
        while True:
            users, count = self.list_users(q, PAGE_SIZE, offset)
            yield from users
            offset += len(users)
            if not users or offset >= count:
                return

    def find_user_by_email(self, email: str) -> User | None:
        """The live user with this email (GET /users?q=EMAIL); None when there is none.

        Users cannot change their email (only username and name, PUT /users/{user}/profile),
        and the listing never shows deleted users, unlike a look-up by UUID.
        """
        wanted = email.strip().lower()
        if not wanted:
            return None
        users, _ = self.list_users(wanted, PAGE_SIZE, 0)
        return next((u for u in users if u.email.lower() == wanted), None)

    def suspend_user(self, user: str) -> User:
        """PUT /users/{user}/status/suspend: the user can no longer log in."""
        path = f"/users/{_segment(user)}/status/suspend"
        return User.from_json(self._json("PUT", path))

    def activate_user(self, user: str) -> User:
        """PUT /users/{user}/status/activate."""
        path = f"/users/{_segment(user)}/status/activate"
        return User.from_json(self._json("PUT", path))

    def set_password(self, user: str, password: str) -> None:
        """PUT /users/{user}/password (204); revokes the user's sessions. 60 a minute at most."""
        self._request("PUT", f"/users/{_segment(user)}/password", json={"password": password})

    def validate_password(self, password: str) -> bool:
        """POST /users/validate-password: would Coder accept this password?"""
        response = self._request("POST", "/users/validate-password", json={"password": password})
        return bool(_mapping(_body(response)).get("valid"))

    def list_workspaces(self, owner: str) -> list[Workspace]:
        """GET /workspaces?q=owner:NAME, every page. Deleted workspaces never appear."""
        workspaces: list[Workspace] = []
        while True:
            params = {"q": f"owner:{owner}", "limit": PAGE_SIZE, "offset": len(workspaces)}
            data = _mapping(self._json("GET", "/workspaces", params=params))
            page = [Workspace.from_json(w) for w in _items(data.get("workspaces"))]
            workspaces.extend(page)
            count = data.get("count")
            if not page or not isinstance(count, int) or len(workspaces) >= count:
                return workspaces

    def iter_workspaces(self, q: str = "", page_size: int = LIST_PAGE_SIZE) -> Iterator[Workspace]:
        """Every workspace matching `q`, in pages (GET /workspaces?limit=&offset=).

        One listing serves a whole class: the route's rate limit is shared by every call, so
        asking once per student would spend it 300 times for a class of 300.
        """
        offset = 0
        while True:
            params = {"q": q, "limit": page_size, "offset": offset}
            data = _mapping(self._json("GET", "/workspaces", params=params))
            page = [Workspace.from_json(w) for w in _items(data.get("workspaces"))]
            yield from page
            offset += len(page)
            count = data.get("count")
            if not page or not isinstance(count, int) or offset >= count:
                return

    def list_user_workspaces(self, user_id: str) -> list[Workspace]:
        """Every workspace the user with this id owns, whatever their username is now.

        Coder's workspace search filters by owner *username* only, and users can rename
        themselves: read the current name by id, then keep only what that id owns.
        """
        user = self.get_user(user_id)
        if user is None or not user.username:
            return []
        return [ws for ws in self.list_workspaces(user.username) if ws.owner_id == user.id]

    def create_workspace(
        self,
        user: str,
        name: str,
        template_id: str,
        organization: str | None = None,
        rich_parameter_values: Mapping[str, object] | Sequence[Mapping[str, object]] | None = None,
    ) -> Workspace:
        """POST /users/{user}/workspaces (201); in `organization`, POST
        /organizations/{organization}/members/{user}/workspaces.

        Raises WorkspaceExists (409) for a name the owner already uses, ParametersRefused when
        the template's parameters refuse `rich_parameter_values` (a required one missing...).
        """
        body: dict[str, Any] = {"name": name, "template_id": template_id}
        if rich_parameter_values:
            body["rich_parameter_values"] = _parameter_list(rich_parameter_values)
        if organization:
            path = f"/organizations/{_segment(organization)}/members/{_segment(user)}/workspaces"
        else:
            path = f"/users/{_segment(user)}/workspaces"
        exists = {Conflict: WorkspaceExists}
        try:
            return Workspace.from_json(self._json("POST", path, json=body, narrow=exists))
        except InvalidRequest as exc:
            if exc.message.startswith(PARAMETERS_REFUSED_MESSAGE):
                raise _rebuild(ParametersRefused, exc.__dict__) from exc
            raise

    def get_workspace(self, workspace_id: str) -> Workspace | None:
        """GET /workspaces/{workspace}; None when unknown (404) or deleted (410)."""
        path = f"/workspaces/{_segment(workspace_id)}"
        try:
            return Workspace.from_json(self._json("GET", path, narrow={NotFound: WorkspaceGone}))
        except WorkspaceGone:
            return None

    def delete_workspace(self, workspace_id: str, orphan: bool = False) -> WorkspaceBuild:
        """POST /workspaces/{workspace}/builds {"transition": "delete"} (201).

        Raises BuildActive while another build is active: wait for it, then retry; WorkspaceGone
        when it is unknown or deleted. `orphan` drops Coder's record without destroying
        anything; a last resort after failed deletes.
        """
        body: dict[str, Any] = {"transition": "delete"}
        if orphan:
            body["orphan"] = True
        path = f"/workspaces/{_segment(workspace_id)}/builds"
        kinds = {Conflict: BuildActive, NotFound: WorkspaceGone}
        return WorkspaceBuild.from_json(self._json("POST", path, json=body, narrow=kinds))

    def get_build(self, build_id: str) -> WorkspaceBuild:
        """GET /workspacebuilds/{workspacebuild}."""
        path = f"/workspacebuilds/{_segment(build_id)}"
        return WorkspaceBuild.from_json(self._json("GET", path))

    def delete_user(self, user: str) -> bool:
        """DELETE /users/{user}: True when deleted now, False when Coder no longer knows it.

        Raises WorkspacesRemain (417) while the user still owns workspaces that are not deleted
        yet: delete them or wait for their delete builds, then call again.
        """
        try:
            self._request("DELETE", f"/users/{_segment(user)}")
        except UserGone:
            return False  # for the delete lifecycle, already gone means done
        return True


_clients: dict[tuple[str, str, float, int, int], CoderClient] = {}
_clients_lock = threading.Lock()


def get_client() -> CoderClient:
    """The process's client for the configured Coder, so a worker reuses one connection pool."""
    from django.conf import settings

    url = (getattr(settings, "CODER_URL", "") or "").strip()
    token = (getattr(settings, "CODER_SESSION_TOKEN", "") or "").strip()
    if not url or not token:
        raise CoderNotConfigured()
    timeout = float(getattr(settings, "CODER_TIMEOUT", 10.0) or 10.0)
    limit = int(getattr(settings, "CODER_RATE_LIMIT", 0) or 0)
    threads = int(getattr(settings, "CLEANUP_CONCURRENCY", 8) or 8)
    key = (url, token, timeout, limit, threads)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            from registrations.rate_budget import RouteBudget

            client = _clients[key] = CoderClient(
                url,
                token,
                timeout=timeout,
                budget=RouteBudget(limit) if limit > 0 else None,
                pool_size=max(10, threads),
            )
        return client


def reset_clients() -> None:
    """Forget cached clients (tests that change settings call this)."""
    with _clients_lock:
        for client in _clients.values():
            client.close()
        _clients.clear()
