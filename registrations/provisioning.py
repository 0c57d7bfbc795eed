"""Creating a student's Coder account and texting the credentials; resending a new password.

The password exists only in this worker's memory, between generating it and handing it to
Twilio: it is never stored, never a task argument or result, never logged. Every step is safe to
run twice: the username is saved on the row before Coder is called, so a retry after a crash
meets Coder's 409 for that same username, adopts the user (it carries our email marker) by
setting a new password, and texts that one.

Coder trouble (down, timing out, 5xx, 429, a token being fixed) never fails a student quickly:
the attempt is retried with a short, capped backoff until PROVISION_GIVE_UP_HOURS after the
text (never past the account's expiry), and a student kept waiting is texted once that the
account is delayed. Only a request Coder rejects as invalid fails at once.

A claim names the worker holding the row (`claimed_by`); the writes that finish an attempt
only land while that worker still holds it, so an attempt handed on after its worker was seen
dead (registrations/liveness.py) cannot be finished twice.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.utils import timezone

from registrations import credentials, events, jobs, session_lifecycle, sms, sql, texts
from registrations.coder import (
    CoderClient,
    CoderError,
    InvalidRequest,
    ParametersRefused,
    User,
    UserGone,
    UsernameTaken,
    WorkspaceExists,
    get_client,
)
from registrations.models import (
    DELETION_STATUSES,
    Account,
    AccountStatus,
    DeletionReason,
    OptOut,
    OutboundKind,
    OutboundMessage,
    Session,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

PROVISION_TASK = "registrations.tasks.provision_account"
RESEND_TASK = "registrations.tasks.resend_credentials"
DELETION_TASK = "registrations.tasks.advance_deletion"

# Short blips are retried inside the task; longer trouble goes back to the sweep with backoff
# (PROVISION_RETRY_BASE_SECONDS doubling up to PROVISION_RETRY_MAX_SECONDS).
INLINE_TRIES = 2
INLINE_PAUSE_SECONDS = 0.3
INLINE_MAX_PAUSE_SECONDS = 3.0
# A credentials SMS Twilio did not take is retried (with a new password) on this backoff: long,
# so that a Twilio outage does not become a herd of password changes (Coder allows 60 a minute).
SMS_RETRY_BASE = timedelta(seconds=30)
SMS_RETRY_MAX = timedelta(minutes=10)
USERNAME_TRIES = 5
# A resend that keeps failing (Twilio or Coder down) is abandoned after this long.
RESEND_GIVE_UP_AFTER = timedelta(minutes=30)


class PermanentFailure(Exception):
    """Provisioning cannot succeed by retrying (e.g. Coder rejects our request as invalid)."""


def backoff(attempts: int, *, at_least: float | None = None) -> timedelta:
    """Return the pause before retrying Coder after `attempts` failures, doubling, capped.

    The cap is short (minutes) so that every waiting student is served soon after Coder is back.
    """
    return jobs.backoff(
        attempts,
        timedelta(seconds=settings.PROVISION_RETRY_BASE_SECONDS),
        timedelta(seconds=settings.PROVISION_RETRY_MAX_SECONDS),
        at_least=at_least,
    )


def give_up_at(account: Account) -> datetime:
    """Return when Coder trouble ends our attempts: hours after the text, never past expiry."""
    hours = timedelta(hours=settings.PROVISION_GIVE_UP_HOURS)
    return min(account.created_at + hours, account.expires_at)


def enqueue_provision(account_id: int) -> None:
    """Queue provisioning of an account once the current transaction commits."""
    jobs.enqueue_on_commit(PROVISION_TASK, account_id)


def _set(
    account_id: int,
    expected_status: str | None = None,
    *,
    holder: str | None = None,
    **changes: Any,
) -> int:
    """Update an account row (only while it has `expected_status`, and is held by `holder`)."""
    rows = Account.objects.filter(pk=account_id)
    if expected_status is not None:
        rows = rows.filter(status=expected_status)
    if holder is not None:
        rows = rows.filter(claimed_by=holder)
    if "status" in changes:
        changes.setdefault("status_changed_at", timezone.now())
    return rows.update(**changes)


def _claim(account_id: int, owner: str) -> bool:
    """Move a requested account to provisioning; False when another worker has it, or it went."""
    params = {"account": account_id, "owner": owner, "now": sql.moment(timezone.now())}
    return sql.run(_CLAIM, params) == 1


def _claim_sql() -> str:
    return (
        f"UPDATE {sql.table(Account)} SET status = '{AccountStatus.PROVISIONING}', "
        "status_changed_at = %(now)s, attempts = attempts + 1, next_attempt_at = NULL, "
        f"claimed_by = %(owner)s WHERE id = %(account)s AND status = '{AccountStatus.REQUESTED}' "
        "AND deletion_requested_at IS NULL AND expires_at > %(now)s"
    )


_CLAIM = _claim_sql()


def _held_account(account_id: int, owner: str) -> Account:
    """Load a row just claimed; `claimed_by` is what every later write must still find."""
    account = Account.objects.select_related("session").get(pk=account_id)
    account.claimed_by = owner
    return account


def warm_up() -> None:
    """Run a provisioning's first statements and write its SMS once, on nothing (a worker's
    start, registrations/warmup.py).

    A worker's first student cost twice its next (15 against 7-8 ms of CPU), at a class
    burst's start, sixteen workers at once: the ORM's compiled paths, psycopg's converted
    queries and, on PostgreSQL, the new server process's catalogue of the tables were all
    filled then. Claiming and reading a row that does not exist, and writing the credentials
    text of an account that is never saved, fills most of them and changes nothing.
    """
    _claim(0, "")  # no row 0: nothing is claimed
    with contextlib.suppress(Account.DoesNotExist):
        _held_account(0, "")
    now = timezone.now()
    for code, _ in settings.STUDENT_LANGUAGES:
        unsaved = Account(session=Session(language=code), coder_username="warm-up", expires_at=now)
        texts.credentials_text(unsaved, "warm-up")


def provision(account_id: int) -> None:
    """Create the account's Coder user (and workspace), then text the credentials (task body)."""
    owner = jobs.current_owner()
    if not _claim(account_id, owner):
        logger.info("account %s: not claimable for provisioning; skipped", account_id)
        return
    account = _held_account(account_id, owner)
    if account.interruptions >= settings.PROVISION_MAX_INTERRUPTIONS:
        # A row whose attempts keep killing their worker must not take down workers for hours.
        _fail(account, f"Gave up: {account.interruptions} attempts were interrupted.")
        return
    try:
        user, password = _with_inline_retries(lambda: _create_or_adopt(account))
        # Saved with whatever ends this attempt (active, a retry, a failure), not on its own:
        # a crash before then leaves the username, whose 409 leads the retry to this user.
        account.coder_user_id = user.id
        account.coder_email = user.email or credentials.email_for(account.coder_username)
        workspace_note = _with_inline_retries(lambda: _ensure_workspace(account))
    except PermanentFailure as exc:
        _fail(account, str(exc))
        return
    except CoderError as exc:
        _retry_later(account, exc)
        return
    if not _activate(account, workspace_note):
        return
    _send_password(account, password, texts.credentials_text(account, password), workspace_note)


