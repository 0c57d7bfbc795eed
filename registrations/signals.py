"""Signal handlers: a worker stamps its heartbeat, starts its beat and warms up as it starts."""

from __future__ import annotations

import logging
import multiprocessing
import os

from django.apps import AppConfig
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


@receiver(post_migrate)
def register_periodic_jobs(
    sender: object, app_config: AppConfig | None = None, **kwargs: object
) -> None:
    # Only once per migrate run, after our own app's migrations (django_q's tables exist by then).
    if app_config is None or app_config.label != "registrations":
        return
    from registrations.schedules import ensure_schedules

    ensure_schedules()
