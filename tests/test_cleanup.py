"""The deletion pipeline against the stateful fake Coder: suspend, delete workspaces, wait until
Coder reports them gone, delete the user, purge the phone."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import F
from django.utils import timezone
from django.utils.module_loading import import_string

from registrations import credentials, deletion, expiry, maintenance, provisioning
from registrations.coder import get_client
from registrations.models import DELETION_STATUSES, Account, AccountStatus, DeletionReason
from tests.conftest import queued_tasks
from tests.student import rename_in_coder

pytestmark = pytest.mark.django_db

EMAIL_DOMAIN = "lab.invalid"


def expired(session, make, username="cs-student", **fields):
    return make(session, username, expires_at=timezone.now() - timedelta(seconds=1), **fields)


def wait_is_over(account: Account) -> None:
    """Time passes: whatever the account waits for (a poll, a back-off) is due now."""
    Account.objects.filter(pk=account.pk).update(next_attempt_at=timezone.now())


def step(account: Account, capture) -> Account:
    """Run the account's next pipeline step (and any step it chains at once), as a worker would."""
    wait_is_over(account)
    with capture(execute=True):
        deletion.advance(account.pk)
    account.refresh_from_db()
    return account


def calls(fake_coder) -> list[tuple[str, str]]:
    return [(r.method, r.path.removeprefix("/api/v2")) for r in fake_coder.requests_log]


def test_expiry_suspends_deletes_workspaces_then_user_and_purges_phone(
    open_session, coder_account, fake_coder, sync_tasks, django_capture_on_commit_callbacks
):
    account = expired(open_session, coder_account)
    workspace_id = fake_coder.workspaces_of("cs-student")[0]["id"]

    with django_capture_on_commit_callbacks(execute=True):
        assert expiry.expire_due() == 1

    account.refresh_from_db()
    assert account.status == AccountStatus.DELETING_WORKSPACES
    assert account.deletion_reason == DeletionReason.EXPIRED
    assert fake_coder.users_by_username()["cs-student"]["status"] == "suspended"
    uid = account.coder_user_id
    # Every call about the student names their id: they may have renamed themselves.
    assert calls(fake_coder) == [("PUT", f"/users/{uid}/status/suspend")]

    # The workspaces wait for the deletion pass: one paged listing for every waiting account.
    deletion.run_pass()

    assert calls(fake_coder)[1:] == [
        ("GET", "/workspaces"),
        ("POST", f"/workspaces/{workspace_id}/builds"),
    ]
    assert fake_coder.requests_log[2].body == {"transition": "delete"}
    assert fake_coder.requests("GET", "/api/v2/workspaces")[0].query["limit"] == ["500"]

    for _ in range(10):
        if step(account, django_capture_on_commit_callbacks).status == AccountStatus.DELETED:
            break
    assert account.status == AccountStatus.DELETED
    assert account.phone is None
    assert account.deleted_at and account.purged_at and account.suspended_at
    assert fake_coder.live_users(EMAIL_DOMAIN) == []
    log = calls(fake_coder)
    assert log.count(("POST", f"/workspaces/{workspace_id}/builds")) == 1
    # The user is deleted once, after Coder stopped listing the workspace: never a 417.
    assert log[-2:] == [("GET", "/workspaces"), ("DELETE", f"/users/{uid}")]
    assert not fake_coder.workspaces_of("cs-student")


def test_user_delete_answered_417_goes_back_to_workspaces(
    open_session, coder_account, fake_coder, django_capture_on_commit_callbacks
):
    account = coder_account(open_session, status=AccountStatus.DELETING_USER)

    step(account, django_capture_on_commit_callbacks)

    assert calls(fake_coder) == [("DELETE", f"/users/{account.coder_user_id}")]
    assert account.status == AccountStatus.DELETING_WORKSPACES
    assert account.next_attempt_at > timezone.now()
    assert "cs-student" in fake_coder.users_by_username()
    while account.status != AccountStatus.DELETED:
        step(account, django_capture_on_commit_callbacks)
    assert fake_coder.live_users(EMAIL_DOMAIN) == []