def _with_inline_retries(step: Callable[[], T]) -> T:
    """Run one Coder step, repeating it briefly after a retryable error."""
    for attempt in range(INLINE_TRIES):
        try:
            return step()
        except CoderError as exc:
            if not exc.retryable or attempt == INLINE_TRIES - 1:
                raise
            pause = exc.retry_after if exc.retry_after is not None else INLINE_PAUSE_SECONDS
            if pause > INLINE_MAX_PAUSE_SECONDS:
                raise
            time.sleep(pause * (attempt + 1))
    raise AssertionError("unreachable")


def _create_or_adopt(account: Account) -> tuple[User, str]:
    """Create the Coder user under the row's username, adopting or renaming on 409.

    Returns the user and the password it now has.
    """
    client = get_client()
    if account.coder_user_id and account.coder_username:
        # An earlier attempt created the user, then stopped (its template look-up waited on
        # the rate limit, a workspace call failed): take the user over by id rather than send
        # a create that Coder would refuse with 409.
        existing = client.get_user(account.coder_user_id)
        if existing is not None and credentials.is_ours(account.coder_username, existing.email):
            return _adopt(client, account, existing)
    password = credentials.generate_password()
    organization_id = client.resolve_organization_id(settings.CODER_ORGANIZATION or None)
    for _ in range(USERNAME_TRIES):
        username = _ensure_username(account)
        try:
            user = client.create_user(
                username=username,
                email=credentials.email_for(username),
                password=password,
                organization_id=organization_id,
                user_status="active",
            )
            return user, password
        except UsernameTaken:
            pass
        except CoderError as exc:
            _raise_if_permanent(exc)
            raise
        existing = client.get_user(username)
        if existing is not None and credentials.is_ours(username, existing.email):
            return _adopt(client, account, existing)
        logger.info(
            "account %s: username %s is taken in Coder; choosing another", account.pk, username
        )
        _set(account.pk, coder_username="")
        account.coder_username = ""
    raise PermanentFailure(f"No free Coder username after {USERNAME_TRIES} tries.")


