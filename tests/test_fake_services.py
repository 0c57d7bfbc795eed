"""`make fake-services`: both fakes run, print the settings that point the app at them, and the
fake Twilio shows its inbox; then README's "Try it locally" walk, command by command."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.e2e.harness import free_port, wait_for
from tests.fakes.coder import DEFAULT_ORG_ID, DEFAULT_TOKEN
from tests.fakes.twilio import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, FakeTwilio
from tests.student import credentials_from_sms, log_in

ROOT = Path(__file__).resolve().parent.parent
SETTING_NAMES = [
    "CODER_URL",
    "CODER_SESSION_TOKEN",
    "TWILIO_API_BASE_URL",
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_FROM_NUMBER",
    "PUBLIC_BASE_URL",
]
EXPORT = re.compile(r"^export ([A-Z_]+)=(\S+)$", re.MULTILINE)


def send_sms(twilio_url: str, to: str, body: str) -> requests.Response:
    """What the app's Twilio client does: create a Message with basic auth."""
    return requests.post(
        f"{twilio_url}/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages.json",
        data={"To": to, "From": "+15005550006", "Body": body},
        auth=(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN),
        timeout=10,
    )


@pytest.fixture
def fake_services(tmp_path: Path) -> Iterator[dict]:
    """`python -m tests.fakes.services` (what `make fake-services` runs) on free ports."""
    ports = {"coder": free_port(), "twilio": free_port(), "app": free_port()}
    env_file = tmp_path / "fake-services.env"
    log = tmp_path / "fake-services.log"
    with open(log, "wb") as out:
        popen = subprocess.Popen(
            [
                sys.executable, "-m", "tests.fakes.services",
                "--coder-port", str(ports["coder"]),
                "--twilio-port", str(ports["twilio"]),
                "--app-url", f"http://127.0.0.1:{ports['app']}",
                "--env-file", str(env_file),
            ],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        wait_for(lambda: "Ctrl-C stops both" in log.read_text(), timeout=30, what="the banner")
        printed = dict(EXPORT.findall(log.read_text()))
        yield {"popen": popen, "ports": ports, "settings": printed, "env_file": env_file,
               "log": log}
    finally:
        if popen.poll() is None:
            os.killpg(popen.pid, signal.SIGTERM)
            popen.wait(timeout=10)


def test_fake_services_print_the_settings_and_write_them_for_source(fake_services):
    ports, printed = fake_services["ports"], fake_services["settings"]
    assert list(printed) == SETTING_NAMES
    assert printed == {
        "CODER_URL": f"http://127.0.0.1:{ports['coder']}",
        "CODER_SESSION_TOKEN": DEFAULT_TOKEN,
        "TWILIO_API_BASE_URL": f"http://127.0.0.1:{ports['twilio']}",
        "TWILIO_ACCOUNT_SID": DEFAULT_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": DEFAULT_AUTH_TOKEN,
        "TWILIO_FROM_NUMBER": "+15005550006",
        "PUBLIC_BASE_URL": f"http://127.0.0.1:{ports['app']}",
    }
    assert dict(EXPORT.findall(fake_services["env_file"].read_text())) == printed
    assert f"http://127.0.0.1:{ports['twilio']}/inbox" in fake_services["log"].read_text()
    # Both answer: Coder's build info, and the Twilio account with the printed credentials.
    coder = requests.get(printed["CODER_URL"] + "/api/v2/buildinfo", timeout=5)
    assert coder.status_code == 200
    account = requests.get(
        f"{printed['TWILIO_API_BASE_URL']}/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}.json",
        auth=(DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN),
        timeout=5,
    )
    assert account.json()["status"] == "active"


def test_the_fake_twilio_inbox_lists_what_was_sent_newest_first(fake_services):
    twilio = fake_services["settings"]["TWILIO_API_BASE_URL"]
    assert requests.get(twilio + "/inbox.json", timeout=5).json() == {"messages": []}
    assert send_sms(twilio, "+14155550123", "first").status_code == 201
    assert send_sms(twilio, "+14155550124", "Email: a@lab.invalid\nPassword: <b>x</b>").ok

    messages = requests.get(twilio + "/inbox.json", timeout=5).json()["messages"]
    assert [(m["to"], m["body"]) for m in messages] == [
        ("+14155550124", "Email: a@lab.invalid\nPassword: <b>x</b>"),
        ("+14155550123", "first"),
    ]
    page = requests.get(twilio + "/inbox", timeout=5)
    assert page.headers["Content-Type"].startswith("text/html")
    assert "Fake Twilio inbox (2)" in page.text and "+14155550124" in page.text
    assert "Password: &lt;b&gt;x&lt;/b&gt;" in page.text  # bodies are escaped, never markup
    assert requests.get(twilio + "/", timeout=5, allow_redirects=False).headers[
        "Location"
    ] == "/inbox"


def test_the_inbox_is_off_in_tests_and_leaves_twilio_routes_as_they_were():
    with FakeTwilio() as quiet, FakeTwilio(inbox=True) as chatty:
        for fake in (quiet, chatty):
            assert send_sms(fake.url, "+14155550123", "hello").status_code == 201
            unauthenticated = requests.get(
                f"{fake.url}/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages.json", timeout=5
            )
            assert unauthenticated.status_code == 401
        # Without the inbox, its path is one more unknown route behind Twilio's auth check.
        assert requests.get(quiet.url + "/inbox.json", timeout=5).status_code == 401
        assert requests.get(chatty.url + "/inbox.json", timeout=5).status_code == 200
        # Looking at the inbox is not API traffic: the request log has the API calls only.
        assert [path for _, path, _ in chatty.requests_log] == [
            f"/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Messages.json"
        ] * 2
        assert quiet.messages[0]["body"] == chatty.messages[0]["body"] == "hello"


def test_the_fake_coder_logs_students_in_through_its_login_route(fake_services):
    coder = fake_services["settings"]["CODER_URL"]
    created = requests.post(
        coder + "/api/v2/users",
        json={
            "username": "cs-k7pw3m",
            "email": "cs-k7pw3m@lab.invalid",
            "password": "k7pw-m3rt-q9zx-h4vd",
            "organization_ids": [DEFAULT_ORG_ID],
        },
        headers={"Coder-Session-Token": DEFAULT_TOKEN},
        timeout=5,
    )
    assert created.status_code == 201, created.text
    assert log_in(coder, "cs-k7pw3m@lab.invalid", "k7pw-m3rt-q9zx-h4vd").status_code == 201
    assert log_in(coder, "cs-k7pw3m@lab.invalid", "wrong-password-1234").status_code == 401


@pytest.mark.e2e
def test_try_it_locally_from_fake_services_to_a_login(fake_services, tmp_path):
    """README's "Try it locally", command by command: the app runs on the printed settings, an
    instructor and a session are created, a signed test text arrives, the credentials SMS is in
    the fake Twilio's inbox, and its Email and Password log in at the fake Coder."""
    port = fake_services["ports"]["app"]
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
        **fake_services["settings"],  # what `source var/fake-services.env` sets
        "ENV_FILE": "",
        "SECRET_KEY": "try-it-locally",
        "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "REDIS_URL": "",
        "PORT": str(port),
        "WEB_CONCURRENCY": "1",
        "Q_WORKERS": "2",
        "Q_CLUSTER_NAME": f"try-it-locally-{os.getpid()}",
    }

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
            text=True, timeout=120,
        )

    assert manage("migrate", "--noinput", "-v", "0").returncode == 0
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        app = subprocess.Popen(
            ["bash", "scripts/run"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        def healthy() -> bool:
            try:
                report = requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).json()
            except (requests.RequestException, ValueError):
                return False
            return report["worker"]["ok"]

        wait_for(healthy, timeout=60, what="make run to answer with a worker")
        made = manage("createinstructor", "--username", "ada", "--email", "ada@example.edu",
                      "--password", "correct-horse-battery-staple")
        assert made.returncode == 0, made.stderr
        session = manage("sessions", "create", "--classroom", "CS 101", "--owner", "ada",
                         "--phrase", "python lab 3")
        assert session.returncode == 0, session.stderr

        texted = manage("simulate_text", "Python Lab 3")
        assert texted.returncode == 0, texted.stderr
        assert "answered 200" in texted.stdout
        wrong = manage("simulate_text", "python lab 33", "--phone", "+14155550199")
        assert "The app replied: Sorry, we didn't recognise that." in wrong.stdout

        inbox = fake_services["settings"]["TWILIO_API_BASE_URL"] + "/inbox.json"

        def credentials_sms() -> str:
            bodies = [m["body"] for m in requests.get(inbox, timeout=5).json()["messages"]]
            return next((b for b in bodies if "Password" in b), "")

        try:
            body = wait_for(credentials_sms, timeout=60, what="the credentials SMS in the inbox")
        except TimeoutError as exc:
            lines = [line for line in log.read_text().splitlines() if "/healthz" not in line]
            raise AssertionError("\n".join([str(exc), *lines[-60:]])) from exc
        assert body.startswith("Your Coder account is ready.")
        email, password = credentials_from_sms(body)
        assert log_in(fake_services["settings"]["CODER_URL"], email, password).status_code == 201
    finally:
        if app.poll() is None:
            os.killpg(app.pid, signal.SIGINT)
            app.wait(timeout=40)
