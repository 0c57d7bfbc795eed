"""The Coder client against the fake Coder server: bodies sent, answers parsed, retries bounded."""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterator

import pytest

from registrations import coder as coder_module
from registrations.coder import (
    CoderClient,
    CoderError,
    CoderNotConfigured,
    User,
    Workspace,
    WorkspaceBuild,
    get_client,
    parse_time,
    reset_clients,
)
from tests.fakes.coder import DEFAULT_ORG_ID, NIL_UUID, FakeCoder
from tests.student import log_in

STRONG = "Kd8mQ2xVr7Tz"
EMAIL_DOMAIN = "lab.invalid"


@pytest.fixture
def fake() -> Iterator[FakeCoder]:
    with FakeCoder(build_polls=1) as server:
        server.add_template("docker")
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def coder(fake: FakeCoder, sleeps: list[float]) -> Iterator[CoderClient]:
    client = CoderClient(fake.url, fake.token, timeout=2, sleep=sleeps.append)
    yield client
    client.close()


def make_user(coder: CoderClient, username: str = "cs-ab12") -> User:
    return coder.create_user(username, f"{username}@{EMAIL_DOMAIN}", STRONG, NIL_UUID)


def posts(fake: FakeCoder, path: str) -> list[object]:
    return [body for method, p, body in fake.requests_log if method == "POST" and p == path]


def wait_build(coder: CoderClient, build: WorkspaceBuild) -> WorkspaceBuild:
    for _ in range(20):
        build = coder.get_build(build.id)
        if not build.is_active:
            return build
    raise AssertionError("build never finished")


def test_create_user_sends_exact_body_and_parses_201(coder: CoderClient, fake: FakeCoder) -> None:
    user = coder.create_user(
        "cs-ab12", "cs-ab12@lab.invalid", STRONG, NIL_UUID, name="Lab 3"
    )

    assert posts(fake, "/api/v2/users") == [
        {
            "username": "cs-ab12",
            "email": "cs-ab12@lab.invalid",
            "password": STRONG,
            "login_type": "password",
            "name": "Lab 3",
            "user_status": "active",
            "organization_ids": [NIL_UUID],
        }
    ]
    assert user.username == "cs-ab12"
    assert user.status == "active"
    assert user.organization_ids == [DEFAULT_ORG_ID]
    assert user.created_at is not None and user.last_seen_at is None
    assert log_in(fake.url, "cs-ab12@lab.invalid", STRONG).status_code == 201


def test_taken_username_any_case_raises_409_not_retryable(
    coder: CoderClient, fake: FakeCoder, sleeps: list[float]
) -> None:
    make_user(coder, "cs-ab12")
    with pytest.raises(CoderError) as caught:
        coder.create_user("CS-AB12", "other@lab.invalid", STRONG, NIL_UUID)

    assert caught.value.status == 409
    assert caught.value.message == "User already exists."
    assert not caught.value.retryable
    assert len(posts(fake, "/api/v2/users")) == 2
    assert sleeps == []


def test_weak_password_raises_400_with_password_validation(coder: CoderClient) -> None:
    with pytest.raises(CoderError) as caught:
        coder.create_user("cs-ab12", "cs-ab12@lab.invalid", "Abc123!x", NIL_UUID)

    error = caught.value
    assert (error.status, error.message, error.retryable) == (
        400,
        "Password not strong enough!",
        False,
    )
    assert error.validations[0]["field"] == "password"
    assert "Abc123!x" not in str(error)
    assert "password: insecure password" in str(error)


def test_get_user_returns_user_or_none_when_unknown(coder: CoderClient) -> None:
    created = make_user(coder)

    assert coder.get_user("CS-AB12") == created
    assert coder.get_user("nobody-here") is None


def test_get_retries_5xx_then_succeeds(
    coder: CoderClient, fake: FakeCoder, sleeps: list[float]
) -> None:
    fake.fail_next(2, 503, method="GET")

    assert coder.current_user().roles == ["owner"]
    assert [m for m, p, _ in fake.requests_log] == ["GET"] * 3
    assert sleeps == [0.25, 0.5]


def test_get_gives_up_after_max_retries(
    coder: CoderClient, fake: FakeCoder, sleeps: list[float]
) -> None:
    fake.fail_next(5, 500)

    with pytest.raises(CoderError) as caught:
        coder.current_user()

    assert caught.value.status == 500 and caught.value.retryable
    assert len(fake.requests_log) == 3