def _ensure_username(account: Account) -> str:
    """Return the row's username, choosing and saving one first if it has none.

    Saved just before Coder is first asked to create the user, not earlier: deletion takes a
    row without a username for one that never reached Coder (nothing to delete there).
    """
    if account.coder_username:
        return account.coder_username
    for _ in range(USERNAME_TRIES):
        candidate = credentials.generate_username()
        saved = sql.run_unless_conflict(_NAME, {"account": account.pk, "username": candidate})
        if saved is None:
            continue  # another live account holds it
        if saved:
            account.coder_username = candidate
            return candidate
        account.refresh_from_db(fields=["coder_username"])
        return account.coder_username
    raise PermanentFailure(f"No free username after {USERNAME_TRIES} tries.")


_NAME = (
    f"UPDATE {sql.table(Account)} SET coder_username = %(username)s "
    "WHERE id = %(account)s AND coder_username = ''"
)


def _adopt(client: CoderClient, account: Account, user: User) -> tuple[User, str]:
    """Take over a Coder user this app created earlier (a retry after a crash, or an orphan).

    Always with a new password: the user may already have the one an earlier, timed-out create
    sent, and Coder refuses to set a password to its current value (400).
    """
    logger.info("account %s: adopting existing Coder user %s", account.pk, user.username)
    password = credentials.generate_password()
    client.set_password(user.id or user.username, password)
    if user.is_suspended:
        user = client.activate_user(user.id or user.username)
    return user, password


def _raise_if_permanent(exc: CoderError) -> None:
    # Coder's "your request is invalid" (or "no such user"): repeating it cannot help.
    # Everything else (a token being fixed, an unknown organization, rate limits, outages) is
    # worth another attempt.
    if isinstance(exc, (InvalidRequest, UserGone)):
        raise PermanentFailure(str(exc)) from exc


def _ensure_workspace(account: Account) -> str:
    """Create the session's workspace when it names a template; return a note for the admin."""
    name = account.session.coder_template.strip()
    if not name:
        return ""
    client = get_client()
    template = session_lifecycle.find_template_for_workspace(name)
    if template is None:
        return f"Coder template “{name}” not found: no workspace was created."
    try:
        # By id: the student may rename themselves in Coder the moment they log in.
        client.create_workspace(
            account.coder_user_id,
            template.name,
            template.id,
            rich_parameter_values=account.session.template_parameters or None,
        )
    except WorkspaceExists:
        return ""  # already created by an earlier attempt
    except ParametersRefused as exc:
        # The template changed since the session was saved (a new required parameter, an
        # option gone): every student of the session would get an account without the
        # workspace the class needs. Fail loudly instead: the student is told, the
        # instructors get the failure digest, and a retry once the session is fixed adopts
        # the user created here.
        raise PermanentFailure(parameters_refused_text(name, exc)) from exc
    except CoderError as exc:
        if exc.retryable:
            raise
        return f"Workspace not created: {exc}"
    return ""


