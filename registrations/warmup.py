"""One-off costs paid as a process starts, not by the first students of a class burst.

Much of what a process does only once is done lazily by its first request or task: importing
Redis's client (150 ms of CPU) when the first enrolment enqueues its task, importing Twilio's
REST API (80 ms) at the first credentials SMS, loading the students' translation catalogues.
A class burst is when every web process and every worker meets these at the same moment, on
the same cores, while students wait; so each process does them as it starts. The same goes for
each thread's database connection (a new server process on PostgreSQL): a web process starts
all its threads with theirs open (gunicorn.conf.py), a worker opens its own as it spawns.

A worker also meets Coder before its first task: it builds its Coder and Twilio clients and,
on a thread of its own so that no task waits for it, asks Coder for the organization's id
(remembered for the process's life) and the templates of the sessions enrolling now
(remembered for a minute). Without it each of a cluster's workers spent its first student
asking, two more Coder round trips and some 15 ms more CPU than its next, all at the start of
a burst, and a worker recycled in the middle of one did the same.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import Executor, wait
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.urls import resolve, reverse
from django.utils import timezone, translation

from registrations import coder, jobs, provisioning, session_lifecycle, sms_transport
from registrations.checks import missing_twilio_settings
from registrations.models import Session

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


# Enough for the classes of one deployment's busiest hour; each is one GET /templates.
WARM_TEMPLATES = 10


def _worker() -> None:
    sms_transport.preload()
    jobs.broker()
    _languages()
    _outbound_clients()
    if multiprocessing.parent_process() is not None:  # a cluster's worker, not a test's call
        lookups = threading.Thread(target=_coder_lookups_thread, name="warm-coder")
        lookups.daemon = True
        lookups.start()
    connection.ensure_connection()  # a database still starting fails only this and the rest
    provisioning.warm_up()


def _outbound_clients() -> None:
    try:
        coder.get_client()
    except coder.CoderNotConfigured:
        pass
    if not missing_twilio_settings():
        sms_transport.get_client().messages  # noqa: B018 (twilio builds its API on first use)


def _coder_lookups_thread() -> None:
    try:
        coder_lookups()
    finally:
        connection.close()  # the thread's own, opened by the sessions' query: it ends here


def coder_lookups() -> None:
    """Ask Coder what a worker's first provisioning would: its organization, the templates."""
    _guarded(_coder_lookups)


def _coder_lookups() -> None:
    try:
        client = coder.get_client()
    except coder.CoderNotConfigured:
        return
    client.resolve_organization_id(settings.CODER_ORGANIZATION or None)
    for name in enrolling_templates():
        session_lifecycle.find_template_for_workspace(name)


def enrolling_templates() -> list[str]:
    """The templates named by sessions whose enrollment is open now or opens within a minute."""
    now = timezone.now()
    names = (
        Session.objects.filter(
            ended_at__isnull=True,
            opens_at__lte=now + timedelta(minutes=1),
            closes_at__gt=now,
        )
        .exclude(coder_template="")
        .values_list("coder_template", flat=True)
        .distinct()[:WARM_TEMPLATES]
    )
    return sorted({name.strip() for name in names if name.strip()})


def freeze_heap() -> None:
    """Leave what a warmed-up process holds out of Python's full garbage collections.

    The modules, classes and caches a process loads as it starts (Django, our app, the
    clients: some 100,000 objects) live as long as the process, yet each full collection
    walked them all again: 50-70 ms holding the GIL, so every request thread of the process
    stopped with it. The first ones fell in a class burst's first second, when the burst's
    own objects tipped the count over. Collected once, then frozen (gc.freeze: never scanned
    again), a full collection walks only what the process made since.
    """
    gc.collect()
    gc.freeze()


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
