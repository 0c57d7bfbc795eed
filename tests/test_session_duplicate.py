"""Repeat a class: a copy under a new phrase, every time shifted, settings and texts kept;
from the session page (scoped like it) and `sessions create --from ID`."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from registrations.models import Classroom, Session
from registrations.session_lifecycle import duplicate_session
from tests.conftest import make_session

pytestmark = pytest.mark.django_db

WEEK = timedelta(days=7)


@pytest.fixture
def session(classroom):
    return make_session(
        classroom,
        capacity=25,
        warn_minutes=15,
        time_zone="Europe/Oslo",
        coder_template="python",
        credentials_message="Log in at {url} with {email} / {password}",
        warning_message="",
    )


def test_copy_shifts_every_time_and_keeps_the_settings(session):
    copy = duplicate_session(session, "python lab 4", WEEK)
    assert copy.pk != session.pk and copy.phrase == "python lab 4"
    assert (copy.opens_at, copy.closes_at, copy.expires_at) == (
        session.opens_at + WEEK,
        session.closes_at + WEEK,
        session.expires_at + WEEK,
    )
    kept = ("classroom", "capacity", "warn_minutes", "time_zone", "coder_template",
            "credentials_message", "warning_message", "inbound_number")
    assert [getattr(copy, f) for f in kept] == [getattr(session, f) for f in kept]
    assert copy.ended_at is None


def test_a_clashing_phrase_is_refused(session):
    with pytest.raises(ValidationError) as error:
        duplicate_session(session, "python lab 3", timedelta(0))
    assert "already the phrase of another session" in str(error.value)
    assert Session.objects.count() == 1


def test_a_copy_already_expired_is_refused(session):
    with pytest.raises(ValidationError, match="already have expired"):
        duplicate_session(session, "python lab 4", -WEEK)


def test_instructor_duplicates_from_the_page_and_lands_on_the_copy(client, instructor, session):
    client.force_login(instructor)
    url = reverse("admin:registrations_session_duplicate", args=[session.pk])
    form = client.get(url)
    assert 'value="python lab 3 week 2"' in form.content.decode()
    response = client.post(url, {"phrase": "python lab 3 week 2", "days": "7"})
    copy = Session.objects.get(phrase="python lab 3 week 2")
    assert response.url == reverse("admin:registrations_session_page", args=[copy.pk])
    assert copy.opens_at == session.opens_at + WEEK


def test_a_clash_is_shown_on_the_form(client, instructor, session):
    client.force_login(instructor)
    url = reverse("admin:registrations_session_duplicate", args=[session.pk])
    response = client.post(url, {"phrase": "Python Lab 3", "days": "0"})
    assert response.status_code == 200
    assert "already the phrase of another session" in response.content.decode()
    assert Session.objects.count() == 1


def test_another_instructors_session_cannot_be_duplicated(client, other_instructor, session):
    client.force_login(other_instructor)
    url = reverse("admin:registrations_session_duplicate", args=[session.pk])
    assert client.get(url).status_code == 404
    assert client.post(url, {"phrase": "stolen lab", "days": "7"}).status_code == 404
    assert Session.objects.count() == 1


def test_cli_create_from_prints_the_new_id(session):
    out = StringIO()
    call_command("sessions", "create", "--from", str(session.pk), "--phrase", "python lab 4",
                 "--shift-days", "14", stdout=out)
    copy = Session.objects.get(phrase="python lab 4")
    assert out.getvalue() == f"{copy.pk}\n"
    assert copy.expires_at == session.expires_at + timedelta(days=14)
    assert copy.classroom == session.classroom


def test_cli_create_from_defaults_to_a_week_and_refuses_a_clash(session):
    call_command("sessions", "create", "--from", str(session.pk), "--phrase", "lab 4",
                 stdout=StringIO())
    assert Session.objects.get(phrase="lab 4").opens_at == session.opens_at + WEEK
    with pytest.raises(CommandError, match="already the phrase of another session"):
        call_command("sessions", "create", "--from", str(session.pk), "--phrase", "lab 4",
                     stdout=StringIO())


def test_cli_create_from_refuses_options_it_would_ignore(session):
    with pytest.raises(CommandError, match="drop --owner, --capacity"):
        call_command("sessions", "create", "--from", str(session.pk), "--phrase", "lab 4",
                     "--owner", "alice", "--capacity", "3", stdout=StringIO())


def test_cli_create_without_from_still_needs_classroom_and_owner(instructor):
    with pytest.raises(CommandError, match="--classroom and --owner are required"):
        call_command("sessions", "create", "--phrase", "lab 4", stdout=StringIO())
    assert not Classroom.objects.exists()