def test_running_build_is_left_to_finish_and_409_means_try_again_later(
    open_session, coder_account, fake_coder, django_capture_on_commit_callbacks
):
    account = coder_account(open_session, status=AccountStatus.DELETING_WORKSPACES, workspaces=0)
    template_id = fake_coder.add_template("python")["id"]
    workspace = get_client().create_workspace("cs-student", "busy", template_id)
    fake_coder.clear_log()

    step(account, django_capture_on_commit_callbacks)  # its start build is still pending
    assert calls(fake_coder) == [("GET", f"/users/{account.coder_user_id}"), ("GET", "/workspaces")]
    assert account.status == AccountStatus.DELETING_WORKSPACES

    fake_coder.build_polls = 0
    fake_coder.fail_next(1, 409, method="POST", path_prefix="/api/v2/workspaces/")
    step(account, django_capture_on_commit_callbacks)
    assert account.status == AccountStatus.DELETING_WORKSPACES
    assert account.last_error == ""

    while account.status != AccountStatus.DELETED:
        step(account, django_capture_on_commit_callbacks)
    builds = [r for r in fake_coder.requests("POST") if r.path.endswith("/builds")]
    assert [r.path for r in builds] == [f"/api/v2/workspaces/{workspace.id}/builds"] * 2


def test_failed_delete_build_is_retried_then_shows_why_stuck_until_orphaned(
    open_session, coder_account, fake_coder, settings, django_capture_on_commit_callbacks
):
    settings.WORKSPACE_DELETE_MAX_FAILURES = 2
    account = coder_account(open_session, status=AccountStatus.DELETING_WORKSPACES)
    fake_coder.build_polls = 0
    fake_coder.fail_delete_builds = 10

    for _ in range(4):
        step(account, django_capture_on_commit_callbacks)

    builds = [r for r in fake_coder.requests("POST") if r.path.endswith("/builds")]
    assert [r.body for r in builds] == [{"transition": "delete"}] * 3  # first try + 2 retries
    assert account.status == AccountStatus.DELETING_WORKSPACES
    assert account.workspace_delete_failures == 2
    assert account.last_error.startswith("Deleting workspace ws1 failed 2 times")
    assert "injected failure" in account.last_error and "Orphan" in account.last_error
    assert account.next_attempt_at > timezone.now() + timedelta(minutes=30)

    assert deletion.orphan_workspaces(account) is True
    assert fake_coder.requests("POST")[-1].body == {"transition": "delete", "orphan": True}
    while account.status != AccountStatus.DELETED:
        step(account, django_capture_on_commit_callbacks)
    assert fake_coder.live_users(EMAIL_DOMAIN) == []


def test_orphan_workspaces_refuses_an_account_not_deleting_workspaces(
    open_session, coder_account, fake_coder
):
    account = coder_account(open_session)

    assert deletion.orphan_workspaces(account) is False
    assert fake_coder.requests_log == []


def test_a_user_that_never_came_to_exist_counts_as_already_deleted(
    open_session, fake_coder, sync_tasks, django_capture_on_commit_callbacks
):
    # The worker died after saving the username but before Coder created the user: no id.
    account = Account.objects.create(
        session=open_session, phone="+14155550199", status=AccountStatus.ACTIVE,
        coder_username="cs-ghost", expires_at=timezone.now() - timedelta(minutes=1),
    )

    with django_capture_on_commit_callbacks(execute=True):
        expiry.expire_due()

    account.refresh_from_db()
    assert account.status == AccountStatus.DELETED
    assert account.phone is None
    assert account.last_error == ""
    # Looked up by its email (which users cannot change), never acted on by username.
    assert calls(fake_coder) == [("GET", "/users")]
    [lookup] = fake_coder.requests("GET", "/api/v2/users")
    assert lookup.query["q"] == [credentials.email_for("cs-ghost")]


