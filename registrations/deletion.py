"""The deletion pipeline: what leaves nothing of a student behind in Coder.

An account whose deletion is requested (expiry, admin revoke, DONE, session ended, gone from
Coder) walks

    suspending -> deleting_workspaces -> deleting_user -> deleted (phone purged)

one step per `advance` task. A step claims the row by leasing it (a conditional update of
`next_attempt_at`), so duplicate tasks and concurrent workers are harmless. For a row in the
pipeline, `next_attempt_at` means:

- NULL: a task for the next step has been enqueued;
- a time in the past: the next step is due, but no task is on its way yet;
- a time in the future: a running step's lease, or a wait (delete builds running, back-off
  after a Coder error).

Steps that can go on at once re-enqueue themselves; everything else is sent to workers by the
sweep (`redrive_due`), a batch at a time, so no worker ever sleeps and Coder's rate limit
holds. The sweep is also the crash recovery: a step whose worker stopped beating is handed on
at once (`release_claims`, registrations/liveness.py), a lease outliving the task timeout
expires, and a NULL row whose task was lost (a killed cluster's prefetch) is sent again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from registrations import coder, events, jobs, sms, sql, texts
from registrations.models import (
    DELETION_STATUSES,
    Account,
    AccountStatus,
    DeletionReason,
    InboundMessage,
    OutboundKind,
    OutboundMessage,
    OutboundStatus,
    Session,
)

logger = logging.getLogger(__name__)

ADVANCE_TASK = "registrations.tasks.advance_deletion"
# Statuses from which a requested deletion enters the pipeline. A provisioning account is left
# to its task, which hands it over when it sees deletion_requested_at (or the sweep does).
ENTRY_STATUSES = (AccountStatus.REQUESTED, AccountStatus.ACTIVE, AccountStatus.FAILED)
# Students who asked for (or were given) a deletion are told when it is done.
NOTIFY_REASONS = (DeletionReason.DONE, DeletionReason.REVOKED, DeletionReason.GONE)
BACKOFF_BASE = timedelta(seconds=15)
BACKOFF_MAX = timedelta(minutes=15)
# A workspace whose deletion keeps failing needs an admin; look again now and then meanwhile.
STUCK_RECHECK = timedelta(hours=1)


def _poll_wait() -> timedelta:
    return timedelta(seconds=settings.CLEANUP_POLL_SECONDS)


def _due(now: datetime) -> Q:
    return Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)


def _enqueue(account_ids: Iterable[int]) -> None:
    for pk in account_ids:
        jobs.enqueue_on_commit(ADVANCE_TASK, pk)


def _dispatch(account_ids: list[int]) -> None:
    """Mark the accounts' next step as on its way (NULL) and enqueue it on commit."""
    Account.objects.filter(pk__in=account_ids).update(next_attempt_at=None)
    _enqueue(account_ids)


def request_deletion(account: Account, reason: str) -> bool:
    """Start deleting an account from Coder; False when its deletion was already requested.

    Idempotent: the first reason wins. An account still being provisioned is only marked: its
    task sees the mark, and the sweep then moves it into the pipeline (as a repeat call would).
    """
    now = timezone.now()
    with transaction.atomic():
        marked = (
            Account.objects.filter(pk=account.pk, deletion_requested_at__isnull=True)
            .exclude(status=AccountStatus.DELETED)
            .update(deletion_reason=reason, deletion_requested_at=now)
        )
        _dispatch(_enter_pipeline(Account.objects.filter(pk=account.pk), now))
    account.refresh_from_db()
    return bool(marked)


def _phone_deletion_sql() -> str:
    account, session = sql.table(Account), sql.table(Session)
    entering = "status IN (" + ", ".join(f"'{s}'" for s in ENTRY_STATUSES) + ")"
    leaving = (AccountStatus.DELETED, *DELETION_STATUSES)
    on_entry = {
        "status": f"'{AccountStatus.SUSPENDING}'",
        "status_changed_at": "%(now)s",
        "next_attempt_at": "NULL",  # dispatched: its task is enqueued on commit
        "claimed_by": "''",
        "attempts": "0",
        "last_error": "''",
    }
    entered = sql.set_when(entering, on_entry)
    return (
        f"UPDATE {account} SET deletion_reason = %(reason)s, deletion_requested_at = %(now)s, "
        f"{entered} WHERE phone = %(phone)s AND deletion_requested_at IS NULL "
        "AND status NOT IN (" + ", ".join(f"'{s}'" for s in leaving) + ") "
        # The session's language too, for the reply (one statement still: a subquery by
        # primary key, which SQLite and PostgreSQL both allow in RETURNING).
        f"RETURNING id, session_id, status, (SELECT s.language FROM {session} s "
        f"WHERE s.id = {account}.session_id)"
    )


