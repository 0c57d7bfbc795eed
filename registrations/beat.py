"""The thread every qcluster worker process runs beside its tasks (started by signals).

Every WORKER_BEAT_SECONDS it stamps the worker's heartbeat (registrations/liveness.py). When
some worker has stopped beating it runs the sweep at once, which hands on what the dead worker
held; and one worker of the fleet at a time runs the sweep every WORKER_SWEEP_SECONDS, the
first time as its cluster starts. So a killed worker's students, due retries and deletion
steps never wait for django-q2's scheduler, which runs a one-minute job 30-90 s late and the
first time about 30 s after a cluster starts. The scheduled sweep stays, as a backstop.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import multiprocessing.util
import threading
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connections
from django.utils import timezone

from registrations import jobs, liveness, maintenance

logger = logging.getLogger(__name__)

_thread: threading.Thread | None = None
# Held while a sweep runs: a beat never starts a second one beside it.
_sweeping = threading.Lock()


def start() -> None:
    """Name this worker process and start its beat thread (once per process)."""
    global _thread
    # Only in a qcluster worker, a child of its cluster: never in web processes, commands or
    # tests, which have no thread to keep their claims alive.
    if _thread is not None or multiprocessing.parent_process() is None:
        return
    if settings.WORKER_BEAT_SECONDS <= 0:
        return
    # Registered before the worker takes its first task: claims may name only beating workers.
    jobs.set_owner(liveness.register())
    # A clean exit (recycled, or its cluster stopping) leaves nothing for others to recover.
    multiprocessing.util.Finalize(None, _forget, exitpriority=10)
    _thread = threading.Thread(target=_run, name="worker-beat", daemon=True)
    _thread.start()


def _forget() -> None:
    if owner := jobs.current_owner():
        try:
            liveness.forget(owner)
        except Exception:  # the process is exiting: its beat then just goes stale
            logger.warning("could not drop the heartbeat of %s", owner)


def _run() -> None:
    while True:
        # This thread's own connection: reopened when it broke or outlived CONN_MAX_AGE.
        close_old_connections()
        try:
            beat(timezone.now())
        except Exception:  # a failed beat must never end the thread
            logger.exception("worker beat failed")
        time.sleep(settings.WORKER_BEAT_SECONDS)


def beat(now: datetime) -> threading.Thread | None:
    """Stamp this worker's heartbeat; sweep when a worker died or it is this one's turn.

    Returns the thread of a sweep it started.
    """
    owner = jobs.current_owner()
    if not owner or not liveness.stamp(owner, now):
        # Never registered, or buried after stalling too long: its claims were handed on, so
        # it carries on under a new name.
        jobs.set_owner(liveness.register(now))
    every = timedelta(seconds=settings.WORKER_SWEEP_SECONDS)
    turn = bool(every) and liveness.claim_sweep(now, every)
    if not (turn or liveness.someone_died(now)):
        return None
    return _sweep_aside(now)


def _sweep_aside(now: datetime) -> threading.Thread | None:
    """Sweep in a thread of its own: however long a sweep takes, the beats go on.

    A worker whose beats waited for a slow sweep would look dead, and lose its rows.
    """
    if not _sweeping.acquire(blocking=False):
        return None  # the last sweep is still running
    sweeper = threading.Thread(target=_sweep, args=(now,), name="worker-sweep", daemon=True)
    sweeper.start()
    return sweeper


def _sweep(now: datetime) -> None:
    try:
        maintenance.sweep(now, batch=sweep_batch(), prune_results=False)
    except Exception:  # the next beat tries again
        logger.exception("worker sweep failed")
    finally:
        connections.close_all()  # this thread's own, which ends here
        _sweeping.release()


def sweep_batch() -> int | None:
    """Deletions one worker sweep sends: CLEANUP_BATCH_SIZE per 30 s, as the scheduled runs."""
    if settings.WORKER_SWEEP_SECONDS <= 0:
        return None
    share: float = settings.CLEANUP_BATCH_SIZE * settings.WORKER_SWEEP_SECONDS / 30
    return max(1, math.ceil(share))
