"""Maintenance: the every-minute sweep, hourly reconcile of orphans in Coder, daily retention."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from registrations import (
    coder,
    credentials,
    deletion,
    expiry,
    jobs,
    liveness,
    provisioning,
    rate_budget,
    sms,
)
from registrations.models import (
    Account,
    AccountStatus,
    InboundMessage,
    OutboundMessage,
    SeenMessage,
    UsageStat,
    seen_message_key,
)

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def sweep(
    now: datetime | None = None, *, batch: int | None = None, prune_results: bool = True
) -> dict[str, int]:
    """Re-drive work a dead worker or a lost task left behind; count what was re-driven.

    Run every minute by the scheduler, and every few seconds by one worker (registrations/
    beat.py). `batch`: deletions sent to workers by this run (default CLEANUP_BATCH_SIZE).
    `prune_results`: also keep django-q2's saved successes to Q_SAVE_LIMIT (the scheduled run;
    the beat's frequent ones leave it).
    """
    now = now or timezone.now()
    recovery = liveness.recover(now)
    # A dead worker's cluster lost the tasks it had prefetched too (Redis has no receipts):
    # whoever buried it sends the queued rows again, without waiting for them to go stale.
    lost = recovery.buried > 0
    report = {
        "claims_released": recovery.released,
        "provisioning": provisioning.redrive_stale(now, queued_too=lost),
        "sms": sms.redrive_stale(now, queued_too=lost),
        # Expiry here, every few seconds, not only on the scheduler's minute: a student keeps
        # working until their Coder user is suspended.
        "expired": expiry.expire_due(now, dispatch=False),
        # Into the pipeline, due now; the pass below takes them, so no task is sent.
        "deletion_started": deletion.start_requested(now, limit=0),
    }
    # Every due step at once: a whole class's suspensions, workspace checks and user deletes.
    report.update(deletion.run_pass(now).as_dict())
    # What is left: steps whose task was lost, and steps that came due during the pass.
    report["deletion_redriven"] = deletion.redrive_due(now, limit=batch, queued_too=lost)
    rate_budget.forget_before(int(now.timestamp()) // rate_budget.WINDOW_SECONDS - 2)
    if prune_results:
        jobs.prune_task_results(settings.Q_SAVE_LIMIT)
    return report


class ReconcileRefused(Exception):
    """The run would delete an unusual number of users; nothing was deleted."""

    def __init__(self, found: int, usernames: list[str]) -> None:
        self.found = found
        self.usernames = usernames
        super().__init__(
            f"Refusing to delete {len(usernames)} of the {found} Coder users of deployment "
            f"{credentials.deployment_id()} (more than {settings.RECONCILE_MAX_DELETES} and "
            f"more than {settings.RECONCILE_MAX_DELETE_PERCENT}% of them): check DEPLOYMENT_ID, "
            "CODER_EMAIL_DOMAIN and DATABASE_URL, then run `manage.py reconcile --force` if "
            f"they really are orphans. Would have deleted: {', '.join(usernames)}"
        )


def reconcile(
    progress: Progress | None = None, *, dry_run: bool = False, force: bool = False
) -> dict[str, int]:
    """Delete Coder users of this deployment that no live account owns.

    Other users are never touched (see find_orphans). An orphan with workspaces gets delete
    builds now and is deleted by a later run once Coder reports them gone ("pending"). A run
    that would delete an unusual number of users raises ReconcileRefused unless forced.
    """
    client = coder.get_client()
    ours, orphans = find_orphans(client)
    if not dry_run and not force and too_many(len(orphans), len(ours)):
        refused = ReconcileRefused(len(ours), [u.username for u in orphans])
        logger.error("reconcile: %s", refused)
        raise refused
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


def too_many(orphans: int, found: int) -> bool:
    """Say whether deleting this many of the users found is too unusual to do unasked."""
    return (
        orphans > int(settings.RECONCILE_MAX_DELETES)
        and orphans * 100 > found * int(settings.RECONCILE_MAX_DELETE_PERCENT)
    )


def find_orphans(client: coder.CoderClient) -> tuple[list[coder.User], list[coder.User]]:
    """Return the Coder users of this deployment, and those no live account owns.

    Ours are the users whose email carries this deployment's marker (credentials.email_for),
    plus users from before the marker (plain `<username>@<domain>`) that one of our rows
    recorded by id. Any other user, even at our domain, may be another deployment's live
    student or a real person: it is never touched.
    """
    ours: list[coder.User] = []
    unmarked: list[coder.User] = []
    for user in client.iter_users(settings.CODER_EMAIL_DOMAIN):
        (ours if credentials.is_our_email(user.email) else unmarked).append(user)
    # Read the owners after listing Coder: provisioning saves a username before creating it.
    ids, emails = _owned_identities()
    ours += _recorded_unmarked(unmarked)
    return ours, [u for u in ours if u.id not in ids and u.email.lower() not in emails]


def _recorded_unmarked(users: list[coder.User]) -> list[coder.User]:
    """Return the unmarked users whose id one of our rows (deleted ones included) recorded."""
    by_id = {user.id: user for user in users}
    # By id only: an email or username may since belong to another deployment's user.
    recorded = set(
        Account.objects.filter(coder_user_id__in=list(by_id)).values_list(
            "coder_user_id", flat=True
        )
    )
    return [user for user_id, user in by_id.items() if user_id in recorded]


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
    username = credentials.marker_username(user.email)
    if username:
        # A row between saving its username and hearing back from Coder has no email yet.
        mine |= Q(coder_email="", coder_username__iexact=username)
    return Account.objects.exclude(status=AccountStatus.DELETED).filter(mine).exists()


def _delete_orphan(client: coder.CoderClient, user: coder.User) -> str:
    """Take an orphan through the pipeline's steps; return "deleted", "pending" or "errors"."""
    try:
        if not user.is_suspended:
            client.suspend_user(user.id)
        if deletion.request_workspace_deletes(client, user.id, retry_failed=True).remaining:
            return "pending"
        client.delete_user(user.id)
    except coder.UserGone:
        return "deleted"
    except coder.WorkspacesRemain:
        return "pending"
    except coder.CoderError as exc:
        logger.warning("reconcile: could not delete orphan %s: %s", user.username, exc)
        return "errors"
    logger.info("reconcile: deleted orphan Coder user %s", user.username)
    return "deleted"