def test_post_is_not_retried_on_500(
    coder: CoderClient, fake: FakeCoder, sleeps: list[float]
) -> None:
    fake.fail_next(1, 500, method="POST")

    with pytest.raises(CoderError) as caught:
        make_user(coder)

    assert caught.value.status == 500 and caught.value.retryable
    assert len(posts(fake, "/api/v2/users")) == 1
    assert sleeps == []


def test_429_retry_after_is_honoured(
    coder: CoderClient, fake: FakeCoder, sleeps: list[float]
) -> None:
    fake.fail_next(1, 429, method="POST", retry_after=2)

    make_user(coder)

    assert sleeps == [2.0]
    assert len(posts(fake, "/api/v2/users")) == 2


def test_429_with_long_retry_after_is_raised_for_the_caller(
    coder: CoderClient, fake: FakeCoder, sleeps: list[float]
) -> None:
    fake.fail_next(1, 429, retry_after=30)

    with pytest.raises(CoderError) as caught:
        coder.current_user()

    assert (caught.value.status, caught.value.retryable, caught.value.retry_after) == (
        429,
        True,
        30.0,
    )
    assert sleeps == []


def test_post_timeout_is_retryable_without_status_and_not_resent(fake: FakeCoder) -> None:
    coder = CoderClient(fake.url, fake.token, timeout=0.1, sleep=lambda _: None)
    fake.latency = 0.3

    with pytest.raises(CoderError) as caught:
        make_user(coder)

    assert caught.value.status is None and caught.value.retryable
    assert len(posts(fake, "/api/v2/users")) == 1
    # The server carried the create out anyway: this is why callers look the user up first.
    fake.latency = 0
    deadline = time.monotonic() + 2
    while coder.get_user("cs-ab12") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert coder.get_user("cs-ab12") is not None


def test_refused_connection_is_retried_even_for_post(
    coder: CoderClient, fake: FakeCoder, sleeps: list[float]
) -> None:
    fake.stop()
    with pytest.raises(CoderError) as caught:
        make_user(coder)
    assert caught.value.status is None and caught.value.retryable
    assert sleeps == [0.25, 0.5]

    fake.start()
    assert make_user(coder).username == "cs-ab12"


def test_dropped_connection_after_sending_post_is_not_resent(
    coder: CoderClient, fake: FakeCoder, sleeps: list[float]
) -> None:
    fake.down = True

    with pytest.raises(CoderError) as caught:
        make_user(coder)

    assert caught.value.status is None and caught.value.retryable
    assert sleeps == []


def test_delete_lifecycle(coder: CoderClient, fake: FakeCoder) -> None:
    user = make_user(coder)
    template = coder.template_by_name("docker")
    assert template is not None
    workspace = coder.create_workspace(user.username, "lab", template.id)
    assert (workspace.status, workspace.transition) == ("pending", "start")

    with pytest.raises(CoderError) as busy:
        coder.delete_workspace(workspace.id)
    assert busy.value.status == 409 and not busy.value.retryable
    with pytest.raises(CoderError) as has_workspaces:
        coder.delete_user(user.username)
    assert has_workspaces.value.status == 417 and not has_workspaces.value.retryable

    assert wait_build(coder, workspace.latest_build).status == "running"
    deleting = coder.delete_workspace(workspace.id)
    assert (deleting.transition, deleting.status) == ("delete", "pending")
    assert wait_build(coder, deleting).is_deleted

    assert coder.get_workspace(workspace.id) is None
    assert coder.list_workspaces(user.username) == []
    assert coder.delete_user(user.username) is True
    assert coder.delete_user(user.username) is False
    assert posts(fake, f"/api/v2/workspaces/{workspace.id}/builds")[-1] == {"transition": "delete"}


def test_failed_delete_can_be_orphaned(coder: CoderClient, fake: FakeCoder) -> None:
    fake.build_polls = 0
    fake.fail_delete_builds = 1
    template = coder.template_by_name("docker")
    workspace = coder.create_workspace(make_user(coder).username, "lab", template.id)

    failed = wait_build(coder, coder.delete_workspace(workspace.id))
    assert failed.is_failed and failed.job_error
    orphaned = wait_build(coder, coder.delete_workspace(workspace.id, orphan=True))

    assert orphaned.is_deleted
    assert posts(fake, f"/api/v2/workspaces/{workspace.id}/builds")[-1] == {
        "transition": "delete",
        "orphan": True,
    }


