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

from registrations import coder, deletion, provisioning, sms
from registrations.models import (
    Account,
    AccountStatus,
    InboundMessage,
    OutboundMessage,
    UsageStat,
)

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


def sweep(now: datetime | None = None) -> dict[str, int]:
    """Re-drive work a dead worker or a lost task left behind; count what was re-driven."""
    now = now or timezone.now()
    return {
        "provisioning": provisioning.redrive_stale(now),
        "sms": sms.redrive_stale(now),
        "deletion_started": deletion.start_requested(now),
        "deletion_redriven": deletion.redrive_due(now),
    }


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
