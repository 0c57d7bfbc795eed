"""One-off costs paid as a process starts, not by the first students of a class burst.

Much of what a process does only once is done lazily by its first request or task: importing
Redis's client (150 ms of CPU) when the first enrolment enqueues its task, importing Twilio's
REST API (80 ms) at the first credentials SMS, loading the students' translation catalogues.
A class burst is when every web process and every worker meets these at the same moment, on
the same cores, while students wait; so each process does them as it starts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.urls import resolve, reverse
from django.utils import translation

from registrations import jobs, sms_transport

logger = logging.getLogger(__name__)


def web() -> None:
    """Warm a web process (classroom_sms/wsgi.py): the webhook's URL, broker and languages."""
    _guarded(_web)


def worker() -> None:
    """Warm a django-q2 worker (registrations/signals.py, as it spawns)."""
    _guarded(_worker)


def _web() -> None:
    resolve(reverse("twilio-sms"))  # loads the URLconf and imports the views
    jobs.broker()
    _languages()


def _worker() -> None:
    sms_transport.preload()
    jobs.broker()
    _languages()


def _languages() -> None:
    # A language's catalogue is merged from every app's on its first use in a process.
    for code, _ in settings.STUDENT_LANGUAGES:
        with translation.override(code):
            translation.gettext("Password")


def _guarded(warm: Callable[[], None]) -> None:
    try:
        warm()
    except Exception:  # a cold process is only slower at its first request or task
        logger.exception("could not warm this process up")