def test_get_workspace_unknown_is_none(coder: CoderClient) -> None:
    assert coder.get_workspace("3f0d3b8e-1111-4c3a-9d43-0123456789ab") is None


def test_create_workspace_in_organization_with_parameters(
    coder: CoderClient, fake: FakeCoder
) -> None:
    template = coder.template_by_name("docker")
    user = make_user(coder)

    workspace = coder.create_workspace(
        user.username, "lab", template.id, organization="default", rich_parameter_values={"cpu": 2}
    )

    assert workspace.owner_name == user.username and workspace.template_id == template.id
    path = f"/api/v2/organizations/default/members/{user.username}/workspaces"
    assert posts(fake, path) == [
        {
            "name": "lab",
            "template_id": template.id,
            "rich_parameter_values": [{"name": "cpu", "value": "2"}],
        }
    ]


def test_iter_users_and_list_workspaces_page_through_everything(
    coder: CoderClient, fake: FakeCoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(coder_module, "PAGE_SIZE", 2)
    for n in range(5):
        fake.add_user(f"cs-user{n}")
    template = coder.template_by_name("docker")
    for n in range(3):
        coder.create_workspace("cs-user0", f"ws{n}", template.id)

    assert [u.username for u in coder.iter_users("cs-user")] == [f"cs-user{n}" for n in range(5)]
    assert sorted(w.name for w in coder.list_workspaces("cs-user0")) == ["ws0", "ws1", "ws2"]
    assert coder.list_users("status:suspended") == ([], 0)


def test_password_and_status_changes(coder: CoderClient, fake: FakeCoder) -> None:
    user = make_user(coder)

    coder.set_password(user.id, "Zq7Wm3Xk9Rp2")
    assert log_in(fake.url, user.email, "Zq7Wm3Xk9Rp2").status_code == 201
    assert log_in(fake.url, user.email, STRONG).status_code == 401
    assert coder.suspend_user(user.id).is_suspended
    assert log_in(fake.url, user.email, "Zq7Wm3Xk9Rp2").status_code == 401
    assert coder.activate_user(user.id).status == "active"
    assert coder.validate_password(STRONG) and not coder.validate_password("password")
    assert [b for m, p, b in fake.requests_log if m == "PUT" and p.endswith("/password")] == [
        {"password": "Zq7Wm3Xk9Rp2"}
    ]


def test_organizations_and_templates(coder: CoderClient, fake: FakeCoder) -> None:
    other = fake.add_organization("physics")
    fake.add_template("jupyter", organization="physics")

    assert coder.resolve_organization_id(None) == DEFAULT_ORG_ID
    assert coder.resolve_organization_id("physics") == other["id"]
    assert coder.organization(NIL_UUID).is_default
    assert [t.name for t in coder.templates("physics")] == ["jupyter"]
    assert coder.template_by_name("jupyter", org="coder") is None
    assert coder.template_by_name("nope") is None


def test_build_info_is_sent_without_token(coder: CoderClient, fake: FakeCoder) -> None:
    assert coder.build_info().version == fake.version

    (request,) = fake.requests("GET", "/api/v2/buildinfo")
    assert "coder-session-token" not in request.headers
    assert fake.token not in repr(coder)


def test_error_survives_pickling() -> None:
    error = CoderError("POST", "/users", 409, "User already exists.", retry_after=1.5)

    copy = pickle.loads(pickle.dumps(error))

    assert (copy.status, copy.retryable, copy.retry_after, str(copy)) == (
        409,
        False,
        1.5,
        str(error),
    )


def test_parsers_tolerate_missing_null_and_never() -> None:
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert parse_time("2025-11-21T14:05:00.123456789Z").microsecond == 123456
    assert User.from_json({"id": "x", "roles": None, "username": None}).username == ""
    assert Workspace.from_json({"id": "w", "latest_build": None}).status == ""


def test_get_client_reads_settings_and_is_cached(settings, fake: FakeCoder) -> None:
    reset_clients()
    settings.CODER_URL, settings.CODER_SESSION_TOKEN = fake.url + "/", fake.token

    assert get_client() is get_client()
    assert get_client().current_user().username == "admin"

    settings.CODER_SESSION_TOKEN = ""
    with pytest.raises(CoderNotConfigured):
        get_client()
    reset_clients()
