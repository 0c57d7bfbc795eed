"""Which worker processes are alive, and handing on at once what a dead one held.

Every qcluster worker process takes a name when it starts (`register`), stamps a heartbeat row
under that name every WORKER_BEAT_SECONDS from a thread of its own (registrations/beat.py), and
writes the name into `Account.claimed_by` whenever it claims a row. A worker that has not
stamped for WORKER_DEAD_AFTER_SECONDS is dead (killed, or its machine gone): `recover` buries it
and makes what it held due at once, instead of leaving the rows to wait out their leases (the
task timeout and more). A worker that is slow but alive keeps beating, so it keeps its rows.

Why a live worker's claim is never handed on: its heartbeat row is committed before it claims
anything, and `recover` reads the claims before it reads the heartbeats. Clocks: beats and
their ages come from each machine's clock, so the machines must keep time (NTP).
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError
from django.utils import timezone

from registrations import deletion, provisioning
from registrations.models import Account, Heartbeat

logger = logging.getLogger(__name__)

# Heartbeat rows of worker processes are named "worker/<host>/<pid>/<random>".
PREFIX = "worker/"
# The heartbeat row whose time says when a worker last started a sweep.
SWEEP_LEASE = "sweep"


@dataclass(frozen=True)
class Recovery:
    """What one `recover` did."""

    released: int = 0  # rows handed on
    buried: int = 0  # workers found dead by this call


def dead_after() -> timedelta:
    return timedelta(seconds=settings.WORKER_DEAD_AFTER_SECONDS)


def register(now: datetime | None = None) -> str:
    """Create a heartbeat row for this process and return its name ("" if the database failed).

    Without a name, the process's claims end only when their leases do, as before.
    """
    name = f"{PREFIX}{socket.gethostname()[:24]}/{os.getpid()}/{secrets.token_hex(4)}"
    try:
        Heartbeat.objects.create(name=name, beat_at=now or timezone.now())
    except DatabaseError:
        logger.warning("worker heartbeat not registered; its claims end by lease only")
        return ""
    return name


def stamp(owner: str, now: datetime | None = None) -> bool:
    """Stamp a worker's heartbeat; False when it was buried meanwhile (it stalled too long)."""
    return Heartbeat.objects.filter(name=owner).update(beat_at=now or timezone.now()) == 1


def forget(owner: str) -> None:
    """Drop the heartbeat of a worker that stops cleanly: nothing of it needs recovering."""
    Heartbeat.objects.filter(name=owner).delete()


def someone_died(now: datetime) -> bool:
    """Say whether some worker has stopped beating (a cheap look at a tiny table)."""
    stale = now - dead_after()
    return Heartbeat.objects.filter(name__startswith=PREFIX, beat_at__lte=stale).exists()


def recover(now: datetime) -> Recovery:
    """Bury the workers that stopped beating and hand on the rows held by any worker not alive.

    "Not alive" includes a name with no heartbeat row at all: a worker buried earlier, or one
    whose burier died before handing its rows on.
    """
    holders = set(
        Account.objects.exclude(claimed_by="").values_list("claimed_by", flat=True).distinct()
    )
    buried = _bury(now - dead_after())
    alive = set(Heartbeat.objects.filter(name__in=holders).values_list("name", flat=True))
    released = 0
    for owner in sorted(holders - alive):
        released += provisioning.release_claims(owner, now)
        released += deletion.release_claims(owner, now)
    if released:
        logger.warning("handed on %d rows held by workers that stopped", released)
    return Recovery(released=released, buried=buried)


def _bury(cutoff: datetime) -> int:
    """Delete the heartbeats older than `cutoff`; count the ones this call deleted."""
    stale = Heartbeat.objects.filter(name__startswith=PREFIX, beat_at__lte=cutoff)
    buried = 0
    for name in list(stale.values_list("name", flat=True)):
        # Still stale: a worker that stamped since the look above is alive after all.
        deleted, _ = Heartbeat.objects.filter(name=name, beat_at__lte=cutoff).delete()
        if deleted:
            logger.warning("worker %s stopped beating; handing on what it held", name)
            buried += 1
    return buried


def claim_sweep(now: datetime, every: timedelta) -> bool:
    """Say whether this worker runs the sweep now: one worker of the fleet, once per `every`."""
    lease = Heartbeat.objects.filter(name=SWEEP_LEASE, beat_at__lte=now - every)
    if lease.update(beat_at=now):
        return True
    _, created = Heartbeat.objects.get_or_create(name=SWEEP_LEASE, defaults={"beat_at": now})
    return created