def parameters_refused_text(template: str, exc: CoderError) -> str:
    """What admin shows for a workspace Coder refused for its template parameters."""
    reasons = [exc.detail] if exc.detail else []
    reasons += [f"{v.get('field', '?')}: {v.get('detail', '')}" for v in exc.validations]
    why = f"{exc.message} ({'; '.join(reasons)})" if reasons else exc.message
    return (
        f"No workspace: Coder refused the parameters for template “{template}”: {why}. "
        "Set the template parameters in the session's form, then retry the failed accounts."
    )


def _activate(account: Account, note: str) -> bool:
    """Mark the account active; False if it left provisioning meanwhile (e.g. revoked)."""
    now = timezone.now()
    # Still held by this task: if its worker was seen dead meanwhile, another attempt owns the
    # row now, and only that one may text credentials. The claim stays for the SMS below.
    # next_attempt_at is a lease, not "nothing due": if this task dies before the SMS is
    # recorded, its worker's death (or else the lease running out) makes a new password due
    # (resend knows it is the first SMS).
    done = sql.rows(
        _ACTIVATE,
        {
            "account": account.pk,
            "holder": account.claimed_by,
            "now": sql.moment(now),
            "lease": sql.moment(now + timedelta(seconds=settings.STALE_AFTER_SECONDS)),
            "note": note,
            "user_id": account.coder_user_id,
            "email": account.coder_email,
        },
    )
    if not done:
        logger.info("account %s left provisioning before it finished; no SMS", account.pk)
        return False
    # What may have changed since the claim: a deletion asked for meanwhile (the sweep moves
    # the account on), the number, an expiry the instructor extended.
    deletion_requested_at, account.phone, expires_at = done[0]
    if deletion_requested_at is not None:
        return False
    account.status = AccountStatus.ACTIVE
    account.expires_at = sql.read(Account, "expires_at", expires_at)
    logger.info("account %s: Coder user %s is ready", account.pk, account.coder_username)
    events.announce(events.AccountEventKind.READY, account.pk, account.session_id)
    return True


def _activate_sql() -> str:
    return (
        f"UPDATE {sql.table(Account)} SET status = '{AccountStatus.ACTIVE}', "
        "status_changed_at = %(now)s, provisioned_at = %(now)s, next_attempt_at = %(lease)s, "
        "last_error = %(note)s, coder_user_id = %(user_id)s, coder_email = %(email)s "
        f"WHERE id = %(account)s AND status = '{AccountStatus.PROVISIONING}' "
        "AND claimed_by = %(holder)s RETURNING deletion_requested_at, phone, expires_at"
    )


_ACTIVATE = _activate_sql()


def _send_password(account: Account, password: str, body: str, note: str = "") -> bool:
    """Text a password and record the outcome; a transient failure schedules a NEW password.

    `note` is what admin should still see once the SMS is out (e.g. no workspace was created).
    """
    delivery = sms.send_with_secret(
        account=account, kind=OutboundKind.CREDENTIALS, body=body, secret=password
    )
    now = timezone.now()
    # Only while still active and ours: if a deletion began meanwhile, next_attempt_at is its
    # timer; if our worker was seen dead, the recovery that took over sets it.
    active, ours = AccountStatus.ACTIVE, {"holder": account.claimed_by, "claimed_by": ""}
    if delivery.sent:
        params = {"account": account.pk, "holder": account.claimed_by, "note": note}
        sql.run(_SENT, {**params, "now": sql.moment(now)})
        return True
    message = delivery.message
    reason = (message.error_message or message.get_status_display()) if message else "no phone"
    if delivery.held:
        # Twilio rejects our credentials: our configuration, not the student's trouble. A new
        # password every minute until they work, without backoff, and with resend's give-up
        # clock (it counts from last_resent_at) restarted, so the student is never given up.
        _set(
            account.pk,
            active,
            **ours,
            next_attempt_at=now + sms.held_retry_delay(),
            last_resent_at=now,
            last_error=f"Credentials SMS not sent ({reason}); a new password will follow.",
        )
        return False
    if delivery.transient:
        # The password is gone once this task ends: the next try sets and sends a new one.
        # Back off on consecutive unsent attempts, so a Twilio outage during a class does not
        # turn into a herd of password changes against Coder's 60-a-minute limit.
        delay = jobs.backoff(_unsent_credentials(account), SMS_RETRY_BASE, SMS_RETRY_MAX)
        _set(
            account.pk,
            active,
            **ours,
            next_attempt_at=now + delay,
            last_error=f"Credentials SMS not sent ({reason}); a new password will follow.",
        )
    else:
        error = f"Credentials SMS not sent: {reason}"
        _set(account.pk, active, **ours, next_attempt_at=None, last_error=error)
    return False