_PHONE_DELETION = _phone_deletion_sql()


class PhoneDeletion(NamedTuple):
    """An account request_deletion_of_phone marked, with what the reply about it needs."""

    account_id: int
    session_id: int
    language: str  # its session's (Session.language)


def request_deletion_of_phone(phone: str, reason: str) -> list[PhoneDeletion]:
    """Start deleting every live account of a phone; return them newest first.

    What request_deletion does for each account, in one statement (the webhook's DONE): each
    account not yet asked is marked; those in an entry status enter the pipeline, dispatched.
    An account being provisioned is only marked (its task hands it over, as for
    request_deletion). One still requested without a Coder username enters too: its first
    step finds nothing in Coder and marks it deleted, and provisioning can no longer claim it.
    """
    now = sql.moment(timezone.now())
    changed = sql.rows(_PHONE_DELETION, {"reason": reason, "now": now, "phone": phone})
    entered = sorted(row[0] for row in changed if row[2] == AccountStatus.SUSPENDING)
    _enqueue(entered)
    if entered:
        logger.info("deletion pipeline: %d accounts entered", len(entered))
    marked = (PhoneDeletion(pk, session_id, language) for pk, session_id, _, language in changed)
    return sorted(marked, reverse=True)


def _enter_pipeline(accounts: QuerySet[Account], now: datetime) -> list[int]:
    """Move accounts whose deletion was requested into the pipeline, due now; return their ids.

    An account still `requested` without a Coder username has nothing in Coder: it is deleted
    at once, and the provisioning task's claim (requested -> provisioning) can no longer win.
    """
    rows = list(
        accounts.filter(deletion_requested_at__isnull=False, status__in=ENTRY_STATUSES)
        .select_for_update(skip_locked=True)
        .order_by("expires_at", "pk")
        .values_list("pk", "status", "coder_username")
    )
    unborn = {pk for pk, status, name in rows if status == AccountStatus.REQUESTED and not name}
    entered = [pk for pk, _, _ in rows if pk not in unborn]
    Account.objects.filter(pk__in=entered).update(
        status=AccountStatus.SUSPENDING,
        status_changed_at=now,
        next_attempt_at=now,
        claimed_by="",
        attempts=0,
        last_error="",
    )
    for account in Account.objects.filter(pk__in=unborn).select_related("session"):
        _mark_deleted(account, now)
    if entered:
        logger.info("deletion pipeline: %d accounts entered", len(entered))
    return entered


def start_requested(now: datetime | None = None, *, limit: int | None = None) -> int:
    """Move every account whose deletion was requested into the pipeline; return how many.

    At most `limit` (CLEANUP_BATCH_SIZE) are sent to workers now, so a whole class does not hit
    Coder's rate limit at once; the rest are due and the sweep sends them on the next ticks.
    """
    now = now or timezone.now()
    limit = settings.CLEANUP_BATCH_SIZE if limit is None else limit
    with transaction.atomic():
        entered = _enter_pipeline(Account.objects.all(), now)
        _dispatch(entered[:limit])
    return len(entered)


def release_claims(owner: str, now: datetime) -> int:
    """Make the steps a dead worker held due at once (its lease would run out only later)."""
    return Account.objects.filter(claimed_by=owner, status__in=DELETION_STATUSES).update(
        next_attempt_at=now, claimed_by=""
    )


def redrive_due(now: datetime, *, limit: int | None = None, queued_too: bool = False) -> int:
    """Send workers the pipeline accounts whose next step is due, oldest first; count them.

    Also sends again an account whose task was enqueued (NULL) but has not run for
    STALE_AFTER_SECONDS: a killed cluster loses what it had prefetched. `queued_too`: at once,
    because a worker was just seen dead (a duplicate task finds the step leased, and stops).
    """
    limit = settings.CLEANUP_BATCH_SIZE if limit is None else limit
    stale = now - timedelta(seconds=settings.STALE_AFTER_SECONDS)
    lost = Q(next_attempt_at__isnull=True)
    if not queued_too:
        lost &= Q(status_changed_at__lte=stale)
    due = Q(next_attempt_at__lte=now) | lost
    # Rows waiting on their workspaces are the deletion pass's (run_pass), bar lost tasks.
    one_by_one = Q(status__in=(AccountStatus.SUSPENDING, AccountStatus.DELETING_USER))
    rows = (
        Account.objects.filter(due, one_by_one | Q(next_attempt_at__isnull=True))
        .filter(status__in=DELETION_STATUSES)
        .order_by(F("next_attempt_at").asc(nulls_first=True), "pk")
        .values_list("pk", "next_attempt_at")[:limit]
    )
    # Only if no worker claimed it and no other sweep sent it since we read it.
    return jobs.lease_and_enqueue(Account.objects.all(), rows, ADVANCE_TASK, None)


