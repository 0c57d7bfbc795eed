"""The job machinery every workflow shares: enqueue on commit, back off with jitter, lease.

The database row is the truth and the queue only a hint (DESIGN §10): a task is enqueued once
the transaction that made its row due commits, and the every-minute sweep re-drives any row
whose task was lost. These are the only places that talk to django-q2's `async_task`.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django_q.brokers import Broker, get_broker
from django_q.conf import Conf
from django_q.models import Success, Task
from django_q.tasks import async_task

# A retry delay is stretched by up to this much, so that a class that failed together (a rate
# limit, an outage) does not come back together.
JITTER = 0.25

# Who this process is when it claims a row: a worker's identity (registrations/liveness.py), or
# "" in a process that has none (web, commands, tests), whose claims only a lease ends.
_owner = ""


def current_owner() -> str:
    """Return the identity this process writes into `claimed_by` when it claims a row."""
    return _owner


def set_owner(owner: str) -> None:
    """Take on a worker identity; set only once its heartbeat row exists (claims check it)."""
    global _owner
    _owner = owner


def enqueue_on_commit(task: str, *args: int) -> None:
    """Queue `task(*args)` once the current transaction commits (at once outside one).

    Arguments are primary keys only: django-q2 pickles and stores them, and shows them in
    admin. `robust`: a broker hiccup after commit must not turn a webhook into a 500; the row
    is saved, and the sweep re-drives rows whose task never arrived.
    """
    transaction.on_commit(functools.partial(_enqueue, task, args), robust=True)


def _enqueue(task: str, args: tuple[int, ...]) -> None:
    # The broker is looked up here, after the commit: a process's first one imports and
    # builds a Redis client, which must not happen while the webhook holds its session's lock.
    async_task(task, *args, broker=broker())


def broker() -> Broker:
    """This process's broker, made on first use (registrations.warmup makes it at start)."""
    return _broker(*_broker_key())


def _broker_key() -> tuple[str, str, str]:
    return str(Conf.CLUSTER_NAME), str(Conf.ORM), str(Conf.REDIS)


@functools.lru_cache(maxsize=4)
def _broker(cluster: str, orm: str, redis: str) -> Broker:
    """One broker per process (per configuration), shared by every enqueue.

    async_task makes a new one unless given one: with Redis that is a new client, so a new
    connection (and its handshake) for every task, most of what an enqueue cost the webhook.
    A Redis client is thread-safe and pools its connections; the ORM broker holds none.
    """
    return get_broker()


def backoff(
    attempts: int,
    base: timedelta,
    cap: timedelta,
    *,
    at_least: float | None = None,
) -> timedelta:
    """The pause before retry number `attempts` (1, 2, ...): doubling from `base` up to `cap`.

    `at_least` (seconds, e.g. a Retry-After) lengthens it; jitter is added last.
    """
    delay = base
    # Doubled step by step up to the cap: an outage retried for hours counts hundreds of
    # attempts, and base * 2**attempts would overflow timedelta.
    for _ in range(max(0, attempts - 1)):
        if delay >= cap:
            break
        delay *= 2
    delay = min(delay, cap)
    if at_least:
        delay = max(delay, timedelta(seconds=at_least))
    return delay * random.uniform(1.0, 1.0 + JITTER)


def task_lease() -> timedelta:
    """How long a row claimed by a running task stays claimed.

    django-q2 kills a task after `timeout` seconds: a lease that outlives it means the worker
    died, and the sweep may hand the row to another one.
    """
    return timedelta(seconds=settings.Q_CLUSTER.get("timeout", 60) + 30)


def lease_and_enqueue(
    rows: QuerySet[Any],
    candidates: Iterable[tuple[int, datetime | None]],
    task: str,
    lease_until: datetime | None,
) -> int:
    """Claim each candidate row and enqueue `task(pk)` for the ones this caller won.

    Each candidate is a (pk, next_attempt_at as read) pair; the claim is a conditional update
    of `next_attempt_at` to `lease_until` (None: "a task is on its way"), so two sweeps never
    enqueue one row twice and a worker that claimed it meanwhile keeps it.
    """
    won = 0
    for pk, seen in candidates:
        if rows.filter(pk=pk, next_attempt_at=seen).update(next_attempt_at=lease_until):
            enqueue_on_commit(task, pk)
            won += 1
    return won


def prune_task_results(keep: int) -> int:
    """Delete the records of successful tasks but the newest `keep` (0: keep all); count them.

    django-q2's own pruning (its `save_limit`) locks and loads every saved success each time it
    saves one, in the cluster's one monitor process: in a class burst that was as much CPU as
    the tasks themselves. The scheduled sweep does it here instead, in two statements, once a
    minute (not the beat's sweeps every few seconds: the task table has no index on
    `stopped`, so each look is a scan).
    """
    if keep <= 0:
        return 0
    newest = Success.objects.order_by("-stopped").values_list("stopped", flat=True)
    cutoff = next(iter(newest[keep - 1 : keep]), None)
    if cutoff is None:
        return 0
    deleted: int = Task.objects.filter(success=True, stopped__lt=cutoff).delete()[0]
    return deleted
