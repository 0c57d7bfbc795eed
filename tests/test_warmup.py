"""Web processes and workers pay their one-off costs as they start, not at a class burst.

Each check runs a fresh Python process (what a gunicorn worker or a django-q2 worker is) and
looks at what it has loaded before and after warming up: Redis's client for the broker the
webhook enqueues on, Twilio's REST API for the credentials SMS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

PROBE = """
import json, sys
import django
django.setup()
watched = ("redis", "twilio.rest.api.v2010.account.message")
before = {name: name in sys.modules for name in watched}
from registrations import jobs, warmup
getattr(warmup, sys.argv[1])()
after = {name: name in sys.modules for name in watched}
from django.db import connection
print(json.dumps({"before": before, "after": after,
                  "broker_made": jobs._broker.cache_info().currsize,
                  "connected": connection.connection is not None}))
"""

# gunicorn.conf.py's hook, given a gthread worker's pool of 4 request threads; then 4 tasks, one
# per thread (each waits for the others), report whether their thread's connection was open.
THREADS_PROBE = """
import json, runpy, threading
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
import django
django.setup()
from django.db import connection
pool = ThreadPoolExecutor(max_workers=4)
hooks = runpy.run_path("gunicorn.conf.py")
import gc, os
frozen_before = gc.get_freeze_count()
worker = SimpleNamespace(tpool=pool, cfg=SimpleNamespace(threads=4), ppid=os.getppid())
hooks["post_worker_init"](worker)
frozen = gc.get_freeze_count() - frozen_before
started = len(pool._threads)
together = threading.Barrier(4, timeout=10)
def report():
    was_open = connection.connection is not None
    together.wait()
    return [threading.get_ident(), was_open]
seen = [f.result() for f in [pool.submit(report) for _ in range(4)]]
print(json.dumps({"started": started, "threads": len({t for t, _ in seen}),
                  "open": [o for _, o in seen], "frozen": frozen}))
"""


def warmed(kind: str, probe: str = PROBE, **env: str) -> dict:
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "classroom_sms.settings",
        "ENV_FILE": "",
        "SECRET_KEY": "warmup-test",
        "DATABASE_URL": "sqlite:///:memory:",
        "REDIS_URL": "",
        **env,
    }
    done = subprocess.run(
        [sys.executable, "-c", probe, kind],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_web_process_makes_its_redis_broker_before_the_first_enrolment():
    found = warmed("web", REDIS_URL="redis://127.0.0.1:6379/5")

    assert found["before"]["redis"] is False
    assert found["after"]["redis"] is True
    assert found["broker_made"] == 1


def test_a_worker_imports_twilios_api_before_its_first_sms():
    found = warmed("worker")

    assert found["before"]["twilio.rest.api.v2010.account.message"] is False
    assert found["after"]["twilio.rest.api.v2010.account.message"] is True
    assert found["broker_made"] == 1


def test_a_worker_opens_its_database_connection_as_it_spawns(tmp_path):
    found = warmed("worker", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")

    assert found["connected"] is True


def test_every_web_thread_starts_with_its_database_connection_open(tmp_path):
    found = warmed("", THREADS_PROBE, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")

    # All four started before any request, not one at a time as requests queue up.
    assert found["started"] == 4
    assert found["threads"] == 4
    assert found["open"] == [True, True, True, True]


def test_a_web_process_leaves_what_it_loaded_out_of_full_collections(tmp_path):
    # A full collection walked Django's ~100,000 objects at every one: 50-70 ms holding the
    # GIL, the first ones in a class burst's first second.
    found = warmed("", THREADS_PROBE, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")

    assert found["frozen"] > 50_000


def test_a_web_process_warms_up_as_gunicorn_loads_the_application():
    code = "import classroom_sms.wsgi, sys; from registrations import jobs; " \
           "print(jobs._broker.cache_info().currsize)"  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={**os.environ, "ENV_FILE": "", "SECRET_KEY": "warmup-test",
             "DATABASE_URL": "sqlite:///:memory:", "REDIS_URL": ""},  # fmt: skip
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "1"