def advance(account_id: int) -> None:
    """Run one step of an account's deletion pipeline, then schedule the next one."""
    now = timezone.now()
    owner = jobs.current_owner()
    claimed = (
        Account.objects.filter(_due(now), pk=account_id, status__in=DELETION_STATUSES)
        .update(next_attempt_at=now + jobs.task_lease(), claimed_by=owner)
    )
    if not claimed:
        return  # not in the pipeline, not due yet, or another worker holds it
    account = Account.objects.select_related("session").get(pk=account_id)
    account.claimed_by = owner
    if not account.coder_username:
        # Nothing was created in Coder (and an empty owner must never reach a workspace query).
        _record(account, Step(AccountStatus.DELETED))
        return
    try:
        client = coder.get_client()
        if not _resolve_user_id(account, client):
            _record(account, Step(AccountStatus.DELETED))  # the user never came to exist
            return
        step = _STEPS[account.status](account, client)
    except coder.CoderError as exc:
        _back_off(account, exc)
        return
    # Workspaces are checked by the deletion pass, one listing for every account waiting on
    # them: the listing route's rate limit is shared, so never one listing per account.
    _record(account, step, enqueue=step.status != AccountStatus.DELETING_WORKSPACES)


@dataclass
class PassReport:
    """What one deletion pass did, step by step (accounts handled)."""

    suspended: int = 0
    workspace_checks: int = 0
    users_deleted: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def run_pass(now: datetime | None = None) -> PassReport:
    """Take every due account of the pipeline one step, a whole class at a time.

    Suspensions first, so access ends within seconds of expiry however much deleting is left;
    then one paged listing of workspaces for every account waiting on its workspaces, and
    deletes of the users whose workspaces are gone. The calls that name one user or workspace
    have a rate limit each in Coder, so they run CLEANUP_CONCURRENCY at a time; the shared
    listing is a few requests per pass. Run by the worker sweep every few seconds, and as a
    task when a class ends; rows are claimed as a task's are, so passes and tasks never clash.
    """
    report = PassReport()
    now = now or timezone.now()
    if not _pipeline_due(now):
        return report
    try:
        client = coder.get_client()
    except coder.CoderNotConfigured:
        return report  # the per-account tasks record why; nothing to do in bulk
    with _pool() as pool:
        _suspend_all(_claim_due(AccountStatus.SUSPENDING, now), client, pool, report)
        # Steps just recorded are due at their own time, which may be after the pass began.
        now = max(now, timezone.now())
        _check_workspaces(_claim_due(AccountStatus.DELETING_WORKSPACES, now), client, pool, report)
        now = max(now, timezone.now())
        _delete_users(_claim_due(AccountStatus.DELETING_USER, now), client, pool, report)
    if report.suspended or report.users_deleted or report.errors:
        logger.info("deletion pass: %s", report.as_dict())
    return report


def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(settings.CLEANUP_CONCURRENCY, thread_name_prefix="cleanup")


def _pipeline_due(now: datetime) -> bool:
    # A step whose task was lost (NULL for too long) is redrive_due's, not the pass's.
    return Account.objects.filter(next_attempt_at__lte=now, status__in=DELETION_STATUSES).exists()


def _claim_due(status: str, now: datetime) -> list[Account]:
    """Lease every due account in `status` to this pass (up to CLEANUP_PASS_SIZE)."""
    owner = jobs.current_owner()
    with transaction.atomic():
        # skip_locked: a concurrent pass (or task) keeps what it is claiming; SQLite's
        # IMMEDIATE transactions serialise the whole read-and-lease instead.
        ids = list(
            Account.objects.filter(next_attempt_at__lte=now, status=status)
            .select_for_update(skip_locked=True)
            .order_by("expires_at", "pk")
            .values_list("pk", flat=True)[: settings.CLEANUP_PASS_SIZE]
        )
        Account.objects.filter(pk__in=ids).update(
            next_attempt_at=now + jobs.task_lease(), claimed_by=owner
        )
    accounts = list(Account.objects.filter(pk__in=ids).select_related("session"))
    for account in accounts:
        account.claimed_by = owner
    return accounts


