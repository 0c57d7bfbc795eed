"""The fake Coder server keeps the rules of coder-api/NOTES.md, so tests against it count."""

from __future__ import annotations

import random
import string
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.fakes.coder import (
    DEFAULT_ORG_ID,
    NIL_UUID,
    FakeCoder,
    password_entropy,
    password_length,
    password_problem,
)
from tests.student import log_in

STRONG = "Kd8mQ2xVr7Tz"


class Api:
    """Raw HTTP against the fake, so its answers are checked without the client's help."""

    def __init__(self, fake: FakeCoder, token: str | None = None) -> None:
        self.base = fake.url + "/api/v2"
        self.session = requests.Session()
        if token is not None:
            self.session.headers["Coder-Session-Token"] = token

    def __call__(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, self.base + path, timeout=5, **kwargs)

    def create_user(
        self, username: str, email: str | None = None, **fields: Any
    ) -> requests.Response:
        body = {
            "username": username,
            "email": email or f"{username}@example.test",
            "password": STRONG,
            "organization_ids": [NIL_UUID],
            **fields,
        }
        return self("POST", "/users", json=body)


@pytest.fixture
def fake() -> Iterator[FakeCoder]:
    with FakeCoder(build_polls=0) as server:
        yield server


@pytest.fixture
def api(fake: FakeCoder) -> Api:
    return Api(fake, fake.token)


@pytest.fixture
def template_id(fake: FakeCoder) -> str:
    return fake.add_template("docker")["id"]


def new_workspace(api: Api, owner: str, template_id: str, name: str = "lab") -> dict[str, Any]:
    response = api(
        "POST", f"/users/{owner}/workspaces", json={"name": name, "template_id": template_id}
    )
    assert response.status_code == 201, response.text
    return response.json()


def test_entropy_matches_the_notes_examples() -> None:
    assert password_entropy("aZ3kQ9mX2p") == pytest.approx(59.54, abs=0.01)
    assert password_entropy("aZ3kQ9mX2") == pytest.approx(53.59, abs=0.01)
    assert password_entropy("qmzpxkrwtvj") == pytest.approx(51.70, abs=0.01)
    assert password_entropy("Abc123!x") == pytest.approx(42.46, abs=0.01)
    assert password_problem("qmzpxkrwtvj").startswith("insecure password, try")
    assert password_problem("Abc123!x") is not None


def test_ten_random_mixed_characters_without_runs_pass() -> None:
    rng = random.Random(20251121)
    alphabet = string.ascii_letters + string.digits
    checked = 0
    for _ in range(200):
        password = "".join(rng.choice(alphabet) for _ in range(10))
        classes = [
            set(password) & set(c)
            for c in (string.ascii_lowercase, string.ascii_uppercase, string.digits)
        ]
        if all(classes) and password_length(password) == 10:
            checked += 1
            assert password_entropy(password) == pytest.approx(59.54, abs=0.01)
            assert password_problem(password) is None
    assert checked > 100


@pytest.mark.parametrize(
    "password, length",
    [
        # go-password-validator v0.3.0's own test cases for getLength.
        ("aaaa", 2),
        ("11112222", 4),
        ("aa123456", 4),
        ("876543", 2),
        ("qwerty123456z", 5),
        ("abcdefgh", 2),
        ("xaaaa", 3),
    ],
)
def test_runs_collapse_as_upstream(password: str, length: int) -> None:
    assert password_length(password) == length


def test_password_longer_than_64_bytes_is_refused() -> None:
    password = ("Kd8mQ2xVr7Tz" * 6)[:65]

    assert password_problem(password) == "password must be no more than 64 characters"


def test_token_is_required_except_for_buildinfo(fake: FakeCoder) -> None:
    anonymous, wrong = Api(fake), Api(fake, "nope")

    assert anonymous("GET", "/buildinfo").status_code == 200
    assert anonymous("GET", "/users/me").status_code == 401
    response = wrong("GET", "/users/me")
    assert response.status_code == 401
    assert response.headers["X-Coder-Build-Version"] == fake.version


def test_create_user_defaults_to_dormant(api: Api) -> None:
    response = api.create_user("student1")

    assert response.status_code == 201
    assert response.json()["status"] == "dormant"
    assert response.json()["organization_ids"] == [DEFAULT_ORG_ID]


@pytest.mark.parametrize("username", ["bad_name", "-x", "x-", "a--b", "a.b", "new", "x" * 33])
def test_username_rule(api: Api, username: str) -> None:
    response = api.create_user(username, "someone@example.test")

    assert response.status_code == 400
    assert response.json()["message"] == "Validation failed."
    assert [v["field"] for v in response.json()["validations"]] == ["username"]


def test_username_of_32_characters_is_fine(api: Api) -> None:
    assert api.create_user("a" * 32).status_code == 201


