"""Successful task records are kept to Q_SAVE_LIMIT by the sweep, not by django-q2 per task.

django-q2's own pruning locked and loaded every saved success each time it saved one; the
cluster saves them unpruned (save_limit 0) and the sweep deletes all but the newest.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from django_q.models import Task

from registrations import jobs, maintenance

pytestmark = pytest.mark.django_db


def record(name: str, minutes_ago: int, *, success: bool = True) -> None:
    stopped = timezone.now() - timedelta(minutes=minutes_ago)
    Task.objects.create(
        id=name, name=name, func="math.floor", started=stopped, stopped=stopped, success=success
    )


def names(**filters: object) -> set[str]:
    return set(Task.objects.filter(**filters).values_list("name", flat=True))


def test_the_cluster_saves_successes_without_pruning_them_itself():
    assert settings.Q_CLUSTER["save_limit"] == 0
    assert settings.Q_SAVE_LIMIT == 1000


def test_the_newest_successes_are_kept_and_the_older_deleted():
    for n in range(6):
        record(f"ok-{n}", minutes_ago=n)

    assert jobs.prune_task_results(4) == 2
    assert names() == {"ok-0", "ok-1", "ok-2", "ok-3"}


def test_failures_are_never_pruned():
    record("failed-old", minutes_ago=60, success=False)
    for n in range(3):
        record(f"ok-{n}", minutes_ago=n)

    assert jobs.prune_task_results(1) == 2
    assert names() == {"ok-0", "failed-old"}


def test_fewer_than_the_limit_and_zero_keep_everything():
    for n in range(3):
        record(f"ok-{n}", minutes_ago=n)

    assert jobs.prune_task_results(5) == 0
    assert jobs.prune_task_results(0) == 0
    assert len(names()) == 3


def test_the_sweep_prunes_to_the_setting(settings):
    settings.Q_SAVE_LIMIT = 2
    for n in range(5):
        record(f"ok-{n}", minutes_ago=n)

    maintenance.sweep()

    assert names(success=True) == {"ok-0", "ok-1"}


def test_the_beats_frequent_sweeps_leave_them_to_the_scheduled_one(settings):
    settings.Q_SAVE_LIMIT = 2
    for n in range(5):
        record(f"ok-{n}", minutes_ago=n)

    maintenance.sweep(prune_results=False)

    assert len(names(success=True)) == 5
