"""Expiry, revocation and cleanup: the deletion pipeline that leaves nothing behind in Coder.

An account whose deletion is requested (expiry, admin revoke, DONE, session ended) walks

    suspending -> deleting_workspaces -> deleting_user -> deleted (phone purged)

one step per `advance` task. A step claims the row by leasing it (a conditional update of
`next_attempt_at`), so duplicate tasks and concurrent workers are harmless. For a row in the
pipeline, `next_attempt_at` means:

- NULL: a task for the next step has been enqueued;
- a time in the past: the next step is due, but no task is on its way yet;
- a time in the future: a running step's lease, or a wait (delete builds running, back-off
  after a Coder error).

Steps that can go on at once re-enqueue themselves; everything else is sent to workers by the
every-minute sweep, at most CLEANUP_BATCH_SIZE a run, so no worker ever sleeps and Coder's rate
limit holds. The sweep is also the crash recovery: a lease outliving the task timeout expires,
and a NULL row whose task was lost (a killed cluster's prefetch) is sent again once stale.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Count, F, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone
from django_q.tasks import async_task

from registrations import coder, provisioning, sms, texts
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
    UsageStat,
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

Progress = Callable[[int, int], None]


def _lease() -> timedelta:
    # django-q2 kills a task after `timeout` s: a lease that outlives it means the worker died.
    return timedelta(seconds=settings.Q_CLUSTER.get("timeout", 60) + 30)


def _poll_wait() -> timedelta:
    return timedelta(seconds=settings.CLEANUP_POLL_SECONDS)


def _due(now: datetime) -> Q:
    return Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)


def _enqueue(account_ids: Iterable[int]) -> None:
    for pk in account_ids:
        transaction.on_commit(functools.partial(async_task, ADVANCE_TASK, pk), robust=True)


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


def expired_accounts(now: datetime) -> QuerySet[Account]:
    """Return the accounts past their expiry whose deletion has not been requested yet."""
    return Account.objects.filter(expires_at__lte=now, deletion_requested_at__isnull=True).exclude(
        status=AccountStatus.DELETED
    )


def expire_due(now: datetime | None = None) -> int:
    """Request deletion of every account past its expiry and start the pipeline; count them."""
    now = now or timezone.now()
    expired = expired_accounts(now).update(
        deletion_reason=DeletionReason.EXPIRED, deletion_requested_at=now
    )
    start_requested(now)
    if expired:
        logger.info("expire: %d accounts expired", expired)
    return expired


def advance(account_id: int) -> None:
    """Run one step of an account's deletion pipeline, then schedule the next one."""
    now = timezone.now()
    claimed = (
        Account.objects.filter(_due(now), pk=account_id, status__in=DELETION_STATUSES)
        .update(next_attempt_at=now + _lease())
    )
    if not claimed:
        return  # not in the pipeline, not due yet, or another worker holds it
    account = Account.objects.select_related("session").get(pk=account_id)
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
    except (coder.CoderError, coder.CoderNotConfigured) as exc:
        _back_off(account, exc)
        return
    _record(account, step)


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
    except coder.CoderError as exc:
        if exc.is_unknown_user:
            return Step(AccountStatus.DELETED)  # already gone from Coder
        raise
    return Step(AccountStatus.DELETING_WORKSPACES, fields={"suspended_at": timezone.now()})


def _delete_workspaces(account: Account, client: coder.CoderClient) -> Step:
    """Send delete builds for the user's workspaces; go on once Coder lists none."""
    max_failures = settings.WORKSPACE_DELETE_MAX_FAILURES
    retry_failed = account.workspace_delete_failures < max_failures
    found = _request_workspace_deletes(client, account.coder_user_id, retry_failed=retry_failed)
    failures = account.workspace_delete_failures + found.retried
    fields = {"workspace_delete_failures": failures}
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
    """Delete the Coder user; Coder answers 417 while a workspace is not deleted yet."""
    try:
        client.delete_user(account.coder_user_id)  # False: it was already gone
    except coder.CoderError as exc:
        if exc.status == 417:
            return Step(AccountStatus.DELETING_WORKSPACES, _poll_wait())
        raise
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


