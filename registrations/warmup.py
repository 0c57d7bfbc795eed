"""One-off costs paid as a process starts, not by the first students of a class burst.

Much of what a process does only once is done lazily by its first request or task: importing
Redis's client (150 ms of CPU) when the first enrolment enqueues its task, importing Twilio's
REST API (80 ms) at the first credentials SMS, loading the students' translation catalogues.
A class burst is when every web process and every worker meets these at the same moment, on
the same cores, while students wait; so each process does them as it starts. The same goes for
each thread's database connection (a new server process on PostgreSQL): a web process starts
all its threads with theirs open (gunicorn.conf.py), a worker opens its own as it spawns.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Executor, wait

from django.conf import settings
from django.db import connection
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


def web_threads(pool: Executor, threads: int) -> None:
    """Start each of a web process's `threads` request threads with its connection open.

    Each waits at a barrier until all have started, so every submit finds no idle thread and
    the pool starts a new one: otherwise it starts them only as requests queue up, in a burst.
    """
    ready = threading.Barrier(threads, timeout=10)

    def warm() -> None:
        try:
            connection.ensure_connection()
        finally:
            try:
                ready.wait()
            except threading.BrokenBarrierError:
                pass

    done, _ = wait([pool.submit(_guarded, warm) for _ in range(threads)], timeout=20)
    if len(done) < threads:
        logger.warning("only %s of %s web threads warmed up", len(done), threads)


def _worker() -> None:
    sms_transport.preload()
    jobs.broker()
    _languages()
    connection.ensure_connection()  # last: a database still starting fails only this


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