def apply_retention(now: datetime | None = None) -> dict[str, int]:
    """Delete message logs and purged accounts older than RETENTION_DAYS; keep daily counts.

    Before rows go, they are added to UsageStat (per day, session and metric), which holds no
    phone number or text: `inbound_<outcome>`, `outbound_<kind>` and `accounts`. The
    MessageSids of the messages deleted are kept as keyed hashes (SeenMessage, the replay
    protection), which go only after MESSAGE_SID_RETENTION_DAYS.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.RETENTION_DAYS)
    sids_cutoff = (now - timedelta(days=settings.MESSAGE_SID_RETENTION_DAYS)).date()
    inbound = InboundMessage.objects.filter(received_at__lt=cutoff)
    outbound = OutboundMessage.objects.filter(created_at__lt=cutoff)
    accounts = Account.objects.filter(status=AccountStatus.DELETED, purged_at__lt=cutoff)
    with transaction.atomic():
        # In the same transaction as the delete: a replay is refused by one or the other.
        _remember_sids(inbound)
        _count_into_stats(inbound, "received_at", "outcome", "inbound_")
        _count_into_stats(outbound, "created_at", "kind", "outbound_")
        _count_into_stats(accounts, "created_at", None, "accounts")
        report = {
            "inbound": inbound.delete()[0],
            "outbound": outbound.delete()[0],
            "accounts": accounts.delete()[0],
            "message_sids": SeenMessage.objects.filter(first_seen__lt=sids_cutoff).delete()[0],
        }
    logger.info("retention: deleted %s", report)
    return report


def _remember_sids(messages: QuerySet[InboundMessage]) -> None:
    """Keep the MessageSids of messages about to be deleted, as SeenMessage keyed hashes.

    While its log row exists a message's sid is found there; the webhook writes no
    SeenMessage of its own (one statement fewer on every text).
    """
    rows = messages.values_list("message_sid", "received_at")
    batch: list[SeenMessage] = []
    for sid, received_at in rows.iterator(chunk_size=2000):
        batch.append(SeenMessage(key=seen_message_key(sid), first_seen=received_at.date()))
        if len(batch) >= 2000:
            SeenMessage.objects.bulk_create(batch, ignore_conflicts=True)
            batch = []
    SeenMessage.objects.bulk_create(batch, ignore_conflicts=True)


def _count_into_stats(rows: QuerySet[Any], when: str, kind: str | None, metric: str) -> None:
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