def test_a_user_created_before_its_id_was_saved_is_found_by_email_and_deleted(
    open_session, coder_account, fake_coder, sync_tasks, django_capture_on_commit_callbacks
):
    account = expired(open_session, coder_account)
    user_id = account.coder_user_id
    Account.objects.filter(pk=account.pk).update(coder_user_id="", coder_email="")

    with django_capture_on_commit_callbacks(execute=True):
        expiry.expire_due()
    account.refresh_from_db()
    while account.status != AccountStatus.DELETED:
        step(account, django_capture_on_commit_callbacks)

    assert account.coder_user_id == user_id
    assert fake_coder.live_users(EMAIL_DOMAIN) == []
    assert ("DELETE", f"/users/{user_id}") in calls(fake_coder)


def test_5xx_burst_keeps_the_state_and_backs_off(
    open_session, coder_account, fake_coder, django_capture_on_commit_callbacks
):
    account = coder_account(open_session, status=AccountStatus.SUSPENDING)
    fake_coder.fail_next(3, 503, method="PUT")

    step(account, django_capture_on_commit_callbacks)

    assert len(fake_coder.requests("PUT")) == 3  # the client's own retries, then give up
    assert account.status == AccountStatus.SUSPENDING
    assert account.attempts == 1
    assert "503" in account.last_error
    assert account.next_attempt_at >= timezone.now() + timedelta(seconds=10)
    with django_capture_on_commit_callbacks(execute=True):
        deletion.advance(account.pk)  # not due yet: nothing happens
    assert len(fake_coder.requests_log) == 3

    step(account, django_capture_on_commit_callbacks)
    assert account.status == AccountStatus.DELETING_WORKSPACES
    assert (account.attempts, account.last_error) == (0, "")


def test_rate_limited_step_waits_at_least_retry_after(
    open_session, coder_account, fake_coder, django_capture_on_commit_callbacks
):
    account = coder_account(open_session, status=AccountStatus.SUSPENDING)
    fake_coder.fail_next(1, 429, retry_after=120)

    step(account, django_capture_on_commit_callbacks)

    assert account.status == AccountStatus.SUSPENDING
    assert account.next_attempt_at >= timezone.now() + timedelta(seconds=115)
    assert "429" in account.last_error


def test_unconfigured_coder_is_recorded_and_retried_later(
    open_session, settings, django_capture_on_commit_callbacks
):
    settings.CODER_URL = ""
    account = Account.objects.create(
        session=open_session, phone="+14155550199", status=AccountStatus.SUSPENDING,
        coder_username="cs-student", expires_at=open_session.expires_at,
    )

    step(account, django_capture_on_commit_callbacks)

    assert account.status == AccountStatus.SUSPENDING
    assert account.last_error == "Coder is not configured (CODER_URL, CODER_SESSION_TOKEN)."
    assert account.next_attempt_at > timezone.now()


def test_account_never_created_in_coder_is_deleted_at_once(open_session, fake_coder):
    account = Account.objects.create(
        session=open_session, phone="+14155550199", expires_at=open_session.expires_at
    )

    assert deletion.request_deletion(account, DeletionReason.DONE) is True
    provisioning.provision(account.pk)  # its task, arriving late, finds nothing to do

    account.refresh_from_db()
    assert (account.status, account.phone) == (AccountStatus.DELETED, None)
    assert fake_coder.requests_log == []


def test_step_held_by_another_worker_is_not_run_twice(open_session, coder_account, fake_coder):
    account = coder_account(open_session, status=AccountStatus.SUSPENDING)
    # Another worker claimed the step a moment ago: its lease is still running.
    lease_end = timezone.now() + timedelta(seconds=30)
    Account.objects.filter(pk=account.pk).update(next_attempt_at=lease_end)

    deletion.advance(account.pk)

    account.refresh_from_db()
    assert account.status == AccountStatus.SUSPENDING
    assert fake_coder.requests_log == []


def test_advance_ignores_accounts_outside_the_pipeline(open_session, coder_account, fake_coder):
    account = coder_account(open_session)

    deletion.advance(account.pk)

    account.refresh_from_db()
    assert account.status == AccountStatus.ACTIVE
    assert fake_coder.requests_log == []


