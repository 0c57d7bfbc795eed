"""The fake Coder is a twin of REAL Coder (coder/coder), pinned behaviour by behaviour.

Each test names the Go file (and function) it follows. When one fails, compare with Coder's
source before touching the fake: the fake must never be bent to agree with the app.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from tests.fakes.coder import NIL_UUID, FakeCoder, is_email
from tests.student import credentials_from_sms, log_in, logs_in

STRONG = "Kd8mQ2xVr7Tz"
OTHER_STRONG = "Zq7Wm3Xk9Rp2"
NEVER = "0001-01-01T00:00:00Z"
# The middle of a rate-limit window, so two requests never straddle a window by accident.
MID_WINDOW = 1_800_000_000 // 60 * 60 + 30.0


class Api:
    """Raw HTTP against the fake, with an optional session token."""

    def __init__(self, fake: FakeCoder, token: str | None = None) -> None:
        self.base = fake.url + "/api/v2"
        self.session = requests.Session()
        if token is not None:
            self.session.headers["Coder-Session-Token"] = token

    def __call__(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.session.request(method, self.base + path, timeout=5, **kwargs)

    def create_user(self, username: str, **fields: Any) -> dict[str, Any]:
        body = {
            "username": username,
            "email": f"{username}@lab.invalid",
            "password": STRONG,
            "organization_ids": [NIL_UUID],
            **fields,
        }
        response = self("POST", "/users", json=body)
        assert response.status_code == 201, response.text
        return response.json()

    def login(self, email: str, password: str = STRONG) -> requests.Response:
        """POST /users/login on a session without any token (the login needs none)."""
        return requests.post(
            self.base + "/users/login", json={"email": email, "password": password}, timeout=5
        )


@pytest.fixture
def fake() -> Iterator[FakeCoder]:
    with FakeCoder(build_polls=0) as server:
        yield server


@pytest.fixture
def api(fake: FakeCoder) -> Api:
    return Api(fake, fake.token)


def token_of(response: requests.Response) -> str:
    assert response.status_code == 201, response.text
    return response.json()["session_token"]


def recent(timestamp: str) -> bool:
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    return datetime.now(UTC) - moment < timedelta(seconds=30)


# POST /users/login: coderd/userauth.go postLogin and loginRequest.


def test_login_takes_the_email_without_any_token(api: Api) -> None:
    # userauth.go postLogin: 201 {session_token}; coderd.go: /users/login has no API key
    # middleware. users.sql GetUserByEmailOrUsername compares LOWER(email).
    api.create_user("alice", user_status="active")

    response = api.login("ALICE@Lab.Invalid")

    assert response.status_code == 201
    assert set(response.json()) == {"session_token"}
    # apikey/apikey.go Generate: "<10-char id>-<22-char secret>".
    assert re.fullmatch(r"[A-Za-z0-9]{10}-[A-Za-z0-9]{22}", response.json()["session_token"])
    assert "coder_session_token=" in response.headers["Set-Cookie"]


def test_a_username_in_the_email_field_fails_validation(api: Api) -> None:
    # codersdk/users.go LoginWithPasswordRequest email `validate:"required,email"`, reported by
    # httpapi/httpapi.go Read. The username is never looked up.
    api.create_user("alice", user_status="active")

    response = api.login("alice")

    assert response.status_code == 400
    assert response.json() == {
        "message": "Validation failed.",
        "validations": [
            {"field": "email", "detail": 'Validation failed for tag "email" with value: "alice"'}
        ],
    }


def test_missing_fields_and_wrong_types(api: Api) -> None:
    # httpapi.go Read: go-playground "required" per field; a non-string is a decode error.
    empty = requests.post(api.base + "/users/login", json={}, timeout=5)
    assert empty.status_code == 400
    assert [v["field"] for v in empty.json()["validations"]] == ["email", "password"]
    assert empty.json()["validations"][1]["detail"] == (
        'Validation failed for tag "required" with value: ""'
    )

    typed = requests.post(api.base + "/users/login", json={"email": 42, "password": "x"}, timeout=5)
    assert (typed.status_code, typed.json()["message"]) == (
        400,
        "Request body must be valid JSON.",
    )


def test_email_rule_is_go_playgrounds(api: Api) -> None:
    # go-playground/validator regexes.go emailRegexString: the domain needs a dot and a TLD
    # ending in a letter; used by POST /users (codersdk CreateUserRequestWithOrgs) too.
    assert is_email("cs-k7pw3m@lab.invalid") and is_email("a.b+c@x-y.example.edu")
    assert not is_email("a@localhost") and not is_email("a@b.c1") and not is_email("a..b@x.io")
    assert api.login("a@localhost").json()["validations"][0]["detail"] == (
        'Validation failed for tag "email" with value: "a@localhost"'
    )
    refused = api(
        "POST",
        "/users",
        json={
            "username": "x",
            "email": "x@localhost",
            "password": STRONG,
            "organization_ids": [NIL_UUID],
        },
    )
    assert [v["field"] for v in refused.json()["validations"]] == ["email"]


def test_wrong_password_and_unknown_email_answer_alike(api: Api) -> None:
    # userauth.go loginRequest: one message for both, so accounts cannot be probed.
    api.create_user("alice", user_status="active")

    for response in (api.login("alice@lab.invalid", OTHER_STRONG), api.login("bob@lab.invalid")):
        assert (response.status_code, response.json()) == (
            401,
            {"message": "Incorrect email or password."},
        )


def test_deleted_users_cannot_log_in(api: Api) -> None:
    # users.sql GetUserByEmailOrUsername: deleted = false.
    api.create_user("alice", user_status="active")
    assert api("DELETE", "/users/alice").status_code == 200

    assert api.login("alice@lab.invalid").status_code == 401


def test_suspended_user_is_refused_with_coders_message(api: Api) -> None:
    # userauth.go loginRequest: the password is checked first, then the status.
    api.create_user("alice", user_status="active")
    api("PUT", "/users/alice/status/suspend")

    assert api.login("alice@lab.invalid", OTHER_STRONG).json()["message"] == (
        "Incorrect email or password."
    )
    refused = api.login("alice@lab.invalid")
    assert (refused.status_code, refused.json()["message"]) == (
        401,
        "Your account is suspended. Contact an admin to reactivate your account.",
    )


def test_dormant_user_is_activated_and_seen_when_the_token_is_used(
    api: Api, fake: FakeCoder
) -> None:
    # userauth.go loginRequest: ActivateDormantUser. postLogin's key has LastUsed zero, and
    # httpmw/apikey.go ExtractAPIKey moves last_seen_at on the key's first use, not the login.
    user = api.create_user("alice")
    assert (user["status"], user["last_seen_at"]) == ("dormant", NEVER)

    token = token_of(api.login("alice@lab.invalid"))

    after_login = api("GET", f"/users/{user['id']}").json()
    assert (after_login["status"], after_login["last_seen_at"]) == ("active", NEVER)
    me = Api(fake, token)("GET", "/users/me")
    assert (me.status_code, me.json()["id"]) == (200, user["id"])
    assert recent(api("GET", f"/users/{user['id']}").json()["last_seen_at"])


def test_non_password_users_get_403_only_past_the_password_check(api: Api, fake: FakeCoder) -> None:
    # userauth.go loginRequest: 403 "Incorrect login type" comes after userpassword.Compare,
    # which compares an empty hash (no password, no user) against "hunter2".
    fake.add_user("oidc-user", "Ignored-Password-123", email="o@lab.invalid", login_type="oidc")

    assert api.login("o@lab.invalid", "Ignored-Password-123").status_code == 401
    for email, login_type in (("o@lab.invalid", "oidc"), ("nobody@lab.invalid", "")):
        response = api.login(email, "hunter2")
        assert (response.status_code, response.json()["message"]) == (
            403,
            'Incorrect login type, attempting to use "password" but user is of login type '
            f'"{login_type}"',
        )


def test_session_tokens_die_with_a_new_password_or_a_suspension(api: Api, fake: FakeCoder) -> None:
    # users.go putUserPassword: DeleteAPIKeysByUserID. httpmw/apikey.go: an inactive user's
    # key is refused.
    api.create_user("alice", user_status="active")
    first = Api(fake, token_of(api.login("alice@lab.invalid")))
    assert first("GET", "/users/me").status_code == 200

    assert api("PUT", "/users/alice/password", json={"password": OTHER_STRONG}).status_code == 204
    assert first("GET", "/users/me").status_code == 401

    second = Api(fake, token_of(api.login("alice@lab.invalid", OTHER_STRONG)))
    api("PUT", "/users/alice/status/suspend")
    refused = second("GET", "/users/me")
    assert (refused.status_code, refused.json()["message"]) == (
        401,
        'User is not active (status = "suspended"). Contact an admin to reactivate your account.',
    )


def test_members_tokens_are_only_modelled_on_their_own_user_routes(
    api: Api, fake: FakeCoder
) -> None:
    # Not Coder: the fake's own line, so a test never relies on guessed RBAC.
    api.create_user("alice", user_status="active")
    member = Api(fake, token_of(api.login("alice@lab.invalid")))

    assert member("GET", "/users/alice").status_code == 200
    for method, path in (("GET", "/users"), ("GET", "/users/admin")):
        refused = member(method, path)
        assert (refused.status_code, refused.json()["message"]) == (403, "Forbidden.")


# PUT /users/{user}/profile: coderd/users.go putUserProfile.


def test_rename_keeps_the_id_and_frees_the_old_name(api: Api) -> None:
    # users.go putUserProfile: UpdateUserProfile by id; the old name resolves no more.
    user = api.create_user("alice", name="Alice A")

    renamed = api("PUT", f"/users/{user['id']}/profile", json={"username": "alice-2"})

    assert renamed.status_code == 200
    # UpdateUserProfile writes the name as sent: leaving it out clears it.
    assert (renamed.json()["id"], renamed.json()["username"], renamed.json()["name"]) == (
        user["id"],
        "alice-2",
        "",
    )
    assert api("GET", "/users/alice").status_code == 400
    assert api("GET", f"/users/{user['id']}").json()["username"] == "alice-2"
    assert api("PUT", "/users/alice-2/profile", json={"username": "ALICE-2"}).status_code == 200


def test_rename_to_a_live_users_name_is_409(api: Api) -> None:
    # users.go putUserProfile: GetUserByEmailOrUsername(Username) finds another user -> 409.
    api.create_user("alice")
    api.create_user("bob")
    api.create_user("carol")
    api("DELETE", "/users/carol")

    taken = api("PUT", "/users/bob/profile", json={"username": "Alice"})

    assert taken.status_code == 409
    assert taken.json() == {
        "message": "A user with this username already exists.",
        "validations": [{"field": "username", "detail": "This username is already in use."}],
    }
    # users.sql GetUserByEmailOrUsername skips deleted rows: a deleted user's name is free.
    assert api("PUT", "/users/bob/profile", json={"username": "carol"}).status_code == 200


def test_rename_follows_the_username_rule(api: Api) -> None:
    # codersdk/users.go UpdateUserProfileRequest: username `validate:"required,username"`.
    api.create_user("alice")

    for body, tag in (({"username": "bad_name"}, "username"), ({"name": "x"}, "required")):
        response = api("PUT", "/users/alice/profile", json=body)
        assert response.status_code == 400
        assert response.json()["validations"][0]["detail"].startswith(
            f'Validation failed for tag "{tag}"'
        )
    long_name = api("PUT", "/users/alice/profile", json={"username": "alice", "name": " x"})
    assert long_name.json()["validations"][0]["field"] == "name"


# Deleted users by id: coderd/httpmw/userparam.go + users.sql GetUserByID (no deleted filter).


def test_a_deleted_user_is_found_by_id_only(api: Api) -> None:
    # userparam.go extractUserContext: a UUID goes to GetUserByID (deleted rows included), a
    # username to GetUserByEmailOrUsername (deleted = false).
    user = api.create_user("alice")
    assert api("DELETE", "/users/alice").status_code == 200

    by_id = api("GET", f"/users/{user['id']}")
    assert (by_id.status_code, by_id.json()["username"]) == (200, "alice")
    assert api("GET", "/users/alice").status_code == 400
    # users.sql GetUsers: never lists deleted users.
    assert api("GET", "/users", params={"q": "alice"}).json() == {"users": [], "count": 0}
    # The username is free again; by name, the live user wins.
    fresh = api.create_user("alice", email="alice2@lab.invalid")
    assert api("GET", "/users/alice").json()["id"] == fresh["id"]


def test_user_routes_act_on_a_deleted_user_fetched_by_id(api: Api) -> None:
    # users.go: putUserPassword, putUserStatus and deleteUser never look at `deleted`.
    user = api.create_user("alice")
    api("DELETE", "/users/alice")
    path = f"/users/{user['id']}"

    assert api("PUT", path + "/password", json={"password": OTHER_STRONG}).status_code == 204
    assert api("PUT", path + "/status/suspend").json()["status"] == "suspended"
    again = api("DELETE", path)
    assert (again.status_code, again.json()) == (200, {"message": "User has been deleted!"})
    # By username, ExtractUserParam does not find it: 400.
    assert api("DELETE", "/users/alice").status_code == 400
    # Still not a user anyone can log in as.
    assert api.login("alice@lab.invalid", OTHER_STRONG).status_code == 401


def test_user_search_matches_username_or_email_with_ilike(api: Api) -> None:
    # users.sql GetUsers: email ILIKE '%search%' OR username ILIKE '%search%'.
    api.create_user("alice", email="teacher@school.example")
    api.create_user("bob")

    def found(q: str) -> list[str]:
        return [u["username"] for u in api("GET", "/users", params={"q": q}).json()["users"]]

    assert found("teacher") == ["alice"]
    assert found("bob") == ["bob"]
    assert found("a_ice") == ["alice"]  # "_" is ILIKE's any-one-character


# Workspaces: httpmw/workspaceparam.go, workspaces.go workspace, workspacebuilds.go.


def deleted_workspace(api: Api, fake: FakeCoder) -> dict[str, Any]:
    template = fake.add_template("docker")
    api.create_user("alice")
    created = api(
        "POST", "/users/alice/workspaces", json={"name": "lab", "template_id": template["id"]}
    ).json()
    api("GET", f"/workspaces/{created['id']}")  # build_polls=0: the start build ends
    build = api("POST", f"/workspaces/{created['id']}/builds", json={"transition": "delete"})
    api("GET", f"/workspacebuilds/{build.json()['id']}")
    assert api("GET", f"/workspaces/{created['id']}").status_code == 410
    return created


def test_a_delete_build_on_a_deleted_workspace_is_accepted(api: Api, fake: FakeCoder) -> None:
    # workspaceparam.go ExtractWorkspaceParam: GetWorkspaceByID finds deleted workspaces (no
    # 410 there); coder/coder#20584 still allows delete builds on them; wsbuilder.go Build.
    workspace = deleted_workspace(api, fake)
    fake.build_polls = 5

    again = api("POST", f"/workspaces/{workspace['id']}/builds", json={"transition": "delete"})

    assert again.status_code == 201
    assert again.json()["transition"] == "delete"
    # workspaces.deleted stays set while the new build runs: still gone, and the user can go.
    assert api("GET", f"/workspaces/{workspace['id']}").status_code == 410
    assert api("GET", "/workspaces", params={"q": "owner:alice"}).json()["count"] == 0
    assert api("DELETE", "/users/alice").status_code == 200
    builds = api("GET", f"/workspaces/{workspace['id']}/builds")
    assert builds.status_code == 200 and len(builds.json()) == 3


def test_start_on_a_deleted_workspace_is_refused(api: Api, fake: FakeCoder) -> None:
    # coder/coder#20584 (Oct 2025): start and stop builds on a deleted workspace are refused.
    workspace = deleted_workspace(api, fake)

    refused = api("POST", f"/workspaces/{workspace['id']}/builds", json={"transition": "start"})

    assert 400 <= refused.status_code < 500


def test_include_deleted_is_a_go_bool(api: Api, fake: FakeCoder) -> None:
    # workspaces.go workspace: strconv.ParseBool, and a 400 for anything else.
    workspace = deleted_workspace(api, fake)
    path = f"/workspaces/{workspace['id']}"

    for value in ("true", "1", "True", "t"):
        shown = api("GET", path, params={"include_deleted": value})
        assert shown.json()["latest_build"]["status"] == "deleted"
    bad = api("GET", path, params={"include_deleted": "yes"})
    assert (bad.status_code, bad.json()["message"]) == (
        400,
        'Invalid boolean value "yes" for "include_deleted" query param.',
    )
    gone = api("GET", path, params={"include_deleted": "false"})
    assert gone.json()["message"] == (
        f'Workspace "{workspace["id"]}" was deleted, you can view this workspace by '
        "specifying '?include_deleted=true' and trying again."
    )


# Rate limits: coderd/httpmw/ratelimit.go RateLimit (go-chi/httprate), coderd/coderd.go.


def test_rate_limit_is_per_client_and_path(api: Api, fake: FakeCoder) -> None:
    # ratelimit.go: httprate.WithKeyFuncs(KeyByIP (no API key yet), KeyByEndpoint).
    fake.clock = lambda: MID_WINDOW
    fake.rate_limit_per_minute = 2
    assert api("GET", "/users/me").status_code == 200
    assert api("GET", "/users/me", params={"q": "x"}).status_code == 200  # same path

    limited = api("GET", "/users/me")

    assert limited.status_code == 429
    assert limited.json() == {
        "message": "You've been rate limited for sending more than 2 requests in 1m0s."
    }
    # httprate limiter.go: Retry-After is the whole window, whatever is left of it.
    assert limited.headers["Retry-After"] == "60"
    assert limited.headers["X-Ratelimit-Limit"] == "2"
    assert api("GET", "/buildinfo").status_code == 200  # another path, its own budget
    api.create_user("alice", user_status="active")
    api.create_user("bob", user_status="active")
    assert api("PUT", "/users/alice/status/suspend").status_code == 200
    assert api("PUT", "/users/bob/status/suspend").status_code == 200
    # POST /users is one path: the third create of the minute is refused.
    refused = api(
        "POST",
        "/users",
        json={
            "username": "carol",
            "email": "c@lab.invalid",
            "password": STRONG,
            "organization_ids": [NIL_UUID],
        },
    )
    assert refused.status_code == 429


def test_rate_limit_window_is_httprates_sliding_estimate(api: Api, fake: FakeCoder) -> None:
    # httprate limiter.go calculateRate: prev * (window - elapsed) / window + current, rounded.
    now = [MID_WINDOW]
    fake.clock = lambda: now[0]
    fake.rate_limit_per_minute = 2
    api("GET", "/buildinfo")
    api("GET", "/buildinfo")

    now[0] = MID_WINDOW + 31  # 1 s into the next window: 2 * 59/60 rounds to 2
    assert api("GET", "/buildinfo").status_code == 429
    now[0] = MID_WINDOW + 61  # 31 s in: 2 * 29/60 rounds to 1
    assert api("GET", "/buildinfo").status_code == 200


def test_login_has_its_own_limit_of_60(api: Api, fake: FakeCoder) -> None:
    # coderd.go: r.Use(httpmw.RateLimit(options.LoginRateLimit, time.Minute)) on /login and
    # /validate-password, keyed by IP and path; LoginRateLimit defaults to 60.
    fake.clock = lambda: MID_WINDOW
    fake.rate_limit_per_minute = 1000
    answers = [api.login("nobody@lab.invalid").status_code for _ in range(61)]

    assert answers == [401] * 60 + [429]
    last = api.login("nobody@lab.invalid")
    assert last.json()["message"] == (
        "You've been rate limited for sending more than 60 requests in 1m0s."
    )
    assert last.headers["Retry-After"] == "60"
    # validate-password is another path of the same group: its own 60, and no token needed.
    anonymous = requests.post(
        api.base + "/users/validate-password", json={"password": "x"}, timeout=5
    )
    assert anonymous.status_code == 200


def test_password_route_limit_follows_user_param_and_keys_by_token_user(
    api: Api, fake: FakeCoder
) -> None:
    # coderd.go: /users/{user} (ExtractUserParam) -> /password (RateLimit) -> putUserPassword.
    fake.clock = lambda: MID_WINDOW
    fake.rate_limit_per_minute = 1000
    api.create_user("alice")
    unknown = [
        api("PUT", "/users/nobody/password", json={"password": "x"}).status_code for _ in range(61)
    ]
    assert unknown == [400] * 61  # refused before the limiter, never counted

    weak = [
        api("PUT", "/users/alice/password", json={"password": "x"}).status_code for _ in range(61)
    ]
    assert weak == [400] * 60 + [429]
    # ratelimit.go: with an API key, an owner's X-Coder-Bypass-Ratelimit skips the limiter.
    bypass = api(
        "PUT",
        "/users/alice/password",
        json={"password": "x"},
        headers={"X-Coder-Bypass-Ratelimit": "true"},
    )
    assert bypass.status_code == 400
    # ...and a member asking to bypass makes the key func fail: httprate answers 428 in text.
    api.create_user("bob", user_status="active")
    member = Api(fake, token_of(api.login("bob@lab.invalid")))
    refused = member(
        "PUT",
        "/users/me/password",
        json={"password": "x", "old_password": STRONG},
        headers={"X-Coder-Bypass-Ratelimit": "1"},
    )
    assert (refused.status_code, refused.text) == (
        428,
        '"X-Coder-Bypass-Ratelimit" provided but user is not owner\n',
    )


def test_injected_429_sends_the_whole_window_unless_told(api: Api, fake: FakeCoder) -> None:
    # httprate limiter.go: Retry-After is always the window (60 s).
    fake.fail_next(1, 429)
    fake.fail_next(1, 429, retry_after=2)

    assert api("GET", "/users/me").headers["Retry-After"] == "60"
    assert api("GET", "/users/me").headers["Retry-After"] == "2"


# Passwords: coderd/userpassword/userpassword.go Validate (go-password-validator v0.3.0, 52
# bits) and the handlers' wording in users.go postUser / putUserPassword.


def test_password_rules_and_wording_on_create_and_set(api: Api) -> None:
    # userpassword.go Validate (52 bits, then at most 64 bytes); users.go postUser answers
    # "Password not strong enough!", putUserPassword "Invalid password.".
    too_long = ("Kd8mQ2xVr7Tz" * 6)[:65]
    weak = api(
        "POST",
        "/users",
        json={
            "username": "alice",
            "email": "a@lab.invalid",
            "password": "qmzpxkrwtvj",
            "organization_ids": [NIL_UUID],
        },
    )
    assert weak.json()["message"] == "Password not strong enough!"
    assert weak.json()["validations"][0]["detail"] == (
        "insecure password, try including more special characters, using uppercase letters, "
        "using numbers or using a longer password"
    )
    long = api(
        "POST",
        "/users",
        json={
            "username": "alice",
            "email": "a@lab.invalid",
            "password": too_long,
            "organization_ids": [NIL_UUID],
        },
    )
    assert long.json()["validations"] == [
        {"field": "password", "detail": "password must be no more than 64 characters"}
    ]
    api.create_user("alice", user_status="active")
    set_long = api("PUT", "/users/alice/password", json={"password": too_long})
    assert (set_long.status_code, set_long.json()["message"]) == (400, "Invalid password.")
    same = api("PUT", "/users/alice/password", json={"password": STRONG})
    assert same.json()["message"] == "New password cannot match old password."
    changed = api("PUT", "/users/alice/password", json={"password": OTHER_STRONG})
    assert (changed.status_code, changed.content) == (204, b"")
    assert api.login("alice@lab.invalid", OTHER_STRONG).status_code == 201
    assert api.login("alice@lab.invalid", STRONG).status_code == 401


def test_own_password_needs_the_old_one(api: Api) -> None:
    # users.go putUserPassword: "Old password is required." for the token's own user, then a
    # wrong old password is a validation on old_password.
    missing = api("PUT", "/users/me/password", json={"password": OTHER_STRONG})
    assert (missing.status_code, missing.json()) == (400, {"message": "Old password is required."})
    wrong = api(
        "PUT",
        "/users/me/password",
        json={"password": OTHER_STRONG, "old_password": "Not-The-Password-1"},
    )
    assert wrong.json() == {
        "message": "Old password is incorrect.",
        "validations": [{"field": "old_password", "detail": "Old password is incorrect."}],
    }
    ok = api(
        "PUT",
        "/users/me/password",
        json={"password": OTHER_STRONG, "old_password": "Fake-Owner-Password-1234"},
    )
    assert ok.status_code == 204


def test_validate_password_reports_validates_error(api: Api) -> None:
    # userauth.go validateUserPassword: 200 {valid, details: Validate's error}.
    weak = api("POST", "/users/validate-password", json={"password": "Abc123!x"}).json()
    assert weak == {
        "valid": False,
        "details": "insecure password, try including more special characters or using a "
        "longer password",
    }
    assert api("POST", "/users/validate-password", json={"password": STRONG}).json() == {
        "valid": True,
        "details": "",
    }


# Routing: coderd/coderd.go.


def test_unknown_routes_are_404_before_any_token_check(fake: FakeCoder) -> None:
    # coderd.go: /api/v2's NotFound handler is outside apiKeyMiddleware.
    response = Api(fake)("GET", "/no-such-thing")
    assert (response.status_code, response.json()) == (404, {"message": "Route not found."})


# The student's side: tests/student.py reads the SMS as a student would.


SMS = (
    "Your Coder account is ready.\nhttps://coder.example.edu\nEmail: cs-k7pw3m@lab.invalid\n"
    "Password: k7pw-m3rt-q9zx\nExpires Tue Mar 5 14:30 EST"
)


def test_credentials_come_from_the_email_and_password_lines() -> None:
    # userauth.go loginRequest needs the email: a student must find one in the SMS.
    assert credentials_from_sms(SMS) == ("cs-k7pw3m@lab.invalid", "k7pw-m3rt-q9zx")
    assert credentials_from_sms("Email x@y.io\nPassword secret") == ("x@y.io", "secret")
    for body in (
        SMS.replace("Email: cs-k7pw3m@lab.invalid", "Username: cs-k7pw3m"),
        SMS.replace("cs-k7pw3m@lab.invalid", "cs-k7pw3m"),
        SMS.replace("Password:", "Pass:"),
    ):
        with pytest.raises(AssertionError, match="SMS"):
            credentials_from_sms(body)


def test_a_student_logs_in_with_what_the_sms_says(api: Api, fake: FakeCoder) -> None:
    # userauth.go postLogin with the texted email; httpmw/apikey.go marks the user seen when
    # the dashboard first uses the token.
    user = api.create_user("cs-k7pw3m", password="k7pw-m3rt-q9zx")

    assert logs_in(fake.url, SMS)
    # The dashboard's first call with the new token marks the student as seen.
    assert recent(api("GET", f"/users/{user['id']}").json()["last_seen_at"])
    assert log_in(fake.url, "cs-k7pw3m", "k7pw-m3rt-q9zx").status_code == 400
    assert not logs_in(fake.url, SMS.replace("k7pw-m3rt-q9zx", "wrong-pass-word1"))


# Template parameters: coderd/templateversions.go templateVersionRichParameters, and the first
# build's checks in coderd/wsbuilder/wsbuilder.go getClassicParameters with
# codersdk/richparameters.go and terraform-provider-coder's Validation.Valid.

LAB_PARAMETERS = [
    {"name": "region", "display_name": "Region", "options": [{"value": "eu"}, {"value": "us"}]},
    {
        "name": "cpus",
        "type": "number",
        "default_value": "2",
        "validation_min": 1,
        "validation_max": 4,
    },
    {
        "name": "repo",
        "default_value": "https://example.com/lab",
        "validation_regex": "^https://",
        "validation_error": "Use an https URL",
    },
]


def create_workspace(api: Api, template_id: str, values: list[dict[str, str]]) -> requests.Response:
    owner = api.create_user(f"ws-{uuid.uuid4().hex[:12]}")
    body = {"name": "lab", "template_id": template_id, "rich_parameter_values": values}
    return api("POST", f"/users/{owner['id']}/workspaces", json=body)


def test_rich_parameters_are_listed_by_template_version(api: Api, fake: FakeCoder) -> None:
    first = fake.add_template("lab")
    template = fake.set_template_parameters("lab", LAB_PARAMETERS)
    assert template["use_classic_parameter_flow"] is True
    assert template["active_version_id"] != first["active_version_id"]
    response = api("GET", f"/templateversions/{template['active_version_id']}/rich-parameters")
    assert response.status_code == 200, response.text
    region, cpus, repo = response.json()
    assert (region["name"], region["display_name"], region["required"]) == (
        "region",
        "Region",
        True,
    )
    assert [o["value"] for o in region["options"]] == ["eu", "us"]
    # omitempty: no bound means no key at all; a default makes a parameter optional.
    assert "validation_min" not in region and "display_name" not in cpus
    assert (cpus["validation_min"], cpus["validation_max"], cpus["required"]) == (1, 4, False)
    assert repo["options"] == [] and repo["validation_regex"] == "^https://"
    # The version the template had before is still there, without parameters.
    old = api("GET", f"/templateversions/{first['active_version_id']}/rich-parameters")
    assert old.status_code == 200 and old.json() == []


def test_rich_parameters_of_a_malformed_or_unknown_version(api: Api) -> None:
    assert api("GET", "/templateversions/nope/rich-parameters").json()["message"] == (
        'Invalid UUID "nope".'
    )
    unknown = api("GET", f"/templateversions/{NIL_UUID}/rich-parameters")
    assert unknown.status_code == 404


def test_a_missing_required_parameter_refuses_the_workspace(api: Api, fake: FakeCoder) -> None:
    fake.add_template("lab")
    template = fake.set_template_parameters("lab", LAB_PARAMETERS)
    response = create_workspace(api, template["id"], [])
    assert response.status_code == 400
    assert response.json() == {
        "message": 'Unable to validate parameter "region"',
        "detail": 'Parameter "region" is required but not provided',
    }
    response = create_workspace(api, template["id"], [{"name": "region", "value": ""}])
    assert response.json()["detail"] == (
        'can\'t validate build parameter "Region": parameter value is required'
    )


def test_values_outside_options_bounds_or_pattern_are_refused(api: Api, fake: FakeCoder) -> None:
    fake.add_template("lab")
    template = fake.set_template_parameters("lab", LAB_PARAMETERS)
    region = {"name": "region", "value": "eu"}
    cases = [
        (
            [{"name": "region", "value": "asia"}],
            "region",
            'can\'t validate build parameter "Region": parameter value must match one of '
            "options: [eu us]",
        ),
        (
            [region, {"name": "cpus", "value": "9"}],
            "cpus",
            'can\'t validate build parameter "cpus": value 9 is more than the maximum 4',
        ),
        (
            [region, {"name": "cpus", "value": "two"}],
            "cpus",
            'can\'t validate build parameter "cpus": value "two" is not a number',
        ),
        (
            [region, {"name": "repo", "value": "git@x"}],
            "repo",
            'can\'t validate build parameter "repo": Use an https URL '
            '(value "git@x" does not match "^https://")',
        ),
    ]
    for values, name, detail in cases:
        response = create_workspace(api, template["id"], values)
        assert response.status_code == 400, values
        assert response.json() == {
            "message": f'Unable to validate parameter "{name}"',
            "detail": detail,
        }


def test_valid_values_build_and_unknown_names_are_ignored(api: Api, fake: FakeCoder) -> None:
    fake.add_template("lab")
    template = fake.set_template_parameters("lab", LAB_PARAMETERS)
    values = [{"name": "region", "value": "us"}, {"name": "colour", "value": "red"}]
    response = create_workspace(api, template["id"], values)
    assert response.status_code == 201, response.text
    assert response.json()["template_use_classic_parameter_flow"] is True
