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
print(json.dumps({"before": before, "after": after,
                  "broker_made": jobs._broker.cache_info().currsize}))
"""


def warmed(kind: str, **env: str) -> dict:
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
        [sys.executable, "-c", PROBE, kind],
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