def test_expiry_sends_at_most_a_batch_to_workers_and_the_sweep_the_rest(
    open_session, settings, broker, django_capture_on_commit_callbacks
):
    settings.CLEANUP_BATCH_SIZE = 2
    past = timezone.now() - timedelta(minutes=1)
    ids = [
        Account.objects.create(session=open_session, phone=f"+1415555010{i}",
                               coder_username=f"cs-s{i}", status=AccountStatus.ACTIVE,
                               expires_at=past).pk
        for i in range(5)
    ]

    with django_capture_on_commit_callbacks(execute=True):
        assert expiry.expire_due() == 5
    first = [task["args"] for task in queued_tasks(broker)]
    with django_capture_on_commit_callbacks(execute=True):
        assert deletion.redrive_due(timezone.now()) == 2
    second = [task["args"] for task in queued_tasks(broker)]

    assert first == [(ids[0],), (ids[1],)]
    assert second == [(ids[2],), (ids[3],)]
    assert Account.objects.filter(status=AccountStatus.SUSPENDING).count() == 5


def run_queued_tasks(broker, capture) -> None:
    """Be the workers: run every queued task, and those they enqueue, until the queue is empty."""
    while tasks := queued_tasks(broker):
        for task in tasks:
            with capture(execute=True):
                import_string(task["func"])(*task["args"])


def test_class_of_300_is_deleted_within_minutes_under_coders_rate_limit(
    open_session, coder_account, fake_coder, broker, django_capture_on_commit_callbacks
):
    """Each loop is one worker sweep (expire + deletion pass) and the tasks it queued.

    Coder limits 512 requests a minute per client and URL path (coderd/httpmw/ratelimit.go,
    httprate.KeyByEndpoint), and the fake enforces it: no request may be refused, and the
    shared listing route is asked a few times, not once per student.
    """
    for number in range(300):
        coder_account(open_session, f"cs-{number:03d}", phone=f"+1415550{number:04d}",
                      expires_at=timezone.now() - timedelta(seconds=1))
    fake_coder.build_polls = 0
    fake_coder.rate_limit_per_minute = 512
    sweeps = 0
    while Account.objects.exclude(status=AccountStatus.DELETED).exists():
        assert sweeps < 4, "still deleting after 4 sweeps"
        with django_capture_on_commit_callbacks(execute=True):
            maintenance.sweep()
        run_queued_tasks(broker, django_capture_on_commit_callbacks)
        sweeps += 1
        # The poll interval passes.
        Account.objects.filter(status__in=DELETION_STATUSES).update(
            next_attempt_at=F("next_attempt_at") - timedelta(minutes=1)
        )

    statuses = Counter(a.status for a in fake_coder.answers)
    paths = Counter((r.method, r.path) for r in fake_coder.requests_log)
    assert statuses[429] == 0, statuses
    assert paths["GET", "/api/v2/workspaces"] <= 2 * sweeps, paths
    assert fake_coder.live_users(EMAIL_DOMAIN) == []
    assert not Account.objects.filter(phone__isnull=False).exists()
    assert all(a.suspended_at for a in Account.objects.all())


