"""Account lifecycle events: an account is ready, has failed, or is deleted.

The workflow announces each one here, once, and every notifier listed in the
ACCOUNT_NOTIFIERS setting hears it. A new notifier (an email to the instructor, a webhook,
a metric) is one new module with a `notify(event)` function plus one line in that setting.

Notifiers run in the announcing transaction and must be quick: anything slow or remote is
queued (on commit). An event carries ids, never a phone number or a password. A notifier that
raises is logged and skipped: a notification must never undo the work it announces.
"""

from __future__ import annotations

import enum
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.utils.module_loading import import_string

logger = logging.getLogger(__name__)


class AccountEventKind(enum.StrEnum):
    READY = "ready"  # the Coder user exists and the account is active
    FAILED = "failed"  # provisioning gave up; the student has been told
    DELETED = "deleted"  # gone from Coder, phone number purged


@dataclass(frozen=True)
class AccountEvent:
    kind: AccountEventKind
    account_id: int
    session_id: int
    detail: str = ""  # why: an error for FAILED, the deletion reason for DELETED


Notifier = Callable[[AccountEvent], None]


@functools.cache
def _notifiers(paths: tuple[str, ...]) -> tuple[Notifier, ...]:
    return tuple(import_string(path) for path in paths)


def announce(kind: AccountEventKind, account_id: int, session_id: int, detail: str = "") -> None:
    """Tell every configured notifier that an account reached a point of its life."""
    event = AccountEvent(kind, account_id, session_id, detail)
    for notifier in _notifiers(tuple(settings.ACCOUNT_NOTIFIERS)):
        try:
            notifier(event)
        except Exception:
            logger.exception("notifier %r failed on %s", notifier, event)
