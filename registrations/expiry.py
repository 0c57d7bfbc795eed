"""Expiry: warn students before their account goes, then send expired accounts to deletion."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from registrations import deletion, sms, texts
from registrations.models import Account, AccountStatus, DeletionReason, OutboundKind

logger = logging.getLogger(__name__)


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


def expired_accounts(now: datetime) -> QuerySet[Account]:
    """Return the accounts past their expiry whose deletion has not been requested yet."""
    return Account.objects.filter(expires_at__lte=now, deletion_requested_at__isnull=True).exclude(
        status=AccountStatus.DELETED
    )


def expire_due(now: datetime | None = None, *, dispatch: bool = True) -> int:
    """Request deletion of every account past its expiry and start the pipeline; count them.

    `dispatch=False` (the sweep): only mark them; the sweep itself then moves them on.
    """
    now = now or timezone.now()
    expired = expired_accounts(now).update(
        deletion_reason=DeletionReason.EXPIRED, deletion_requested_at=now
    )
    if dispatch:
        deletion.start_requested(now)
    if expired:
        logger.info("expire: %d accounts expired", expired)
    return expired
