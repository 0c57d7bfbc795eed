"""Who has logged in: `coder_last_seen_at` from Coder's own `last_seen_at`, read in batches.

One listing of our users seen since the oldest live account was created (GET /users with
`last_seen_after:`, 100 a page) serves a whole deployment, so a poll costs a handful of Coder
requests however many students there are; it runs only while some session has live accounts.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.conf import settings
from django.db.models import Min, QuerySet
from django.utils import timezone

from registrations import coder
from registrations.models import Account, AccountStatus

logger = logging.getLogger(__name__)


def _live_accounts(now: datetime) -> QuerySet[Account]:
    return Account.objects.filter(
        status=AccountStatus.ACTIVE, expires_at__gt=now, deletion_requested_at__isnull=True
    ).exclude(coder_user_id="")


def poll_last_seen(now: datetime | None = None) -> int:
    """Copy Coder's `last_seen_at` onto live accounts; return how many rows changed."""
    now = now or timezone.now()
    live = _live_accounts(now)
    oldest = live.aggregate(oldest=Min("created_at"))["oldest"]
    if oldest is None:
        return 0  # no live session: not a single request to Coder
    seen = _seen_since(coder.get_client(), oldest)
    changed = []
    rows = live.filter(coder_user_id__in=list(seen)).only("coder_user_id", "coder_last_seen_at")
    for account in rows:
        when = seen[account.coder_user_id]
        if account.coder_last_seen_at is None or when > account.coder_last_seen_at:
            account.coder_last_seen_at = when
            changed.append(account)
    Account.objects.bulk_update(changed, ["coder_last_seen_at"], batch_size=500)
    if changed:
        logger.info("last seen: %d accounts updated", len(changed))
    return len(changed)


def _seen_since(client: coder.CoderClient, since: datetime) -> dict[str, datetime]:
    """Map user id -> last_seen_at for users carrying our email marker seen since `since`."""
    stamp = since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    query = f"{settings.CODER_EMAIL_DOMAIN} last_seen_after:{stamp}"
    suffix = "@" + settings.CODER_EMAIL_DOMAIN.lower()
    return {
        user.id: user.last_seen_at
        for user in client.iter_users(query)
        if user.last_seen_at is not None and user.email.lower().endswith(suffix)
    }