def _sent_sql() -> str:
    # The SMS is out whatever else happened; the row is let go only while still active and
    # ours (if a deletion began meanwhile, next_attempt_at is its timer; if our worker was seen
    # dead, the recovery that took over sets it).
    ours = f"status = '{AccountStatus.ACTIVE}' AND claimed_by = %(holder)s"
    released = {"next_attempt_at": "NULL", "last_error": "%(note)s", "claimed_by": "''"}
    return (
        f"UPDATE {sql.table(Account)} SET credentials_sent_at = %(now)s, "
        f"{sql.set_when(ours, released)} WHERE id = %(account)s"
    )


_SENT = _sent_sql()


def _unsent_credentials(account: Account) -> int:
    """Count credentials SMS that never reached Twilio since the last one that did."""
    messages = OutboundMessage.objects.filter(account=account, kind=OutboundKind.CREDENTIALS)
    last_sent = messages.filter(sent_at__isnull=False).order_by("-created_at").first()
    if last_sent is not None:
        messages = messages.filter(created_at__gt=last_sent.created_at)
    return messages.filter(sent_at__isnull=True).count()


def _retry_later(account: Account, exc: CoderError) -> None:
    """Put the account back to requested with backoff; fail it only once the bound has passed.

    The bound is time, not a number of attempts: an outage of any length within it costs the
    student a wait, never the account. A student kept waiting hears about it once.
    """
    now = timezone.now()
    deadline = give_up_at(account)
    if now >= deadline:
        waited = (now - account.created_at).total_seconds() / 3600
        _fail(account, f"Gave up after {waited:.1f} hours of Coder errors: {exc}")
        return
    logger.warning(
        "account %s: attempt %s failed, will retry: %s", account.pk, account.attempts, exc
    )
    # Past the deadline the claim no longer matters: the last try is at the deadline, and at
    # the expiry the deletion pipeline tells a student who never got credentials.
    retry_at = min(now + backoff(account.attempts, at_least=exc.retry_after), deadline)
    moved = _set(
        account.pk,
        AccountStatus.PROVISIONING,
        holder=account.claimed_by,
        status=AccountStatus.REQUESTED,
        next_attempt_at=retry_at,
        claimed_by="",
        last_error=str(exc)[:1000],
        **_coder_user(account),
    )
    notice_after = timedelta(seconds=settings.PROVISION_DELAY_NOTICE_SECONDS)
    if moved and now - account.created_at >= notice_after:
        _tell_delayed(account, now)


def _coder_user(account: Account) -> dict[str, str]:
    """The Coder user an attempt created or adopted, saved with how the attempt ended.

    A retry then takes that user over by id (a failed workspace, a template look-up that
    waited on the rate limit) instead of sending a create that Coder refuses with 409.
    """
    if not account.coder_user_id:
        return {}
    return {"coder_user_id": account.coder_user_id, "coder_email": account.coder_email}


def _tell_delayed(account: Account, now: datetime) -> None:
    """Text the student, once, that their account is delayed and will come by SMS."""
    # The conditional update decides who sends it: two attempts never text it twice.
    if Account.objects.filter(pk=account.pk, delay_notified_at__isnull=True).update(
        delay_notified_at=now
    ):
        logger.info("account %s: student told the account is delayed", account.pk)
        sms.queue_sms(
            phone=account.phone,
            kind=OutboundKind.NOTICE,
            body=texts.delayed_text(account),
            account=account,
        )