def _request_workspace_deletes(
    client: coder.CoderClient, user_id: str, *, retry_failed: bool, orphan: bool = False
) -> WorkspaceDeletes:
    """Send a delete build for each of the user's workspaces that is not being deleted yet."""
    found = WorkspaceDeletes()
    # Only the workspaces this id owns: never anyone else's, whatever the search returned.
    for workspace in client.list_user_workspaces(user_id):
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
    except coder.CoderError as exc:
        if exc.status in (404, 410):
            return False  # already gone
        if exc.status == 409:
            return True  # a build started meanwhile: look again later
        raise
    return not build.is_deleted


def _record(account: Account, step: Step) -> None:
    """Save a step's outcome and enqueue the next step when it is due at once."""
    now = timezone.now()
    if step.status == AccountStatus.DELETED:
        _mark_deleted(account, now)
        return
    changes: dict[str, object] = {
        **step.fields,
        "next_attempt_at": now + step.wait if step.wait else None,
        "last_error": step.error,
        "attempts": 0,
    }
    if step.status != account.status:
        changes.update(status=step.status, status_changed_at=now)
        logger.info("account %s: %s -> %s", account.pk, account.status, step.status)
    with transaction.atomic():
        saved = Account.objects.filter(pk=account.pk, status=account.status).update(**changes)
        if saved and step.wait is None:
            _enqueue([account.pk])


