"""Tell every student of a session their account's new expiry, after an instructor extends it.

Each student's credentials SMS states when the account expires; once the session is extended
that line is no longer true, and a student who plans by it would stop early or save work in a
hurry. One short SMS per student corrects it.
"""

from __future__ import annotations

import logging

from registrations import sms, texts
from registrations.models import Account, AccountStatus, OutboundKind, OutboundStatus, Session

logger = logging.getLogger(__name__)


def accounts_to_notify(session: Session) -> list[Account]:
    """Accounts whose student holds credentials and keeps the account until the new expiry.

    Accounts still being created are left out: their credentials SMS, sent later, states the
    new expiry already. Accounts on their way to deletion keep no expiry to announce.
    """
    return list(
        Account.objects.filter(
            session=session,
            status=AccountStatus.ACTIVE,
            deletion_requested_at__isnull=True,
            phone__isnull=False,
        )
        .select_related("session")
        .order_by("pk")
    )


def notify_new_expiry(session: Session) -> int:
    """Queue one SMS per live account with its new expiry; return how many will be sent.

    Opted-out phones get a row marked opted out (never sent) and are not counted.
    """
    queued = 0
    for account in accounts_to_notify(session):
        message = sms.queue_sms(
            phone=account.phone,
            kind=OutboundKind.NOTICE,
            body=texts.new_expiry_text(account),
            account=account,
        )
        if message is not None and message.status != OutboundStatus.OPTED_OUT:
            queued += 1
    logger.info("session %s: new expiry texted to %d accounts", session.pk, queued)
    return queued
