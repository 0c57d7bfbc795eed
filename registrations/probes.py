"""Probing Coder and Twilio from the worker: do they answer, and do they accept our credentials?

The worker's minute heartbeat calls `run_due`; each answer is stored in an IntegrationStatus
row that /healthz and the admin banner read, so a web request never calls Coder or Twilio.
Tokens are sent, never logged nor stored.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from registrations import sms_transport
from registrations.checks import missing_coder_settings, missing_twilio_settings
from registrations.coder import CoderClient, CoderError, Unauthorized, Unreachable
from registrations.models import IntegrationStatus
from registrations.sms_transport import Failure, TransportError

logger = logging.getLogger(__name__)

CODER = "coder"
TWILIO = "twilio"
# At most one probe of each service a minute, however many workers run the heartbeat.
PROBE_EVERY = timedelta(minutes=1)

# IntegrationStatus.problem values, which the admin banner turns into advice.
UNREACHABLE = "unreachable"
REJECTED = "rejected"
NOT_OWNER = "not_owner"
SUSPENDED = "suspended"
ERROR = "error"


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str = ""
    problem: str = ""
    version: str = ""


def probe_coder() -> ProbeResult:
    """Ask Coder for its version (GET /buildinfo) and who our token is (GET /users/me)."""
    # One try, no retries: the probe reports how Coder answers now, and must stay short.
    client = CoderClient(
        settings.CODER_URL.strip(),
        settings.CODER_SESSION_TOKEN.strip(),  # as coder.get_client reads it
        timeout=settings.CODER_TIMEOUT,
        max_retries=0,
    )
    version = ""
    try:
        version = client.build_info().version
        user = client.current_user()
    except CoderError as exc:
        return _coder_failure(exc, version)
    finally:
        client.close()
    if "owner" not in user.roles:
        # Only an owner may create and delete other users (coder-api/NOTES.md, Basics).
        return ProbeResult(False, "token user is not an owner", NOT_OWNER, version)
    return ProbeResult(True, version=version)


def _coder_failure(exc: CoderError, version: str) -> ProbeResult:
    if isinstance(exc, Unreachable):
        return ProbeResult(False, f"not reachable: {exc.message}", UNREACHABLE, version)
    if isinstance(exc, Unauthorized):
        return ProbeResult(False, "token rejected (401)", REJECTED, version)
    return ProbeResult(False, f"answered {exc.status}: {exc.message}", ERROR, version)


def probe_twilio() -> ProbeResult:
    """Ask Twilio whether it accepts our credentials, and whether our account is active."""
    try:
        account = sms_transport.get_transport().check_credentials()
    except TransportError as exc:
        return _twilio_failure(exc)
    if not account.active:
        # A suspended or closed account sends nothing, whatever the credentials.
        return ProbeResult(False, f"account is {account.status}", SUSPENDED)
    return ProbeResult(True)


def _twilio_failure(exc: TransportError) -> ProbeResult:
    if exc.credentials_rejected:
        return ProbeResult(False, f"credentials rejected ({exc.status}, code {exc.code})", REJECTED)
    if not exc.answered:
        kind = "timed out" if exc.kind is Failure.TIMED_OUT else "network error"
        return ProbeResult(False, f"not reachable: {kind} ({exc.cause})", UNREACHABLE)
    return ProbeResult(False, f"answered {exc.status} (code {exc.code})", ERROR)


PROBES: dict[str, tuple[Callable[[], list[str]], Callable[[], ProbeResult]]] = {
    CODER: (missing_coder_settings, probe_coder),
    TWILIO: (missing_twilio_settings, probe_twilio),
}


def run_due() -> list[str]:
    """Probe each configured service not probed in the last minute; return the names probed."""
    probed = []
    for name, (missing, probe) in PROBES.items():
        if missing() or not _claim(name, timezone.now()):
            continue
        _record(name, _run(name, probe))
        probed.append(name)
    return probed


def _claim(name: str, now: datetime) -> bool:
    """Take this minute's probe of `name`; False when another worker already has."""
    IntegrationStatus.objects.get_or_create(name=name)
    due = Q(claimed_at__isnull=True) | Q(claimed_at__lte=now - PROBE_EVERY)
    return IntegrationStatus.objects.filter(due, name=name).update(claimed_at=now) == 1


def _run(name: str, probe: Callable[[], ProbeResult]) -> ProbeResult:
    try:
        return probe()
    except Exception as exc:
        # A bug in a probe must not stop the heartbeat that runs it.
        logger.exception("probe of %s crashed", name)
        return ProbeResult(False, f"probe failed: {type(exc).__name__}", ERROR)


def _record(name: str, result: ProbeResult) -> None:
    before = IntegrationStatus.objects.filter(name=name).values_list("ok", "detail").first()
    IntegrationStatus.objects.filter(name=name).update(
        ok=result.ok,
        problem=result.problem,
        detail=result.detail[:255],
        version=result.version[:64],
        checked_at=timezone.now(),
    )
    # Log changes only: a wrong token would otherwise fill the log once a minute.
    if before != (result.ok, result.detail[:255]):
        if result.ok:
            logger.info("%s: ok%s", name, f" ({result.version})" if result.version else "")
        else:
            logger.warning("%s: %s", name, result.detail)
