"""Signal handlers: a worker stamps its heartbeat, starts its beat and warms up as it starts."""

from __future__ import annotations

import logging

from django.apps import AppConfig
from django.db import DEFAULT_DB_ALIAS
from django.db.models.signals import post_migrate
from django.dispatch import receiver
from django_q.signals import post_spawn

logger = logging.getLogger(__name__)


@receiver(post_spawn)
def stamp_heartbeat_on_spawn(sender: object, proc_name: str, **kwargs: object) -> None:
    from django.conf import settings

    from registrations import beat, cpu_priority, warmup
    from registrations.health import stamp_heartbeat

    cpu_priority.lower_worker_priority(settings.WORKER_NICENESS)
    try:
        stamp_heartbeat()
    except Exception:  # a heartbeat must never stop a worker from starting
        logger.exception("could not stamp the worker heartbeat")
    try:
        beat.start()
    except Exception:  # without it, this worker's claims end by lease only, as before
        logger.exception("could not start the worker beat")
    warmup.worker()
    warmup.freeze_heap()


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
