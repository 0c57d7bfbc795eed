"""Reconcile: Coder users carrying our email marker that no live account owns are deleted;
every other Coder user is left alone."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from registrations import credentials, maintenance
from registrations.models import Account, AccountStatus
from tests.student import rename_in_coder

pytestmark = pytest.mark.django_db

OURS = "lab.invalid"
NOT_OURS = ["alice", "cs-lookalike", "eve"]


@pytest.fixture
def coder_users(open_session, coder_account, fake_coder):
    """A live account, two orphans (one with a workspace), and users that are not ours."""
    coder_account(open_session, "cs-live")
    coder_account(open_session, "cs-orphan", phone="+14155550166").delete()
    gone = coder_account(open_session, "cs-gone", workspaces=0, phone="+14155550177")
    Account.objects.filter(pk=gone.pk).update(status=AccountStatus.DELETED, phone=None)
    fake_coder.add_user("alice", email="alice@example.com")
    fake_coder.add_user("cs-lookalike", email="cs-lookalike@example.com")
    fake_coder.add_user("eve", email=f"eve@{OURS}.example.com")
    fake_coder.build_polls = 0
    fake_coder.clear_log()
    return fake_coder


def touched(fake_coder, username: str, user_id: str = "") -> list[str]:
    """Requests naming the user in their path, by name or by id."""
    user_id = user_id or fake_coder.users_by_username()[username]["id"]
    return [
        f"{r.method} {r.path.replace(user_id, username)}"
        for r in fake_coder.requests_log
        if username in r.path or user_id in r.path
    ]


def test_orphans_are_deleted_and_other_users_untouched(coder_users):
    first = maintenance.reconcile()
    second = maintenance.reconcile()

    assert first == {"found": 3, "orphans": 2, "deleted": 1, "pending": 1, "errors": 0}
    assert second == {"found": 2, "orphans": 1, "deleted": 1, "pending": 0, "errors": 0}
    assert [u["username"] for u in coder_users.live_users(OURS)] == ["cs-live"]
    live = coder_users.users_by_username()
    for username in [*NOT_OURS, "cs-live"]:
        assert live[username]["status"] == "active"
        assert touched(coder_users, username) == []
    assert coder_users.requests("GET", "/api/v2/users")[0].query["q"] == [OURS]


def test_orphan_goes_through_suspend_workspaces_then_user(coder_users):
    workspace_id = coder_users.workspaces_of("cs-orphan")[0]["id"]
    user_id = coder_users.users_by_username()["cs-orphan"]["id"]

    maintenance.reconcile()
    maintenance.reconcile()

    # By id (shown here as the name): the orphan could have renamed itself.
    assert touched(coder_users, "cs-orphan", user_id) == [
        "PUT /api/v2/users/cs-orphan/status/suspend",
        "GET /api/v2/users/cs-orphan",
        "GET /api/v2/users/cs-orphan",
        "DELETE /api/v2/users/cs-orphan",
    ]
    deletes = [r.body for r in coder_users.requests("POST", f"/api/v2/workspaces/{workspace_id}")]
    assert deletes == [{"transition": "delete"}]
    assert not coder_users.workspaces_of("cs-orphan")


def test_a_student_who_renamed_themselves_is_not_an_orphan(coder_users):
    live_id = coder_users.users_by_username()["cs-live"]["id"]
    rename_in_coder(coder_users, live_id, "renamed-student")
    coder_users.clear_log()

    maintenance.reconcile()
    maintenance.reconcile()

    assert coder_users.users_by_username()["renamed-student"]["status"] == "active"
    assert touched(coder_users, "renamed-student", live_id) == []


def test_a_user_created_before_its_row_saved_the_id_is_not_an_orphan(coder_users):
    Account.objects.filter(coder_username="cs-live").update(coder_user_id="", coder_email="")

    report = maintenance.reconcile()

    assert report["orphans"] == 2  # the two real orphans only
    assert coder_users.users_by_username()["cs-live"]["status"] == "active"


def test_dry_run_finds_orphans_and_changes_nothing(coder_users):
    assert maintenance.reconcile(dry_run=True)["orphans"] == 2

    assert {r.method for r in coder_users.requests_log} == {"GET"}


def test_coder_error_on_one_orphan_is_counted_and_the_others_go_on(coder_users):
    gone_id = coder_users.users_by_username()["cs-gone"]["id"]
    coder_users.fail_next(3, 500, method="PUT", path_prefix=f"/api/v2/users/{gone_id}")

    report = maintenance.reconcile()

    assert (report["errors"], report["pending"]) == (1, 1)
    assert "cs-gone" in coder_users.users_by_username()


def test_command_shows_progress_and_a_summary(coder_users):
    out, err = StringIO(), StringIO()

    call_command("reconcile", stdout=out, stderr=err)

    assert err.getvalue().endswith(f"\rDeleting orphans [{'#' * 30}] 2/2\n")
    assert out.getvalue() == (
        f"Coder users of this deployment (marker .{credentials.deployment_id()}@{OURS}): 3\n"
        "Orphans (no live account): 2\n"
        "Deleted: 1\n"
        "Still deleting workspaces (finished by the next run): 1\n"
        "Errors: 0\n"
    )


def test_command_dry_run_lists_the_orphans(coder_users):
    out = StringIO()

    call_command("reconcile", "--dry-run", stdout=out)

    assert "Orphans (no live account) that would be deleted: 2" in out.getvalue()
    assert "cs-gone" in out.getvalue() and "cs-orphan" in out.getvalue()
    assert "cs-live" not in out.getvalue() and "alice" not in out.getvalue()
    assert {r.method for r in coder_users.requests_log} == {"GET"}


def test_command_fails_with_a_clear_message_on_errors(coder_users):
    gone_id = coder_users.users_by_username()["cs-gone"]["id"]
    coder_users.fail_next(3, 500, method="PUT", path_prefix=f"/api/v2/users/{gone_id}")

    with pytest.raises(CommandError, match="1 orphans could not be deleted"):
        call_command("reconcile", stdout=StringIO(), stderr=StringIO())


def test_command_fails_when_coder_is_not_configured(db, settings):
    settings.CODER_URL = ""

    with pytest.raises(CommandError, match="Coder is not configured"):
        call_command("reconcile", stdout=StringIO(), stderr=StringIO())