def _with_user(
    accounts: list[Account], client: coder.CoderClient, report: PassReport
) -> list[Account]:
    """The accounts that have a Coder user to act on; the others are finished or backed off."""
    ready = []
    for account in accounts:
        try:
            if account.coder_username and _resolve_user_id(account, client):
                ready.append(account)
            else:
                _record(account, Step(AccountStatus.DELETED), enqueue=False)
        except coder.CoderError as exc:
            report.errors += 1
            _back_off(account, exc)
    return ready


def _suspend_all(
    accounts: list[Account],
    client: coder.CoderClient,
    pool: ThreadPoolExecutor,
    report: PassReport,
) -> None:
    accounts = _with_user(accounts, client, report)
    report.suspended += len(_run_steps(accounts, pool, lambda a: _suspend(a, client), report))


def _check_workspaces(
    accounts: list[Account],
    client: coder.CoderClient,
    pool: ThreadPoolExecutor,
    report: PassReport,
) -> None:
    accounts = _with_user(accounts, client, report)
    if not accounts:
        return
    try:
        owned: dict[str, list[coder.Workspace]] = {a.coder_user_id: [] for a in accounts}
        for workspace in client.iter_workspaces():
            if workspace.owner_id in owned:
                owned[workspace.owner_id].append(workspace)
    except coder.CoderError as exc:
        report.errors += len(accounts)
        for account in accounts:
            _back_off(account, exc)
        return

    def check(account: Account) -> Step:
        return _delete_workspaces(account, client, owned[account.coder_user_id])

    report.workspace_checks += len(_run_steps(accounts, pool, check, report))


def _delete_users(
    accounts: list[Account],
    client: coder.CoderClient,
    pool: ThreadPoolExecutor,
    report: PassReport,
) -> None:
    accounts = _with_user(accounts, client, report)
    steps = _run_steps(accounts, pool, lambda a: _delete_user(a, client), report)
    report.users_deleted += sum(step.status == AccountStatus.DELETED for step in steps)


def _run_steps(
    accounts: list[Account],
    pool: ThreadPoolExecutor,
    step: Callable[[Account], Step],
    report: PassReport,
) -> list[Step]:
    """Run one step for each account on the pool; record each outcome here; return the steps.

    The pool's threads only speak HTTP: every row is written from this thread.
    """

    def attempt(account: Account) -> Step | coder.CoderError:
        try:
            return step(account)
        except coder.CoderError as exc:
            return exc

    done = []
    for account, outcome in zip(accounts, pool.map(attempt, accounts), strict=True):
        if isinstance(outcome, coder.CoderError):
            report.errors += 1
            _back_off(account, outcome)
        else:
            _record(account, outcome, enqueue=False)
            done.append(outcome)
    return done


def _resolve_user_id(account: Account, client: coder.CoderClient) -> bool:
    """Make sure the row knows its Coder user's id; False when Coder has no such user.

    Every step acts on the id, never on the username: students can rename themselves in
    Coder. A row may lack the id when a worker died between creating the user and saving it;
    the email, which users cannot change, finds it then.
    """
    if account.coder_user_id:
        return True
    user = client.find_user_by_email(account.login_email)
    if user is None:
        return False
    account.coder_user_id = user.id
    Account.objects.filter(pk=account.pk).update(coder_user_id=user.id)
    return True


@dataclass(frozen=True)
class Step:
    """Where an account goes after a step, and when the next step is due (None: at once)."""

    status: str
    wait: timedelta | None = None
    error: str = ""
    fields: dict[str, object] = field(default_factory=dict)


def _suspend(account: Account, client: coder.CoderClient) -> Step:
    """Suspend the Coder user, so access ends now even if deleting takes a while."""
    try:
        client.suspend_user(account.coder_user_id)
    except coder.UserGone:
        return Step(AccountStatus.DELETED)  # already gone from Coder
    return Step(AccountStatus.DELETING_WORKSPACES, fields={"suspended_at": timezone.now()})