def test_username_and_email_are_unique_case_insensitively(api: Api) -> None:
    api.create_user("alice", "alice@example.test")

    assert api.create_user("ALICE", "other@example.test").status_code == 409
    response = api.create_user("bob", "Alice@Example.test")
    assert (response.status_code, response.json()["message"]) == (409, "User already exists.")


def test_misspelt_field_is_ignored(api: Api) -> None:
    response = api(
        "POST",
        "/users",
        json={
            "username": "alice",
            "email": "a@example.test",
            "password": STRONG,
            "organisation_ids": [NIL_UUID],
        },
    )

    assert response.status_code == 400
    assert response.json()["validations"][0]["field"] == "organization_ids"


@pytest.mark.parametrize(
    "field, value",
    [
        ("organization_ids", NIL_UUID),
        ("organization_ids", ["not-a-uuid"]),
        ("password", 12345),
    ],
)
def test_wrong_type_is_invalid_json(api: Api, field: str, value: Any) -> None:
    response = api.create_user("alice", **{field: value})

    assert (response.status_code, response.json()["message"]) == (
        400,
        "Request body must be valid JSON.",
    )


def test_value_outside_enum_fails_validation(api: Api, template_id: str) -> None:
    response = api.create_user("alice", user_status="enabled")
    assert response.json()["validations"][0]["field"] == "user_status"

    workspace = new_workspace(api, "admin", template_id)
    response = api("POST", f"/workspaces/{workspace['id']}/builds", json={"transition": "destroy"})
    assert (response.status_code, response.json()["message"]) == (400, "Validation failed.")


def test_weak_password_is_refused(api: Api) -> None:
    response = api.create_user("alice", password="qmzpxkrwtvj")

    assert response.status_code == 400
    assert response.json()["message"] == "Password not strong enough!"
    assert response.json()["validations"][0]["field"] == "password"


def test_get_unknown_user_is_400(api: Api) -> None:
    response = api("GET", "/users/nobody")

    assert response.status_code == 400
    assert response.json() == {
        "message": '"user" must be an existing uuid or username.',
        "detail": 'queried user="nobody"',
    }


def test_user_search(api: Api) -> None:
    api.create_user("alice", user_status="active")
    api.create_user("bob")
    api("DELETE", "/users/bob")

    found = api("GET", "/users", params={"q": "ali status:active"}).json()
    assert [u["username"] for u in found["users"]] == ["alice"]
    assert api("GET", "/users", params={"q": "bob"}).json() == {"users": [], "count": 0}
    assert api("GET", "/users", params={"q": "colour:red"}).status_code == 400


def test_suspend_and_password_changes(api: Api, fake: FakeCoder) -> None:
    api.create_user("alice")

    def logs_in(password: str) -> bool:
        # Coder logs in by email, never by username (coderd/userauth.go loginRequest).
        return log_in(fake.url, "alice@example.test", password).status_code == 201

    assert api("PUT", "/users/alice/status/suspend").json()["status"] == "suspended"
    assert not logs_in(STRONG)
    assert api("PUT", "/users/alice/status/activate").json()["status"] == "active"
    assert api("PUT", "/users/me/status/suspend").status_code == 400
    assert api("PUT", "/users/alice/password", json={"password": STRONG}).status_code == 400
    weak = api("PUT", "/users/alice/password", json={"password": "abc"})
    assert weak.json()["message"] == "Invalid password."
    changed = api("PUT", "/users/alice/password", json={"password": "Zq7Wm3Xk9Rp2"})
    assert (changed.status_code, changed.content) == (204, b"")
    assert logs_in("Zq7Wm3Xk9Rp2")
    assert not logs_in(STRONG)


def test_workspace_name_is_unique_per_owner(api: Api, template_id: str) -> None:
    api.create_user("alice")
    new_workspace(api, "alice", template_id)
    new_workspace(api, "admin", template_id)

    response = api(
        "POST", "/users/alice/workspaces", json={"name": "LAB", "template_id": template_id}
    )
    assert (response.status_code, response.json()["message"]) == (
        409,
        'Workspace "LAB" already exists.',
    )


