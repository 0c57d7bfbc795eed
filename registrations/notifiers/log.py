"""Log each account lifecycle event as one line an operator can grep or ship to a log store.

The line names ids and the event only (no phone number, no password), with the session so a
failed class can be found: `account 12 of session 3: failed (Coder POST /users -> 400 ...)`.
"""

from __future__ import annotations

import logging

from registrations.events import AccountEvent, AccountEventKind

logger = logging.getLogger("registrations.lifecycle")


def notify(event: AccountEvent) -> None:
    """Log the event; a failure at WARNING, so it stands out from the routine ones."""
    level = logging.WARNING if event.kind is AccountEventKind.FAILED else logging.INFO
    detail = f" ({event.detail[:300]})" if event.detail else ""
    logger.log(
        level,
        "account %s of session %s: %s%s",
        event.account_id,
        event.session_id,
        event.kind.value,
        detail,
    )
