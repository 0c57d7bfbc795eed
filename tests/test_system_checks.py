"""System checks warn about missing Twilio/Coder settings without stopping the app."""

from __future__ import annotations

import re

from registrations.checks import check_integrations


def ids(warnings) -> set[str]:
    return {warning.id for warning in warnings}


def test_missing_twilio_and_coder_settings_are_warnings(settings):
    settings.TWILIO_ACCOUNT_SID = settings.TWILIO_AUTH_TOKEN = ""
    settings.CODER_URL = settings.CODER_SESSION_TOKEN = ""
    warnings = check_integrations()
    assert {"registrations.W001", "registrations.W002"} <= ids(warnings)
    assert all(warning.level == 30 for warning in warnings)  # WARNING, never ERROR


def test_warning_names_the_missing_variables(settings):
    settings.TWILIO_ACCOUNT_SID = "AC123"
    settings.TWILIO_AUTH_TOKEN = ""
    settings.TWILIO_FROM_NUMBER = ""
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    (twilio,) = [w for w in check_integrations() if w.id == "registrations.W001"]
    assert "TWILIO_AUTH_TOKEN" in twilio.msg
    assert "TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID" in twilio.msg
    assert "TWILIO_ACCOUNT_SID" not in twilio.msg


def test_fully_configured_app_has_no_integration_warnings(settings):
    settings.TWILIO_ACCOUNT_SID = "AC123"
    settings.TWILIO_AUTH_TOKEN = "token"
    settings.TWILIO_MESSAGING_SERVICE_SID = "MG123"
    settings.CODER_URL = "https://coder.example.edu"
    settings.CODER_SESSION_TOKEN = "token"
    settings.PUBLIC_BASE_URL = "https://sms.example.edu"
    assert check_integrations() == []


def test_the_command_running_is_read_from_manage_py_argv():
    from registrations.checks import running_command

    assert running_command(["manage.py", "migrate", "--noinput"]) == "migrate"
    assert running_command(["/srv/app/manage.py", "check", "--deploy"]) == "check"
    assert running_command(["/usr/lib/python3/site-packages/django/__main__.py", "qcluster"]) == (
        "qcluster"
    )
    assert running_command(["/usr/bin/gunicorn", "classroom_sms.wsgi"]) is None
    assert running_command(["pytest"]) is None


def test_only_check_and_runserver_repeat_the_integration_warnings(tmp_path):
    """`manage.py migrate` (and qcluster, collectstatic...) stay quiet; `check` says it all."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
        "ENV_FILE": "",
        "DEBUG": "1",
        "SECRET_KEY": "checks-test",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": "",
        **{name: "" for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", "CODER_URL",
                                 "CODER_SESSION_TOKEN", "PUBLIC_BASE_URL")},
    }

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=root, env=env, capture_output=True,
            text=True, timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout + done.stderr

    assert "registrations.W00" not in manage("migrate", "--noinput")
    reported = manage("check")
    assert {"registrations.W001", "registrations.W002", "registrations.W003"} <= set(
        re.findall(r"registrations\.W00\d", reported)
    )
