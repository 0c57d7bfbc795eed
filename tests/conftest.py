"""Shared fixtures: users, a classroom and an open session, Twilio/Coder settings, signing."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.test.client import MULTIPART_CONTENT
from django.utils import timezone
from django_q.conf import Conf
from twilio.request_validator import RequestValidator

from registrations.models import Classroom, Session

TWILIO_SID = "AC" + "1" * 32
TWILIO_TOKEN = "test-twilio-auth-token"
OUR_NUMBER = "+15005550006"
PUBLIC_BASE_URL = "https://sms.example.test"
STUDENT_PHONE = "+14155550123"


class TwilioFormClient(Client):
    """The test client, posting a dict to /twilio/... form-encoded, as Twilio does.

    Django's client posts dicts as multipart, which the webhooks refuse (415) before reading
    (registrations/request_limits.py); everywhere else it is the plain test client.
    """

    def post(self, path: str, data: Any = None, content_type: str = MULTIPART_CONTENT,
             *args: Any, **kwargs: Any) -> Any:
        if path.startswith("/twilio/") and isinstance(data, Mapping) and \
                content_type == MULTIPART_CONTENT:
            data, content_type = urlencode(data, doseq=True), "application/x-www-form-urlencoded"
        return super().post(path, data, content_type, *args, **kwargs)


@pytest.fixture
def client() -> Client:
    return TwilioFormClient()


def make_instructor(username: str) -> User:
    user = User.objects.create_user(username, f"{username}@example.test", "pw", is_staff=True)
    user.groups.add(Group.objects.get(name="Instructors"))
    return user


@pytest.fixture
def instructor(db) -> User:
    return make_instructor("alice")


@pytest.fixture
def other_instructor(db) -> User:
    return make_instructor("bob")


@pytest.fixture
def superuser(db) -> User:
    return User.objects.create_superuser("root", "root@example.test", "pw")


@pytest.fixture
def classroom(instructor) -> Classroom:
    return Classroom.objects.create(name="CS 101", owner=instructor)


def make_session(classroom: Classroom, phrase: str = "python lab 3", **fields) -> Session:
    now = timezone.now()
    values = {
        "opens_at": now - timedelta(minutes=5),
        "closes_at": now + timedelta(minutes=30),
        "expires_at": now + timedelta(hours=3),
        **fields,
    }
    return Session.objects.create(classroom=classroom, phrase=phrase, **values)


@pytest.fixture
def open_session(classroom) -> Session:
    return make_session(classroom)


@pytest.fixture
def twilio_settings(settings):
    settings.TWILIO_ACCOUNT_SID = TWILIO_SID
    settings.TWILIO_AUTH_TOKEN = TWILIO_TOKEN
    settings.TWILIO_FROM_NUMBER = OUR_NUMBER
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    settings.PUBLIC_BASE_URL = PUBLIC_BASE_URL
    settings.DEBUG = False
    return settings


@pytest.fixture
def fake_coder(settings):
    from tests.fakes.coder import FakeCoder

    with FakeCoder() as server:
        settings.CODER_URL = server.url
        settings.CODER_SESSION_TOKEN = server.token
        settings.CODER_ORGANIZATION = ""
        yield server


@pytest.fixture
def sync_tasks(monkeypatch):
    """Run django-q2 tasks inline, as soon as they are enqueued."""
    monkeypatch.setattr(Conf, "SYNC", True)


@pytest.fixture
def run_tasks(sync_tasks, django_capture_on_commit_callbacks) -> Callable:
    """Call something, then run whatever it enqueued, inline, once its transaction commits."""

    def run(call: Callable, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return call(*args, **kwargs)

    return run


def sign(url: str, params: dict, token: str = TWILIO_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


def twilio_params(body: str, phone: str = STUDENT_PHONE, sid: str | None = None, **extra) -> dict:
    """The form fields Twilio posts for an incoming SMS."""
    from tests.e2e.harness import twilio_params as incoming_sms_fields

    return {**incoming_sms_fields(body, phone, sid, account_sid=TWILIO_SID), **extra}


@pytest.fixture
def send_sms(client: Client, twilio_settings) -> Callable:
    """Post a correctly signed inbound-SMS webhook, as Twilio would."""

    def send(body: str, phone: str = STUDENT_PHONE, sid: str | None = None, **extra):
        params = twilio_params(body, phone, sid, **extra)
        url = PUBLIC_BASE_URL + "/twilio/sms/"
        return client.post("/twilio/sms/", params, HTTP_X_TWILIO_SIGNATURE=sign(url, params))

    return send


@pytest.fixture
def broker(db):
    """django-q2's broker, emptied before and after the test (Redis outlives a test's rollback)."""
    from django_q.brokers import get_broker

    task_broker = get_broker()
    task_broker.purge_queue()
    yield task_broker
    task_broker.purge_queue()


def queued_tasks(task_broker) -> list[dict]:
    """Pop every task waiting in the broker and return their decoded packages."""
    from django_q.signing import SignedPackage

    tasks: list[dict] = []
    for _ in range(10_000):
        if not task_broker.queue_size():
            break
        tasks += [SignedPackage.loads(payload) for _, payload in task_broker.dequeue() or []]
    return tasks


@pytest.fixture
def fake_twilio(twilio_settings):
    """A fake Twilio REST server that the app's Twilio client is pointed at."""
    from tests.fakes.twilio import FakeTwilio

    with FakeTwilio(TWILIO_SID, TWILIO_TOKEN) as server:
        twilio_settings.TWILIO_API_BASE_URL = server.url
        yield server