def test_cleanup_dry_run_lists_what_would_be_deleted_and_why(open_session, broker):
    past = timezone.now() - timedelta(minutes=3)
    Account.objects.create(session=open_session, phone="+14155550101", coder_username="cs-old",
                           status=AccountStatus.ACTIVE, expires_at=past)
    Account.objects.create(session=open_session, phone="+14155550102", coder_username="cs-rev",
                           status=AccountStatus.DELETING_WORKSPACES, expires_at=past,
                           deletion_reason=DeletionReason.REVOKED, deletion_requested_at=past,
                           last_error="Deleting workspace ws1 failed 3 times.")
    Account.objects.create(session=open_session, phone="+14155550103", coder_username="cs-ok",
                           status=AccountStatus.ACTIVE, expires_at=open_session.expires_at)
    out = StringIO()

    call_command("cleanup", "--dry-run", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[0] == "2 accounts would be deleted:"
    assert "cs-old" in lines[1] and f"expired at {past:%Y-%m-%d %H:%M}" in lines[1]
    assert "cs-rev" in lines[2] and "revoked by an admin" in lines[2]
    assert "stuck: Deleting workspace ws1 failed 3 times." in lines[2]
    assert Account.objects.filter(deletion_requested_at__isnull=True).count() == 2
    assert broker.queue_size() == 0


def test_cleanup_starts_the_pipeline_and_reports_counts(
    open_session, broker, django_capture_on_commit_callbacks
):
    Account.objects.create(session=open_session, phone="+14155550101", coder_username="cs-old",
                           status=AccountStatus.ACTIVE,
                           expires_at=timezone.now() - timedelta(minutes=1))
    out = StringIO()

    with django_capture_on_commit_callbacks(execute=True):
        call_command("cleanup", stdout=out)

    assert out.getvalue().splitlines()[:3] == [
        "Expired now: 1 account.",
        "Deletion pass: 0 suspended, 0 workspace checks, 0 users deleted, 0 errors.",
        "In the pipeline: suspending 1, deleting_workspaces 0, deleting_user 0; with an error: 0.",
    ]
    assert [t["func"] for t in queued_tasks(broker)] == [deletion.ADVANCE_TASK]


def test_a_student_who_renamed_themselves_is_still_suspended_and_deleted_with_workspaces(
    open_session, coder_account, fake_coder, sync_tasks, django_capture_on_commit_callbacks
):
    account = expired(open_session, coder_account, workspaces=2)
    workspace_ids = [ws["id"] for ws in fake_coder.workspaces_of("cs-student")]
    rename_in_coder(fake_coder, account.coder_user_id, "my-new-name")

    with django_capture_on_commit_callbacks(execute=True):
        expiry.expire_due()
    account.refresh_from_db()
    assert fake_coder.users_by_username()["my-new-name"]["status"] == "suspended"
    for _ in range(10):
        if step(account, django_capture_on_commit_callbacks).status == AccountStatus.DELETED:
            break

    assert account.status == AccountStatus.DELETED and account.phone is None
    assert fake_coder.live_users(EMAIL_DOMAIN) == []
    assert len(workspace_ids) == 2
    assert [get_client().get_workspace(ws) for ws in workspace_ids] == [None, None]  # 410 Gone
    searches = [r for r in fake_coder.requests("GET") if r.path == "/api/v2/workspaces"]
    [search] = {tuple(r.query["q"]) for r in searches}
    assert search == ("owner:my-new-name",)


def test_one_worker_sweep_suspends_a_whole_class_at_expiry(
    open_session, coder_account, fake_coder, broker, django_capture_on_commit_callbacks
):
    """Access ends at the sweep after expiry (seconds), for every student, no task needed.

    Another class is mid-deletion at the same time: its workspace checks do not hold up the
    suspensions, which come first in every pass.
    """
    fake_coder.rate_limit_per_minute = 512
    for number in range(100):
        coder_account(open_session, f"cs-busy{number:03d}", phone=f"+1415551{number:04d}",
                      status=AccountStatus.DELETING_WORKSPACES, next_attempt_at=timezone.now(),
                      deletion_requested_at=timezone.now(), deletion_reason=DeletionReason.ENDED)
    expires = timezone.now() - timedelta(seconds=1)
    for number in range(300):
        coder_account(open_session, f"cs-{number:03d}", phone=f"+1415550{number:04d}",
                      expires_at=expires)

    with django_capture_on_commit_callbacks(execute=True):
        report = maintenance.sweep(batch=27)

    assert report["expired"] == 300 and report["suspended"] == 300
    class_of_300 = Account.objects.filter(coder_username__regex=r"^cs-\d{3}$")
    assert all(a.suspended_at for a in class_of_300)
    suspended = {u["username"] for u in fake_coder.live_users(EMAIL_DOMAIN)
                 if u["status"] == "suspended"}
    assert {f"cs-{n:03d}" for n in range(300)} <= suspended
    assert queued_tasks(broker) == []
    assert Counter(a.status for a in fake_coder.answers)[429] == 0