def _delete_workspaces(
    account: Account,
    client: coder.CoderClient,
    listed: list[coder.Workspace] | None = None,
) -> Step:
    """Send delete builds for the user's workspaces; go on once Coder lists none.

    `listed`: the user's workspaces from a pass's shared listing (else listed for this user).
    """
    max_failures = settings.WORKSPACE_DELETE_MAX_FAILURES
    retry_failed = account.workspace_delete_failures < max_failures
    found = request_workspace_deletes(
        client, account.coder_user_id, retry_failed=retry_failed, listed=listed
    )
    failures = account.workspace_delete_failures + found.retried
    fields: dict[str, object] = {"workspace_delete_failures": failures}
    if not found.remaining:
        return Step(AccountStatus.DELETING_USER, fields=fields)
    if found.stuck and len(found.stuck) == found.remaining:
        return Step(
            AccountStatus.DELETING_WORKSPACES, STUCK_RECHECK, _stuck_error(found, failures), fields
        )
    return Step(AccountStatus.DELETING_WORKSPACES, _poll_wait(), fields=fields)


def _stuck_error(found: WorkspaceDeletes, failures: int) -> str:
    names = ", ".join(ws.name for ws in found.stuck)
    reason = next((ws.latest_build.job_error for ws in found.stuck if ws.latest_build), None)
    return (
        f"Deleting workspace {names} failed {failures} times"
        + (f" ({reason[:200]})" if reason else "")
        + ". Fix it in Coder, or use “Orphan workspaces” to drop Coder's record of it."
    )


def _delete_user(account: Account, client: coder.CoderClient) -> Step:
    """Delete the Coder user; Coder refuses while a workspace is not deleted yet."""
    try:
        client.delete_user(account.coder_user_id)  # False: it was already gone
    except coder.WorkspacesRemain:
        return Step(AccountStatus.DELETING_WORKSPACES, _poll_wait())
    return Step(AccountStatus.DELETED)


_STEPS: dict[str, Callable[[Account, coder.CoderClient], Step]] = {
    AccountStatus.SUSPENDING: _suspend,
    AccountStatus.DELETING_WORKSPACES: _delete_workspaces,
    AccountStatus.DELETING_USER: _delete_user,
}


@dataclass
class WorkspaceDeletes:
    """What one look at a user's workspaces found and did."""

    remaining: int = 0  # workspaces not gone yet
    retried: int = 0  # failed delete builds sent again
    stuck: list[coder.Workspace] = field(default_factory=list)  # failed, not sent again


def request_workspace_deletes(
    client: coder.CoderClient,
    user_id: str,
    *,
    retry_failed: bool,
    orphan: bool = False,
    listed: list[coder.Workspace] | None = None,
) -> WorkspaceDeletes:
    """Send a delete build for each of the user's workspaces that is not being deleted yet."""
    found = WorkspaceDeletes()
    if listed is None:
        listed = client.list_user_workspaces(user_id)
    # Only the workspaces this id owns: never anyone else's, whatever the search returned.
    for workspace in (ws for ws in listed if ws.owner_id == user_id):
        build = workspace.latest_build
        if build is not None and build.is_deleted:
            continue
        if build is not None and build.is_active:
            found.remaining += 1  # a build is running: Coder would answer 409, look again later
            continue
        failed_delete = build is not None and build.transition == "delete" and build.is_failed
        if failed_delete and not retry_failed:
            found.stuck.append(workspace)
            found.remaining += 1
            continue
        found.retried += int(failed_delete)
        found.remaining += int(_send_delete(client, workspace, orphan))
    return found


def _send_delete(client: coder.CoderClient, workspace: coder.Workspace, orphan: bool) -> bool:
    """Create a delete build; return whether the workspace is still there afterwards."""
    try:
        build = client.delete_workspace(workspace.id, orphan=orphan)
    except coder.WorkspaceGone:
        return False
    except coder.BuildActive:
        return True  # a build started meanwhile: look again later
    return not build.is_deleted


def _record(account: Account, step: Step, *, enqueue: bool = True) -> None:
    """Save a step's outcome and enqueue the next step when it is due at once.

    `enqueue=False` (a deletion pass): leave the next step due now instead, for the pass.
    """
    now = timezone.now()
    if step.status == AccountStatus.DELETED:
        _mark_deleted(account, now)
        return
    due_now = None if enqueue else now
    changes: dict[str, object] = {
        **step.fields,
        "next_attempt_at": now + step.wait if step.wait else due_now,
        "last_error": step.error,
        "attempts": 0,
        "claimed_by": "",
    }
    if step.status != account.status:
        changes.update(status=step.status, status_changed_at=now)
        logger.info("account %s: %s -> %s", account.pk, account.status, step.status)
    # Only while this step still holds the row: one handed on (its worker was seen dead) is
    # another task's now, and that one records the outcome of the same, idempotent step.
    ours = Account.objects.filter(
        pk=account.pk, status=account.status, claimed_by=account.claimed_by
    )
    with transaction.atomic():
        saved = ours.update(**changes)
        if saved and step.wait is None and enqueue:
            _enqueue([account.pk])


