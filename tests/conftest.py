"""Shared fixtures: users, a classroom and an open session, Twilio/Coder settings, signing."""

from __future__ import annotations

from datetime import timedelta
from typing import Callable

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client
from django.utils import timezone
from django_q.conf import Conf
from twilio.request_validator import RequestValidator

from registrations.models import Classroom, Session

TWILIO_SID = "AC" + "1" * 32
TWILIO_TOKEN = "test-twilio-auth-token"
OUR_NUMBER = "+15005550006"
PUBLIC_BASE_URL = "https://sms.example.test"
STUDENT_PHONE = "+14155550123"


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


def sign(url: str, params: dict, token: str = TWILIO_TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


def twilio_params(body: str, phone: str = STUDENT_PHONE, sid: str | None = None, **extra) -> dict:
    """The form fields Twilio posts for an incoming SMS."""
    import uuid

    params = {
        "ToCountry": "US",
        "ToState": "CA",
        "SmsMessageSid": sid or "SM" + uuid.uuid4().hex,
        "NumMedia": "0",
        "ToCity": "",
        "FromZip": "94105",
        "SmsSid": sid or "",
        "FromState": "CA",
        "SmsStatus": "received",
        "FromCity": "SAN FRANCISCO",
        "Body": body,
        "FromCountry": "US",
        "To": OUR_NUMBER,
        "MessagingServiceSid": "MG" + "2" * 32,
        "ToZip": "",
        "NumSegments": "1",
        "MessageSid": "",
        "AccountSid": TWILIO_SID,
        "From": phone,
        "ApiVersion": "2010-04-01",
    }
    params["SmsSid"] = params["MessageSid"] = params["SmsMessageSid"]
    params.update(extra)
    return params


@pytest.fixture
def send_sms(client: Client, twilio_settings) -> Callable:
    """Post a correctly signed inbound-SMS webhook, as Twilio would."""

    def send(body: str, phone: str = STUDENT_PHONE, sid: str | None = None, **extra):
        params = twilio_params(body, phone, sid, **extra)
        url = PUBLIC_BASE_URL + "/twilio/sms/"
        return client.post(
            "/twilio/sms/", params, HTTP_X_TWILIO_SIGNATURE=sign(url, params)
        )

    return send