@pytest.fixture
def coder_account(fake_coder, settings) -> Callable:
    """Make an Account whose Coder user (with our email marker) and workspaces exist in the fake.

    The workspaces' start builds are finished, and the fake's request log is cleared, so a test
    sees only the requests the code under test sends.
    """
    from registrations import credentials
    from registrations.coder import get_client
    from registrations.models import Account, AccountStatus

    template = fake_coder.add_template("docker")

    def make(
        session,
        username: str = "cs-student",
        *,
        workspaces: int = 1,
        phone: str | None = STUDENT_PHONE,
        status: str = AccountStatus.ACTIVE,
        **fields,
    ) -> Account:
        user = fake_coder.add_user(username, email=credentials.email_for(username))
        polls, fake_coder.build_polls = fake_coder.build_polls, 0
        for number in range(1, workspaces + 1):
            get_client().create_workspace(username, f"ws{number}", template["id"])
        get_client().list_workspaces(username)  # with build_polls 0, a look ends the builds
        fake_coder.build_polls = polls
        fake_coder.clear_log()
        fields.setdefault("expires_at", session.expires_at)
        if status == AccountStatus.ACTIVE:
            # An active account in real life has had its credentials texted.
            fields.setdefault("provisioned_at", timezone.now())
            fields.setdefault("credentials_sent_at", timezone.now())
        return Account.objects.create(
            session=session,
            phone=phone,
            status=status,
            coder_username=username,
            coder_user_id=user["id"],
            coder_email=user["email"],
            **fields,
        )

    return make


def at_once(work: Callable[[], None], workers: int = 2) -> None:
    """Run `work` in several threads released together; each thread has its own connection."""
    import threading

    from django.db import connection

    barrier = threading.Barrier(workers)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            work()
        except BaseException as exc:  # reported in the test's thread below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors


def make_account(session: Session, phone: str | None = STUDENT_PHONE, **fields):
    """Create an Account in a session directly (no provisioning), for admin and CLI tests."""
    from registrations.models import Account

    fields.setdefault("expires_at", session.expires_at)
    return Account.objects.create(session=session, phone=phone, **fields)


def _register_hypothesis_profiles() -> None:
    """Property tests: a quick "dev" profile for `make test`, a thorough "ci" one (.ci/run)."""
    import os

    from hypothesis import HealthCheck
    from hypothesis import settings as hypothesis_settings

    # Examples share one test's database transaction and fixtures; each example cleans up.
    common = {
        "deadline": None,
        "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        "derandomize": False,
        "print_blob": True,
    }
    hypothesis_settings.register_profile("dev", max_examples=200, **common)
    hypothesis_settings.register_profile("ci", max_examples=1000, **common)
    hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


_register_hypothesis_profiles()
