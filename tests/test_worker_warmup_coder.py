"""A worker asks Coder what its first provisioning would, as it spawns (registrations/warmup.py).

Each of a cluster's workers otherwise spent its first student asking for the organization's
id and the session's template: two more Coder round trips each, all at a burst's start, and
again in a worker recycled in the middle of one. Checked against the fake Coder: what reached
it during the warm-up, and that provisioning's own lookups then reach it no more.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from registrations import coder, session_lifecycle, warmup
from tests.conftest import make_session

# Committed rows: a worker's warm-up thread reads the sessions over its own connection.
# serialized_rollback: restore what migrations created (groups, schedules) for later tests.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)


@pytest.fixture(autouse=True)
def fresh_lookups():
    coder.reset_clients()
    session_lifecycle._found_templates.clear()
    yield
    coder.reset_clients()
    session_lifecycle._found_templates.clear()


def warm_worker() -> None:
    # What a spawned worker runs on a thread of its own (warmup.worker); here, in this thread.
    warmup.coder_lookups()


def template_queries(fake_coder) -> list[str]:
    return [q for r in fake_coder.requests("GET", "/api/v2/templates") for q in r.query["q"]]


def test_a_worker_resolves_the_organization_and_the_enrolling_templates(fake_coder, classroom):
    fake_coder.add_template("python-lab")
    fake_coder.add_template("rust-lab")
    now = timezone.now()
    make_session(classroom, "python lab", coder_template="python-lab")
    make_session(  # opens within the minute: its students text any moment now
        classroom,
        "rust lab",
        coder_template="rust-lab",
        opens_at=now + timedelta(seconds=30),
        closes_at=now + timedelta(hours=1),
    )

    warm_worker()

    assert len(fake_coder.requests("GET", "/api/v2/organizations")) == 1
    assert sorted(template_queries(fake_coder)) == ["exact_name:python-lab", "exact_name:rust-lab"]
    # What provisioning asks next is known: nothing more reaches Coder for it.
    fake_coder.clear_log()
    client = coder.get_client()
    assert client.resolve_organization_id(None)
    assert session_lifecycle.find_template_for_workspace("python-lab").name == "python-lab"
    assert fake_coder.requests_log == []


def test_sessions_not_enrolling_soon_are_not_looked_up(fake_coder, classroom):
    fake_coder.add_template("later-lab")
    now = timezone.now()
    make_session(classroom, "no template")
    make_session(
        classroom,
        "later",
        coder_template="later-lab",
        opens_at=now + timedelta(hours=2),
        closes_at=now + timedelta(hours=3),
        expires_at=now + timedelta(hours=4),
    )
    make_session(
        classroom,
        "over",
        coder_template="later-lab",
        opens_at=now - timedelta(hours=2),
        closes_at=now - timedelta(hours=1),
        expires_at=now + timedelta(hours=1),
    )

    warm_worker()

    assert template_queries(fake_coder) == []
    assert len(fake_coder.requests("GET", "/api/v2/organizations")) == 1


def test_a_coder_that_does_not_answer_leaves_the_worker_to_start(settings, classroom, caplog):
    # Nothing listens there: the lookups fail on their thread, logged, and the worker goes on.
    settings.CODER_URL = "http://127.0.0.1:9"
    settings.CODER_SESSION_TOKEN = "token"
    settings.CODER_TIMEOUT = 1
    make_session(classroom, "python lab", coder_template="python-lab")

    warm_worker()  # no error: the worker starts all the same

    assert "could not warm this process up" in caplog.text


def test_without_coder_settings_nothing_is_asked(settings, classroom, caplog):
    settings.CODER_URL = ""
    settings.CODER_SESSION_TOKEN = ""

    warm_worker()

    assert "could not warm" not in caplog.text


def test_only_a_spawned_worker_asks_coder_on_a_thread_of_its_own(fake_coder, classroom):
    # A post_spawn sent in this process (tests do) must not leave a thread asking Coder
    # while later tests run.
    warmup.worker()

    assert not any(t.name == "warm-coder" for t in threading.enumerate())
    assert fake_coder.requests_log == []