def _back_off(account: Account, exc: Exception) -> None:
    """Keep the state, record why, and make the step due again after a growing delay."""
    attempts = account.attempts + 1
    delay = min(BACKOFF_BASE * 2 ** (attempts - 1), BACKOFF_MAX)
    retry_after = getattr(exc, "retry_after", None)
    if retry_after:
        delay = max(delay, timedelta(seconds=retry_after))
    # Jitter, so a class that hit the rate limit together does not come back together.
    delay *= random.uniform(1.0, 1.25)
    if isinstance(exc, coder.CoderNotConfigured):
        error = "Coder is not configured (CODER_URL, CODER_SESSION_TOKEN)."
    else:
        error = str(exc)
    Account.objects.filter(pk=account.pk, status=account.status).update(
        attempts=attempts, next_attempt_at=timezone.now() + delay, last_error=error[:500]
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
        found = _request_workspace_deletes(
            coder.get_client(), account.coder_user_id, retry_failed=True, orphan=True
        )
    except (coder.CoderError, coder.CoderNotConfigured) as exc:
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


def warn_due(now: datetime | None = None) -> int:
    """Text each active account once, its session's warn_minutes before expiry; count them."""
    now = now or timezone.now()
    candidates = Account.objects.filter(
        status=AccountStatus.ACTIVE,
        warned_at__isnull=True,
        deletion_requested_at__isnull=True,
        expires_at__gt=now,
        session__warn_minutes__gt=0,
    )
    windows = candidates.order_by().values_list("session__warn_minutes", flat=True).distinct()
    sent = 0
    for minutes in list(windows):
        due = candidates.filter(
            session__warn_minutes=minutes, expires_at__lte=now + timedelta(minutes=minutes)
        )
        for account in due.select_related("session"):
            sent += _warn(account, now)
    return sent


def _warn(account: Account, now: datetime) -> bool:
    with transaction.atomic():
        claimed = Account.objects.filter(pk=account.pk, warned_at__isnull=True).update(
            warned_at=now
        )
        if claimed:
            sms.queue_sms(
                phone=account.phone,
                kind=OutboundKind.WARNING,
                body=texts.warning_text(account, now),
                account=account,
            )
    return bool(claimed)


def sweep(now: datetime | None = None) -> dict[str, int]:
    """Re-drive work a dead worker or a lost task left behind; count what was re-driven."""
    now = now or timezone.now()
    return {
        "provisioning": provisioning.redrive_stale(now),
        "sms": sms.redrive_stale(now),
        "deletion_started": start_requested(now),
        "deletion_redriven": redrive_due(now),
    }


def redrive_due(now: datetime, *, limit: int | None = None) -> int:
    """Send workers the pipeline accounts whose next step is due, oldest first; count them.

    Also sends again an account whose task was enqueued (NULL) but has not run for
    STALE_AFTER_SECONDS: a killed cluster loses what it had prefetched.
    """
    limit = settings.CLEANUP_BATCH_SIZE if limit is None else limit
    stale = now - timedelta(seconds=settings.STALE_AFTER_SECONDS)
    lost = Q(next_attempt_at__isnull=True, status_changed_at__lte=stale)
    due = Q(next_attempt_at__lte=now) | lost
    rows = (
        Account.objects.filter(due, status__in=DELETION_STATUSES)
        .order_by(F("next_attempt_at").asc(nulls_first=True), "pk")
        .values_list("pk", "next_attempt_at")[:limit]
    )
    sent = []
    for pk, when in rows:
        # Only if no worker claimed it and no other sweep sent it since we read it.
        if Account.objects.filter(pk=pk, next_attempt_at=when).update(next_attempt_at=None):
            sent.append(pk)
    _enqueue(sent)
    return len(sent)


def end_session(session: Session) -> int:
    """End a session now: every account expires now and enters the deletion pipeline.

    Returns the number of accounts whose deletion this requested.
    """
    now = timezone.now()
    with transaction.atomic():
        session.ended_at = session.ended_at or now
        # Keep the constraints valid: opens_at < closes_at <= expires_at.
        session.expires_at = min(session.expires_at, now)
        session.closes_at = min(session.closes_at, session.expires_at)
        session.opens_at = min(session.opens_at, session.closes_at - timedelta(seconds=1))
        session.save(
            update_fields=["ended_at", "expires_at", "closes_at", "opens_at", "updated_at"]
        )
        live = Account.objects.filter(session=session).exclude(status=AccountStatus.DELETED)
        live.filter(expires_at__gt=now).update(expires_at=now)
        requested = live.filter(deletion_requested_at__isnull=True).update(
            deletion_reason=DeletionReason.ENDED, deletion_requested_at=now
        )
        start_requested(now)
    logger.info("session %s ended: deleting %d accounts", session.pk, requested)
    return requested


def extend_session(session: Session, minutes: int) -> None:
    """Move the session's expiry and every live account's expiry later by `minutes`.

    Accounts already warned get a new warning before their new expiry.
    """
    if minutes <= 0:
        raise ValidationError("Extend by a positive number of minutes.")
    if session.ended_at:
        raise ValidationError("This session has ended; its accounts are being deleted.")
    delta = timedelta(minutes=minutes)
    with transaction.atomic():
        session.expires_at += delta
        session.save(update_fields=["expires_at", "updated_at"])
        Account.objects.filter(session=session, deletion_requested_at__isnull=True).exclude(
            status=AccountStatus.DELETED
        ).update(expires_at=F("expires_at") + delta, warned_at=None)
    logger.info("session %s extended by %d minutes", session.pk, minutes)


def move_expiry(session: Session) -> int:
    """Give the live accounts a session's edited expiry; end the session if that is past.

    Accounts copy the expiry when they are created, so an edit of the session's time must reach
    them too (as extend does). Moved accounts are warned again before their new time. Returns the
    number of accounts moved, or, for an expiry already past, sent to deletion.
    """
    if session.expires_at <= timezone.now():
        return end_session(session)
    moved = (
        Account.objects.filter(session=session, deletion_requested_at__isnull=True)
        .exclude(status=AccountStatus.DELETED)
        .exclude(expires_at=session.expires_at)
        .update(expires_at=session.expires_at, warned_at=None)
    )
    logger.info("session %s: expiry changed, %d accounts moved", session.pk, moved)
    return moved


def reconcile(progress: Progress | None = None, *, dry_run: bool = False) -> dict[str, int]:
    """Delete Coder users carrying our email marker that no live account owns.

    Users without the marker are never touched. An orphan with workspaces gets delete builds
    now and is deleted by a later run once Coder reports them gone ("pending").
    """
    client = coder.get_client()
    ours, orphans = find_orphans(client)
    report = {"found": len(ours), "orphans": len(orphans), "deleted": 0, "pending": 0, "errors": 0}
    for done, user in enumerate(orphans, start=1):
        if _is_owned(user):
            report["orphans"] -= 1  # an account took this name since the listing
        elif not dry_run:
            report[_delete_orphan(client, user)] += 1
        if progress:
            progress(done, len(orphans))
    logger.info("reconcile: %s", report)
    return report


def find_orphans(client: coder.CoderClient) -> tuple[list[coder.User], list[coder.User]]:
    """Return the Coder users carrying our email marker, and those no live account owns."""
    suffix = "@" + settings.CODER_EMAIL_DOMAIN.lower()
    ours = [
        user for user in client.iter_users(settings.CODER_EMAIL_DOMAIN)
        if user.email.lower().endswith(suffix)
    ]
    # Read the owners after listing Coder: provisioning saves a username before creating it.
    ids, emails = _owned_identities()
    return ours, [u for u in ours if u.id not in ids and u.email.lower() not in emails]


def _owned_identities() -> tuple[set[str], set[str]]:
    """The Coder user ids and login emails of live accounts.

    Never usernames: a student may rename themselves, and must not be taken for an orphan.
    A row saves its username before the user exists and its id only after, so the email
    (derived from the username until Coder answers) covers that window.
    """
    live = Account.objects.exclude(status=AccountStatus.DELETED).exclude(coder_username="")
    ids: set[str] = set()
    emails: set[str] = set()
    for account in live.only("coder_username", "coder_user_id", "coder_email"):
        if account.coder_user_id:
            ids.add(account.coder_user_id)
        emails.add(account.login_email.lower())
    return ids, emails


def _is_owned(user: coder.User) -> bool:
    """Re-check one orphan just before deleting it (an account may have claimed it since)."""
    mine = Q(coder_user_id=user.id) | Q(coder_email__iexact=user.email)
    local, _, domain = user.email.lower().partition("@")
    if domain == settings.CODER_EMAIL_DOMAIN.lower():
        # A row between saving its username and hearing back from Coder has no email yet.
        mine |= Q(coder_email="", coder_username__iexact=local)
    return Account.objects.exclude(status=AccountStatus.DELETED).filter(mine).exists()


def _delete_orphan(client: coder.CoderClient, user: coder.User) -> str:
    """Take an orphan through the pipeline's steps; return "deleted", "pending" or "errors"."""
    try:
        if not user.is_suspended:
            client.suspend_user(user.id)
        if _request_workspace_deletes(client, user.id, retry_failed=True).remaining:
            return "pending"
        client.delete_user(user.id)
    except coder.CoderError as exc:
        if exc.is_unknown_user:
            return "deleted"
        if exc.status == 417:
            return "pending"
        logger.warning("reconcile: could not delete orphan %s: %s", user.username, exc)
        return "errors"
    logger.info("reconcile: deleted orphan Coder user %s", user.username)
    return "deleted"


def apply_retention(now: datetime | None = None) -> dict[str, int]:
    """Delete message logs and purged accounts older than RETENTION_DAYS; keep daily counts.

    Before rows go, they are added to UsageStat (per day, session and metric), which holds no
    phone number or text: `inbound_<outcome>`, `outbound_<kind>` and `accounts`.
    """
    cutoff = (now or timezone.now()) - timedelta(days=settings.RETENTION_DAYS)
    inbound = InboundMessage.objects.filter(received_at__lt=cutoff)
    outbound = OutboundMessage.objects.filter(created_at__lt=cutoff)
    accounts = Account.objects.filter(status=AccountStatus.DELETED, purged_at__lt=cutoff)
    with transaction.atomic():
        _count_into_stats(inbound, "received_at", "outcome", "inbound_")
        _count_into_stats(outbound, "created_at", "kind", "outbound_")
        _count_into_stats(accounts, "created_at", None, "accounts")
        report = {
            "inbound": inbound.delete()[0],
            "outbound": outbound.delete()[0],
            "accounts": accounts.delete()[0],
        }
    logger.info("retention: deleted %s", report)
    return report


def _count_into_stats(rows: QuerySet, when: str, kind: str | None, metric: str) -> None:
    group = ["day", "session_id"] + ([kind] if kind else [])
    counts = (
        rows.order_by().annotate(day=TruncDate(when)).values(*group).annotate(n=Count("pk"))
    )
    for row in counts:
        name = metric + (row[kind] if kind else "")
        stat, _ = UsageStat.objects.get_or_create(
            day=row["day"], session_id=row["session_id"], metric=name
        )
        UsageStat.objects.filter(pk=stat.pk).update(count=F("count") + row["n"])