def _fail(account: Account, error: str, from_status: str = AccountStatus.PROVISIONING) -> None:
    """Mark the account failed (admin shows the error) and tell the student once."""
    failed = _set(
        account.pk,
        from_status,
        holder=account.claimed_by,
        status=AccountStatus.FAILED,
        next_attempt_at=None,
        claimed_by="",
        last_error=error[:1000],
        **_coder_user(account),
    )
    if not failed:
        return
    logger.error("account %s: provisioning failed: %s", account.pk, error)
    events.announce(events.AccountEventKind.FAILED, account.pk, account.session_id, error)
    sms.queue_sms(
        phone=account.phone,
        kind=OutboundKind.FAILURE,
        body=texts.failure_text(account),
        account=account,
    )


def retry_failed(account: Account) -> bool:
    """Give a failed account a fresh set of attempts (admin action); False if not failed."""
    if account.expires_at <= timezone.now():
        return False
    retried = _set(
        account.pk,
        AccountStatus.FAILED,
        status=AccountStatus.REQUESTED,
        attempts=0,
        interruptions=0,
        delay_notified_at=None,
        claimed_by="",
        next_attempt_at=None,
        last_error="",
    )
    if retried:
        enqueue_provision(account.pk)
    return bool(retried)


def resends_in_last_hour(account: Account, now: datetime) -> int:
    """Count credentials messages of the last hour, not counting the very first one."""
    messages = OutboundMessage.objects.filter(account=account, kind=OutboundKind.CREDENTIALS)
    first = messages.order_by("created_at", "pk").values_list("pk", flat=True).first()
    recent = messages.filter(created_at__gte=now - timedelta(hours=1))
    return (recent.exclude(pk=first) if first is not None else recent).count()


def request_resend(account: Account, *, by_admin: bool = False) -> bool:
    """Queue a new password for an active account; False when rate-limited or not active.

    Students get RESEND_LIMIT_PER_HOUR resends an hour; admins are not limited by that. A
    resend already on its way counts as granted (one new password, not two). Coder's own limit
    of 60 password changes a minute is met with backoff in `resend`.
    """
    now = timezone.now()
    with transaction.atomic():
        locked = (
            Account.objects.select_for_update()
            .filter(pk=account.pk, status=AccountStatus.ACTIVE)
            .annotate(opted_out=Exists(OptOut.objects.filter(phone=OuterRef("phone"))))
            .first()
        )
        if locked is None:
            return False
        verdict = _resend_verdict(
            account.pk,
            ResendState(
                deletion_requested=locked.deletion_requested_at is not None,
                on_its_way=locked.next_attempt_at is not None,
                opted_out=locked.opted_out,
                recent_resends=lambda: resends_in_last_hour(locked, now),
            ),
            by_admin,
        )
        if verdict is not None:
            return verdict
        _grant_resend(account.pk, now)
    return True


@dataclass(frozen=True)
class ResendState:
    """What a resend request of an active account is decided on."""

    deletion_requested: bool
    on_its_way: bool  # a new password is already due (next_attempt_at is set)
    opted_out: bool
    recent_resends: Callable[[], int]  # resends_in_last_hour, read only when it matters


def request_resend_as_read(account_id: int, state: ResendState) -> bool:
    """request_resend for a text whose account (active) was read in this very transaction.

    The webhook reads the state with everything else in one query; the grant is then one
    conditional update. Should the row have changed since (another resend granted, a
    deletion: PostgreSQL only, SQLite serialises writers), request_resend decides again
    under the row lock.
    """
    verdict = _resend_verdict(account_id, state, by_admin=False)
    if verdict is not None:
        return verdict
    if _grant_resend(account_id, timezone.now(), only_if_idle=True):
        return True
    return request_resend(Account(pk=account_id))