def _back_off(account: Account, exc: Exception) -> None:
    """Keep the state, record why, and make the step due again after a growing delay."""
    attempts = account.attempts + 1
    delay = jobs.backoff(
        attempts, BACKOFF_BASE, BACKOFF_MAX, at_least=getattr(exc, "retry_after", None)
    )
    if isinstance(exc, coder.CoderNotConfigured):
        error = "Coder is not configured (CODER_URL, CODER_SESSION_TOKEN)."
    else:
        error = str(exc)
    Account.objects.filter(
        pk=account.pk, status=account.status, claimed_by=account.claimed_by
    ).update(
        attempts=attempts,
        next_attempt_at=timezone.now() + delay,
        claimed_by="",
        last_error=error[:500],
    )
    logger.warning(
        "account %s: %s failed (%s); retrying in %ds",
        account.pk, account.status, error, delay.total_seconds(),
    )


def _mark_deleted(account: Account, now: datetime) -> None:
    """Mark the account deleted and purge its phone number (NULL, never '')."""
    with transaction.atomic():
        updated = (
            Account.objects.filter(pk=account.pk)
            .exclude(status=AccountStatus.DELETED)
            .update(
                status=AccountStatus.DELETED,
                status_changed_at=now,
                deleted_at=now,
                purged_at=now,
                phone=None,
                next_attempt_at=None,
                claimed_by="",
                attempts=0,
                last_error="",
            )
        )
        if updated:
            # Nor may the message log keep the number: purge it from this account's messages,
            # except those still waiting to be sent (they need it).
            InboundMessage.objects.filter(account=account).update(phone=None)
            OutboundMessage.objects.filter(account=account).exclude(
                status__in=(OutboundStatus.PENDING, OutboundStatus.SENDING, OutboundStatus.RETRY)
            ).update(phone=None)
        if updated and account.deletion_reason in NOTIFY_REASONS and account.coder_username:
            sms.queue_sms(
                phone=account.phone,
                kind=OutboundKind.DELETED,
                body=texts.deleted_text(account),
                account=account,
            )
        elif updated and _never_told(account):
            # Every student who texted a valid phrase hears back: this one's session ended
            # before their credentials could be sent (a Coder outage, a backlog at the close).
            sms.queue_sms(
                phone=account.phone,
                kind=OutboundKind.FAILURE,
                body=texts.ended_before_ready_text(account),
                account=account,
            )
    if updated:
        logger.info("account %s: deleted (%s), phone purged", account.pk, account.deletion_reason)
        events.announce(
            events.AccountEventKind.DELETED, account.pk, account.session_id, account.deletion_reason
        )


def _never_told(account: Account) -> bool:
    """True when the student got neither credentials nor the failure SMS."""
    return (
        bool(account.phone)
        and account.credentials_sent_at is None
        and account.status != AccountStatus.FAILED
        and account.deletion_reason in (DeletionReason.EXPIRED, DeletionReason.ENDED)
    )


def orphan_workspaces(account: Account) -> bool:
    """Drop Coder's record of workspaces whose deletion keeps failing (an admin's last resort).

    Sends `orphan: true` delete builds, which leave the infrastructure behind, then lets the
    pipeline go on. False when the account is not deleting workspaces or Coder failed.
    """
    if account.status != AccountStatus.DELETING_WORKSPACES or not account.coder_user_id:
        return False
    try:
        found = request_workspace_deletes(
            coder.get_client(), account.coder_user_id, retry_failed=True, orphan=True
        )
    except coder.CoderError as exc:
        Account.objects.filter(pk=account.pk).update(last_error=f"Orphaning failed: {exc}"[:500])
        account.refresh_from_db()
        return False
    logger.info("account %s: orphaned its workspaces (%d left)", account.pk, found.remaining)
    with transaction.atomic():
        Account.objects.filter(pk=account.pk, status=account.status).update(
            next_attempt_at=timezone.now() + _poll_wait(), last_error="", attempts=0
        )
    account.refresh_from_db()
    return True
