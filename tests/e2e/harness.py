"""The real app as an operator runs it: gunicorn and `manage.py qcluster` subprocesses, set up
with `migrate`, `createinstructor` and `sessions create`, talking to fake Coder and Twilio servers
that run in this process. Used by the e2e test, the fault drills and the benchmarks.

    with Stack(workdir, coder=coder, twilio=twilio) as stack:
        stack.prepare()
        stack.start_web(); stack.start_cluster()
        session_id = stack.create_session("python lab 3", "--lifetime-minutes", "5")
        stack.post_sms("python lab 3", phone="+14155550100")
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import requests
from twilio.request_validator import RequestValidator

from tests.e2e.backend import Backend, Database, make_backend
from tests.e2e.processes import Service
from tests.student import credentials_from_sms

REPO = Path(__file__).resolve().parents[2]
OUR_NUMBER = "+15005550006"
OWNER = "e2e-instructor"
CLASSROOM = "E2E class"
EMAIL_DOMAIN = "lab.invalid"
# Variables a subprocess may inherit; everything the app reads is set explicitly below.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "TZ", "USER", "SYSTEMROOT")

T = TypeVar("T")


def python_bin() -> str:
    venv = REPO / ".venv" / "bin" / "python"
    return str(venv) if venv.exists() else sys.executable


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def student_phone(i: int) -> str:
    """A distinct valid US number per student index (0-9999)."""
    return f"+1415555{i:04d}"


def wait_for(
    probe: Callable[[], T], *, timeout: float, interval: float = 0.5, what: str = "condition"
) -> T:
    """Poll `probe` until it returns something truthy; fail with its last value on timeout."""
    deadline = time.monotonic() + timeout
    value = probe()
    while not value:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"timed out after {timeout:.0f} s waiting for {what} (last: {value!r})"
            )
        time.sleep(interval)
        value = probe()
    return value


def twilio_params(
    body: str, phone: str, sid: str | None = None, *, account_sid: str = ""
) -> dict[str, str]:
    """The form fields Twilio posts for an incoming SMS."""
    sid = sid or "SM" + uuid.uuid4().hex
    return {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ToCity": "",
        "FromZip": "94105",
        "SmsSid": sid,
        "FromState": "CA",
        "SmsStatus": "received",
        "FromCity": "SAN FRANCISCO",
        "Body": body,
        "FromCountry": "US",
        "To": OUR_NUMBER,
        "MessagingServiceSid": "MG" + "2" * 32,
        "ToZip": "",
        "NumSegments": "1",
        "MessageSid": sid,
        "AccountSid": account_sid,
        "From": phone,
        "ApiVersion": "2010-04-01",
    }


class Stack:
    """One isolated deployment: its own database/broker, port, processes and log files."""

    def __init__(
        self,
        workdir: Path,
        *,
        coder: Any,
        twilio: Any,
        name: str = "",
        redis_db: int = 11,
        settings: dict[str, str] | None = None,
        backend: Backend | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.coder = coder
        self.twilio = twilio
        self.name = name or f"e2e_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.backend = backend or make_backend(self.workdir, self.name, redis_db=redis_db)
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.settings = settings or {}
        self.services: list[Service] = []
        self._counter = 0

    @property
    def public_base_url(self) -> str:
        # Twilio's status callbacks (from the fake) then reach this very server.
        return self.base_url

    def __enter__(self) -> Stack:
        self.backend.create()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        for service in self.services:
            service.terminate()  # all at once: each may take seconds to wind down
        for service in reversed(self.services):
            service.stop(grace=10)
        self.services.clear()
        if not os.environ.get("E2E_KEEP"):
            self.backend.destroy()

    def env(self, **extra: str) -> dict[str, str]:
        env = {key: os.environ[key] for key in INHERITED if key in os.environ}
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "classroom_sms.settings",
                "ENV_FILE": "",
                "PYTHONUNBUFFERED": "1",
                "SECRET_KEY": "e2e-not-secret-" + self.name,
                "DEBUG": "0",
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "SECURE_SSL_REDIRECT": "0",
                "SESSION_COOKIE_SECURE": "0",
                "CSRF_COOKIE_SECURE": "0",
                "DATABASE_URL": self.backend.database_url,
                "REDIS_URL": self.backend.redis_url,
                "Q_CLUSTER_NAME": self.backend.cluster_name,
                "PUBLIC_BASE_URL": self.public_base_url,
                "TWILIO_ACCOUNT_SID": self.twilio.account_sid,
                "TWILIO_AUTH_TOKEN": self.twilio.auth_token,
                "TWILIO_FROM_NUMBER": OUR_NUMBER,
                "TWILIO_API_BASE_URL": self.twilio.url,
                "CODER_URL": self.coder.url,
                "CODER_SESSION_TOKEN": self.coder.token,
                "CODER_EMAIL_DOMAIN": EMAIL_DOMAIN,
                "LOG_LEVEL": "INFO",
                "Q_LOG_LEVEL": "INFO",
            }
        )
        env.update(self.settings)
        env.update(extra)
        return env

    def manage(
        self, *args: str, timeout: float = 180, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        """Run a management command to completion, as an operator would."""
        result = subprocess.run(
            [python_bin(), "manage.py", *args],
            cwd=REPO,
            env=self.env(**env),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        with open(self.workdir / "manage.log", "a") as log:
            log.write(f"$ manage.py {' '.join(args)}  -> {result.returncode}\n")
            log.write(result.stdout + result.stderr)
        if check and result.returncode != 0:
            raise AssertionError(
                f"manage.py {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def prepare(self) -> None:
        """Create the schema, the schedules and an instructor, the way `make run` does."""
        self.manage("migrate", "--noinput")
        self.manage("setup_schedules")
        self.manage(
            "createinstructor",
            "--username",
            OWNER,
            "--email",
            f"{OWNER}@example.test",
            "--password",
            "e2e-" + uuid.uuid4().hex,
        )

    def create_session(self, phrase: str, *options: str) -> int:
        """Create a session with the CLI and return the id it prints."""
        result = self.manage(
            "sessions",
            "create",
            "--classroom",
            CLASSROOM,
            "--owner",
            OWNER,
            "--phrase",
            phrase,
            *options,
        )
        return int(result.stdout.split()[-1])

    def start_web(self, *, workers: int = 2, threads: int = 4, access_log: bool = True) -> Service:
        argv = [
            python_bin(),
            "-m",
            "gunicorn",
            "classroom_sms.wsgi",
            "--config",  # as `make run` and the Docker image start it
            "gunicorn.conf.py",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--worker-tmp-dir",
            "/dev/shm" if Path("/dev/shm").is_dir() else str(self.workdir),
            "--graceful-timeout",
            "5",
        ]
        if access_log:
            argv += ["--access-logfile", "-"]
        service = self._spawn("web", argv)
        wait_for(
            lambda: self._answers() or self._dead(service),
            timeout=60,
            interval=0.2,
            what="gunicorn to answer /healthz",
        )
        self._dead(service)
        return service

    def start_cluster(self, *, workers: int = 2, **extra_env: str) -> Service:
        """Start one `manage.py qcluster` with `workers` worker processes."""
        service = self._spawn(
            "qcluster", [python_bin(), "manage.py", "qcluster"], Q_WORKERS=str(workers), **extra_env
        )
        wait_for(
            lambda: "running" in service.log_text() or self._dead(service),
            timeout=60,
            interval=0.2,
            what="qcluster to start",
        )
        self._dead(service)
        return service

    def _spawn(self, role: str, argv: list[str], **extra_env: str) -> Service:
        self._counter += 1
        name = f"{role}-{self._counter}"
        service = Service(name, argv, self.env(**extra_env), REPO, self.workdir / f"{name}.log")
        self.services.append(service)
        return service

    def stop(self, service: Service, *, kill: bool = False) -> None:
        """Stop one service: gracefully, or with SIGKILL to its whole process group."""
        service.kill() if kill else service.stop()
        if service in self.services:
            self.services.remove(service)

    def _answers(self) -> bool:
        try:
            return requests.get(self.base_url + "/healthz", timeout=2).status_code in (200, 503)
        except requests.RequestException:
            return False

    @staticmethod
    def _dead(service: Service) -> bool:
        if not service.alive:
            raise AssertionError(f"{service.name} exited early:\n{service.tail()}")
        return False

    def logs(self, lines: int = 60) -> str:
        """The tail of every log, for a failure report."""
        parts = []
        for path in sorted(self.workdir.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"==== {path.name}\n" + "\n".join(text))
        return "\n".join(parts)

    def signed(self, params: dict[str, str]) -> dict[str, str]:
        """Headers for a webhook POST, signed over the public URL as Twilio signs it."""
        url = self.public_base_url + "/twilio/sms/"
        validator = RequestValidator(self.twilio.auth_token)
        return {"X-Twilio-Signature": validator.compute_signature(url, params)}

    def post_sms(
        self, body: str, phone: str, sid: str | None = None, *, timeout: float = 15
    ) -> requests.Response:
        """Deliver one inbound SMS to the webhook, signed as Twilio would."""
        params = twilio_params(body, phone, sid, account_sid=self.twilio.account_sid)
        return requests.post(
            self.base_url + "/twilio/sms/",
            data=params,
            headers=self.signed(params),
            timeout=timeout,
        )

    def burst(
        self,
        body: str,
        count: int,
        *,
        first: int = 0,
        rate: float | None = None,
        repeat: int = 1,
        concurrency: int | None = None,
        timeout: float = 300,
    ) -> list[dict[str, Any]]:
        """Text `body` from `count` students (phones from index `first`) from a load process.

        All at once when `rate` is None, else `rate` texts per second; each text delivered
        `repeat` times with one MessageSid (Twilio's retries); at most `concurrency` requests
        in flight when given. Returns one sample per request: phone, sid, at, started,
        latency, status, error.
        """
        argv = [
            python_bin(),
            "-m",
            "tests.e2e.load",
            "--url",
            self.base_url,
            "--public-url",
            self.public_base_url,
            "--token",
            self.twilio.auth_token,
            "--account-sid",
            self.twilio.account_sid,
            "--phrase",
            body,
            "--count",
            str(count),
            "--first",
            str(first),
        ]
        if rate:
            argv += ["--rate", str(rate)]
        if repeat > 1:
            argv += ["--repeat", str(repeat)]
        if concurrency:
            argv += ["--concurrency", str(concurrency)]
        result = subprocess.run(
            argv,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )
        if result.returncode != 0:
            raise AssertionError(f"load generator failed:\n{result.stderr}")
        return json.loads(result.stdout)["samples"]

    @property
    def db(self) -> Database:
        return self.backend.database()

    def account_statuses(self, session_id: int | None = None) -> dict[str, int]:
        where = f" WHERE session_id = {int(session_id)}" if session_id is not None else ""
        rows = self.db.rows(
            f"SELECT status, COUNT(*) FROM registrations_account{where} GROUP BY status"
        )
        return dict(rows)


def credentials_sent(twilio: Any) -> dict[str, list[tuple[str, str]]]:
    """(email, password) of every SMS carrying credentials, per phone, oldest first.

    Read as a student reads them (tests/student.py), so a text a student could not log in
    with does not count as credentials.
    """
    found: dict[str, list[tuple[str, str]]] = {}
    for message in twilio.messages:
        try:
            pair = credentials_from_sms(message["body"])
        except AssertionError:
            continue  # not a credentials SMS (a warning, a goodbye)
        found.setdefault(message["to"], []).append(pair)
    return found


def messages_by_phone(twilio: Any) -> dict[str, list[str]]:
    """Bodies of every SMS accepted by the fake Twilio, per phone, oldest first."""
    found: dict[str, list[str]] = {}
    for message in twilio.messages:
        found.setdefault(message["to"], []).append(message["body"])
    return found