def _resend_verdict(account_id: int, state: ResendState, by_admin: bool) -> bool | None:
    """True (already granted) or False (refused), or None when a new password is to be granted."""
    if state.deletion_requested:
        return False
    if state.on_its_way:
        return True
    if state.opted_out:
        # Twilio would refuse the SMS, and the new password would lock the student out of
        # the session they have open: change nothing until they text START.
        logger.info("account %s: phone opted out; no new password", account_id)
        return False
    if not by_admin and state.recent_resends() >= settings.RESEND_LIMIT_PER_HOUR:
        logger.info("account %s: resend rate-limited", account_id)
        return False
    return None


_GRANT = (
    f"UPDATE {sql.table(Account)} SET next_attempt_at = %(now)s, last_resent_at = %(now)s, "
    "resend_count = resend_count + 1 WHERE id = %(account)s"
)
# Only while nothing changed since the caller read the row.
_GRANT_IF_IDLE = (
    _GRANT + f" AND status = '{AccountStatus.ACTIVE}' AND deletion_requested_at IS NULL "
    "AND next_attempt_at IS NULL"
)


def _grant_resend(account_id: int, now: datetime, *, only_if_idle: bool = False) -> bool:
    """Make a new password due now and queue its task once the transaction commits."""
    # Plain SQL: on the webhook's path, building this update through the ORM cost more CPU
    # than all the rest of a repeat text's database work.
    statement = _GRANT_IF_IDLE if only_if_idle else _GRANT
    granted = sql.run(statement, {"now": sql.moment(now), "account": account_id})
    if granted:
        jobs.enqueue_on_commit(RESEND_TASK, account_id)
    return bool(granted)


def _claim_resend(account_id: int, now: datetime, owner: str) -> bool:
    leased = Account.objects.filter(
        pk=account_id,
        status=AccountStatus.ACTIVE,
        deletion_requested_at__isnull=True,
        next_attempt_at__lte=now,
    ).update(
        next_attempt_at=now + timedelta(seconds=settings.STALE_AFTER_SECONDS), claimed_by=owner
    )
    return leased == 1


def resend(account_id: int) -> None:
    """Set a new password in Coder and text it (task body); also the recovery of a lost SMS."""
    now = timezone.now()
    owner = jobs.current_owner()
    if not _claim_resend(account_id, now, owner):
        return
    account = _held_account(account_id, owner)
    since = account.last_resent_at or account.provisioned_at or account.created_at
    if now - since > RESEND_GIVE_UP_AFTER:
        _give_up_resend(account, "Gave up sending a new password.")
        return
    password = credentials.generate_password()
    try:
        user = _with_inline_retries(lambda: get_client().find_user_by_email(account.login_email))
        if user is None or (account.coder_user_id and user.id != account.coder_user_id):
            _gone_from_coder(account, now)
            return
        _with_inline_retries(lambda: get_client().set_password(user.id, password))
    except CoderError as exc:
        _resend_failed(account, exc, now)
        return
    # Recovery of a first SMS that never went out is still the student's first message.
    if account.credentials_sent_at is None:
        body = texts.credentials_text(account, password)
    else:
        body = texts.resend_text(account, password)
    _send_password(account, password, body)


def _gone_from_coder(account: Account, now: datetime) -> None:
    """The user was deleted in Coder directly: a password texted now could never log in.

    Looked up in the user listing, which never shows deleted users; a look-up (or a password
    change) by id would still find the deleted row and succeed. The account finishes through
    the deletion pipeline, which tells the student their account is gone.
    """
    logger.warning("account %s: Coder user is gone (deleted in Coder); no password", account.pk)
    moved = _set(
        account.pk,
        AccountStatus.ACTIVE,
        holder=account.claimed_by,
        claimed_by="",
        status=AccountStatus.DELETING_USER,
        deletion_reason=DeletionReason.GONE,
        deletion_requested_at=now,
        next_attempt_at=None,
        attempts=0,
        last_error="The Coder user was deleted in Coder directly; no new password was sent.",
    )
    if moved:
        jobs.enqueue_on_commit(DELETION_TASK, account.pk)


