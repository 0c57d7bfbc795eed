"""django-q2 entry points. Each takes primary keys only (arguments are pickled and shown in
admin) and returns nothing secret; the work lives in the workflow modules."""

from __future__ import annotations

import logging

from registrations import activity, deletion, expiry, health, maintenance, probes, provisioning, sms
from registrations.coder import CoderNotConfigured
from registrations.notifiers import instructor_alerts

logger = logging.getLogger(__name__)


def heartbeat() -> None:
    health.stamp_heartbeat()
    # After the stamp: a probe waiting for a hung Coder must not make the worker look dead.
    probes.run_due()


def provision_account(account_id: int) -> None:
    provisioning.provision(account_id)


def resend_credentials(account_id: int) -> None:
    provisioning.resend(account_id)


def send_sms(outbound_id: int) -> None:
    sms.deliver(outbound_id)


def send_failure_digest(session_id: int) -> int:
    return instructor_alerts.send_digest(session_id)


def advance_deletion(account_id: int) -> None:
    deletion.advance(account_id)


def warn() -> int:
    return expiry.warn_due()


def expire() -> int:
    return expiry.expire_due()


def sweep() -> dict[str, int]:
    health.stamp_heartbeat()
    return maintenance.sweep()


def reconcile() -> dict[str, int]:
    try:
        return maintenance.reconcile()
    except CoderNotConfigured:
        # Nothing can be in Coder that we did not put there; not worth a failed task every hour.
        logger.info("reconcile skipped: Coder is not configured")
        return {}


def last_seen() -> int:
    try:
        return activity.poll_last_seen()
    except CoderNotConfigured:
        return 0


def retention() -> dict[str, int]:
    return maintenance.apply_retention()
