"""Signal handlers: a worker stamps its heartbeat, starts its beat and warms up as it starts."""

from __future__ import annotations

import logging
import multiprocessing
import os
from pathlib import Path

from django.apps import AppConfig
from django.db import DEFAULT_DB_ALIAS
from django.db.models.signals import post_migrate
from django.dispatch import receiver
from django_q.signals import post_spawn

logger = logging.getLogger(__name__)


@receiver(post_spawn)
def stamp_heartbeat_on_spawn(sender: object, proc_name: str, **kwargs: object) -> None:
    from registrations import beat, warmup
    from registrations.health import stamp_heartbeat

    _lower_priority()
    try:
        stamp_heartbeat()
    except Exception:  # a heartbeat must never stop a worker from starting
        logger.exception("could not stamp the worker heartbeat")
    try:
        beat.start()
    except Exception:  # without it, this worker's claims end by lease only, as before
        logger.exception("could not start the worker beat")
    warmup.worker()


def _lower_priority() -> None:
    """Let web requests go first when a class burst keeps every worker busy.

    A webhook waits on a student's phone while a task waits on nobody, and on a small machine
    the workers' CPU (a burst's provisioning) otherwise doubles the webhooks' latency.
    """
    from django.conf import settings

    if settings.WORKER_NICENESS > 0 and multiprocessing.parent_process() is not None:
        try:
            os.nice(settings.WORKER_NICENESS)
        except OSError:  # not allowed here: run at the normal priority
            logger.warning("could not lower the worker's CPU priority")
        _lower_own_session(settings.WORKER_NICENESS)


def _lower_own_session(niceness: int) -> None:
    """Lower the session's CPU share too when the session is the cluster's alone.

    Linux divides the CPU between sessions first (autogroups) and only then between a
    session's processes by niceness, so a worker's niceness counts only against a web server
    in its own session (`make run`). A qcluster started in a session of its own (`setsid`, as
    some supervisors do) competed with the web server as an equal, however nice its workers:
    then its session, which holds nothing but the cluster, is lowered as a whole.
    """
    try:
        sentinel = os.getppid()
        cluster = int(Path(f"/proc/{sentinel}/stat").read_text().rsplit(")", 1)[1].split()[1])
        if os.getsid(0) != cluster:
            return  # the session holds more than this cluster (make run's): leave it be
        Path("/proc/self/autogroup").write_text(str(niceness))
    except (OSError, ValueError, IndexError):  # not Linux, or no autogroups: niceness only
        return


@receiver(post_migrate)
def after_migrate(sender: object, app_config: AppConfig | None = None, **kwargs: object) -> None:
    """Once per migrate run, after our own app's migrations (django_q's tables exist by then):
    register the periodic jobs, and (re)install the seat check, so that the function always
    matches this code's count of seats."""
    if app_config is None or app_config.label != "registrations":
        return
    from registrations import enrollment
    from registrations.schedules import ensure_schedules

    ensure_schedules()
    enrollment.install_seat_check(str(kwargs.get("using", DEFAULT_DB_ALIAS)))