def _resend_failed(account: Account, exc: CoderError, now: datetime) -> None:
    retry_at = None
    if exc.retryable:
        retry_at = now + backoff(max(1, _unsent_credentials(account)), at_least=exc.retry_after)
    logger.warning("account %s: new password not set in Coder: %s", account.pk, exc)
    error = f"New password not set: {exc}"
    if retry_at is None:
        _give_up_resend(account, error)
    else:
        _release_resend(account, retry_at, error)


def _give_up_resend(account: Account, error: str) -> None:
    """Stop trying; a student who never got any credentials is told, and admin can retry."""
    if account.credentials_sent_at is None:
        error = f"No credentials SMS ever reached the student. {error}"
        _fail(account, error, AccountStatus.ACTIVE)
    else:
        _release_resend(account, None, error)


def _release_resend(account: Account, retry_at: datetime | None, error: str) -> None:
    """Let go of a resend this task held: due again at `retry_at` (None: not again)."""
    _set(
        account.pk,
        AccountStatus.ACTIVE,
        holder=account.claimed_by,
        claimed_by="",
        next_attempt_at=retry_at,
        last_error=error[:1000],
    )


INTERRUPTED = "Interrupted: the worker stopped mid-attempt; trying again."


def release_claims(owner: str, now: datetime) -> int:
    """Hand on what a dead worker held, due at once; count the rows.

    An attempt it was making goes back to requested (the retry adopts any user it created); a
    credentials SMS it was sending is sent again with a new password (resend knows whether it
    is the student's first).
    """
    held = Account.objects.filter(claimed_by=owner)
    count = held.filter(status=AccountStatus.PROVISIONING).update(
        status=AccountStatus.REQUESTED,
        status_changed_at=now,
        next_attempt_at=now,
        claimed_by="",
        interruptions=F("interruptions") + 1,
        last_error=INTERRUPTED,
    )
    count += held.filter(status=AccountStatus.ACTIVE, next_attempt_at__isnull=False).update(
        next_attempt_at=now, claimed_by=""
    )
    # The deletion pipeline hands on its own rows (deletion.release_claims).
    held.exclude(status__in=DELETION_STATUSES).update(claimed_by="")
    return count


def redrive_stale(now: datetime, *, queued_too: bool = False) -> int:
    """Re-enqueue provisioning and credentials (re)sends that are due or stuck; count them.

    `queued_too`: also rows whose task was enqueued moments ago, because a worker died and its
    cluster's prefetched tasks died with it (a duplicate task finds the row claimed, and stops).
    """
    stale = now - timedelta(seconds=settings.STALE_AFTER_SECONDS)
    lease = now + timedelta(seconds=settings.STALE_AFTER_SECONDS)
    # A worker killed mid-task whose death nobody saw (it had no identity) leaves the row in
    # provisioning: once its lease is over, hand it back to requested.
    Account.objects.filter(status=AccountStatus.PROVISIONING, status_changed_at__lte=stale).update(
        status=AccountStatus.REQUESTED,
        status_changed_at=now,
        next_attempt_at=now,
        claimed_by="",
        interruptions=F("interruptions") + 1,
        last_error=INTERRUPTED,
    )
    live = Q(deletion_requested_at__isnull=True, expires_at__gt=now)
    lost = Q(next_attempt_at__isnull=True)
    if not queued_too:
        lost &= Q(status_changed_at__lte=stale)
    due = Q(next_attempt_at__lte=now) | lost
    requested = Account.objects.filter(status=AccountStatus.REQUESTED)
    candidates = requested.filter(live, due).values_list("pk", "next_attempt_at")[:500]
    # Leased until the next sweep, so that two sweeps never enqueue one row twice.
    count = jobs.lease_and_enqueue(requested, candidates, PROVISION_TASK, lease)
    # The resend task leases the row itself when it claims it (see _claim_resend).
    resends = Account.objects.filter(live, status=AccountStatus.ACTIVE, next_attempt_at__lte=now)
    for pk in resends.values_list("pk", flat=True)[:500]:
        jobs.enqueue_on_commit(RESEND_TASK, pk)
        count += 1
    return count