def test_build_conflicts_while_active_and_deleted_workspace_disappears(
    api: Api, fake: FakeCoder, template_id: str
) -> None:
    fake.build_polls = 1
    api.create_user("alice")
    workspace = new_workspace(api, "alice", template_id)
    assert workspace["latest_build"]["status"] == "pending"
    builds = f"/workspaces/{workspace['id']}/builds"

    assert api("POST", builds, json={"transition": "delete"}).status_code == 409
    assert api("POST", builds, json={"transition": "start", "orphan": True}).status_code == 400
    statuses = [
        api("GET", f"/workspaces/{workspace['id']}").json()["latest_build"]["status"]
        for _ in range(3)
    ]
    assert statuses == ["pending", "starting", "running"]
    deleting = api("POST", builds, json={"transition": "delete"})
    assert deleting.status_code == 201
    assert api("DELETE", "/users/alice").status_code == 417
    for _ in range(3):
        api("GET", f"/workspacebuilds/{deleting.json()['id']}")

    assert api("GET", f"/workspaces/{workspace['id']}").status_code == 410
    kept = api("GET", f"/workspaces/{workspace['id']}", params={"include_deleted": "true"})
    assert kept.json()["latest_build"]["status"] == "deleted"
    assert api("GET", "/workspaces", params={"q": "owner:alice"}).json()["count"] == 0
    assert fake.workspaces_of("alice") == []
    assert api("DELETE", "/users/alice").status_code == 200
    assert api("DELETE", "/users/alice").status_code == 400
    assert api.create_user("alice", "alice2@example.test").status_code == 201


def test_time_driven_builds(api: Api, fake: FakeCoder, template_id: str) -> None:
    fake.build_polls, fake.build_seconds = None, 0.05
    workspace = new_workspace(api, "admin", template_id)

    time.sleep(0.12)

    assert api("GET", f"/workspaces/{workspace['id']}").json()["latest_build"]["status"] == (
        "running"
    )


def test_failed_delete_build_leaves_the_workspace(
    api: Api, fake: FakeCoder, template_id: str
) -> None:
    fake.fail_delete_builds = 1
    workspace = new_workspace(api, "admin", template_id)
    build = api("POST", f"/workspaces/{workspace['id']}/builds", json={"transition": "delete"})

    failed = api("GET", f"/workspacebuilds/{build.json()['id']}").json()

    assert (failed["status"], failed["job"]["status"]) == ("failed", "failed")
    assert len(fake.workspaces_of("admin")) == 1


def test_organizations_by_alias_and_templates(api: Api, fake: FakeCoder, template_id: str) -> None:
    for alias in ("default", NIL_UUID, "coder", DEFAULT_ORG_ID):
        assert api("GET", f"/organizations/{alias}").json()["id"] == DEFAULT_ORG_ID
    assert api("GET", "/organizations/unknown").status_code == 404
    found = api("GET", "/templates", params={"q": "exact_name:docker"}).json()
    assert [t["id"] for t in found] == [template_id]
    assert api("GET", "/templates/docker").status_code == 400


def test_rate_limit(api: Api, fake: FakeCoder) -> None:
    # Keyed by client and path (coderd/httpmw/ratelimit.go, httprate.KeyByEndpoint).
    fake.clock = lambda: 1_800_000_030.0  # mid-window: the three calls share one window
    fake.rate_limit_per_minute = 2
    api("GET", "/users/me")
    api("GET", "/buildinfo")
    api("GET", "/users/me")

    response = api("GET", "/users/me")

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "60"
    assert response.json()["message"] == (
        "You've been rate limited for sending more than 2 requests in 1m0s."
    )
    assert api("GET", "/buildinfo").status_code == 200


def test_password_endpoints_have_their_own_limit(api: Api, fake: FakeCoder) -> None:
    fake.clock = lambda: 1_800_000_030.0
    fake.rate_limit_per_minute = 1000
    answers = [
        api("POST", "/users/validate-password", json={"password": "x"}).status_code
        for _ in range(61)
    ]

    assert answers == [200] * 60 + [429]
    assert api("GET", "/users/me").status_code == 200


def test_fail_next_filters_by_method_and_path(api: Api, fake: FakeCoder) -> None:
    fake.fail_next(1, 502, method="POST", path_prefix="/api/v2/users")

    assert api("GET", "/users/me").status_code == 200
    assert api.create_user("alice").status_code == 502
    assert api.create_user("alice").status_code == 201


def test_restart_on_same_port_keeps_state(api: Api, fake: FakeCoder) -> None:
    api.create_user("alice")
    url = fake.url
    fake.stop()
    with pytest.raises(requests.ConnectionError):
        api("GET", "/users/alice")

    fake.start()

    assert fake.url == url
    assert api("GET", "/users/alice").status_code == 200


def test_down_drops_connections(api: Api, fake: FakeCoder) -> None:
    fake.down = True
    with pytest.raises(requests.ConnectionError):
        api("GET", "/buildinfo")

    fake.down = False
    assert api("GET", "/buildinfo").status_code == 200


def test_introspection_helpers(api: Api, fake: FakeCoder) -> None:
    api.create_user("cs-one", "cs-one@classroom-sms.invalid")
    api.create_user("other", "other@example.test")

    assert [u["username"] for u in fake.live_users("classroom-sms.invalid")] == ["cs-one"]
    assert set(fake.users_by_username()) == {"admin", "cs-one", "other"}
    assert fake.requests_log[-1].body["username"] == "other"
