"""Creating a session in the admin: defaults, validation messages that say what to fix (naming
the clashing session), Coder's templates as choices, and the live SMS preview."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.urls import reverse
from django.utils import timezone

from registrations.models import Session
from registrations.session_lifecycle import default_times
from tests.conftest import make_session

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/registrations/session/add/"
PREVIEW_URL = "/admin/registrations/session/preview-message/"


@pytest.fixture
def alice(client, instructor):
    client.force_login(instructor)
    return client


def form_data(
    classroom, phrase: str = "python lab 3", start: datetime | None = None, **overrides
) -> dict[str, str]:
    start = start or timezone.now()
    times = {
        "opens_at": start,
        "closes_at": start + timedelta(minutes=30),
        "expires_at": start + timedelta(hours=3),
    }
    data = {
        "classroom": str(classroom.pk),
        "phrase": phrase,
        "inbound_number": "",
        "time_zone": "UTC",
        "warn_minutes": "10",
        "capacity": "40",
        "coder_template": "",
        "credentials_message": "",
        "warning_message": "",
    }
    for name, moment in times.items():
        data[f"{name}_0"], data[f"{name}_1"] = f"{moment:%Y-%m-%d}", f"{moment:%H:%M:%S}"
    data.update(overrides)
    return data


def errors(response) -> dict[str, list[str]]:
    return {
        field: list(messages)
        for field, messages in response.context["adminform"].form.errors.items()
    }


def test_add_form_defaults_open_now_close_in_30_minutes_expire_in_3_hours(alice, classroom):
    initial = alice.get(ADD_URL).context["adminform"].form.initial
    assert abs(initial["opens_at"] - timezone.now()) < timedelta(minutes=1)
    assert initial["closes_at"] - initial["opens_at"] == timedelta(minutes=30)
    assert initial["expires_at"] - initial["opens_at"] == timedelta(hours=3)
    assert initial["classroom"] == classroom.pk  # her only classroom is preselected


def test_creating_a_session_shows_its_page_and_is_logged(alice, classroom):
    response = alice.post(ADD_URL, form_data(classroom, "  Python Lab 3! "))
    session = Session.objects.get()
    assert response.status_code == 302
    assert response.url == reverse("admin:registrations_session_page", args=[session.pk])
    assert (session.phrase_normalized, session.capacity) == ("python lab 3", 40)
    assert LogEntry.objects.get().action_flag == ADDITION


def test_a_clashing_phrase_names_the_other_session(alice, classroom, other_instructor):
    from registrations.models import Classroom

    bobs = Classroom.objects.create(name="Bob's class", owner=other_instructor)
    clash = make_session(bobs, "Python Lab 3")
    response = alice.post(ADD_URL, form_data(classroom, "python   lab 3."))
    [message] = errors(response)["phrase"]
    assert f"(session #{clash.pk})" in message
    assert "is already the phrase of" in message and "Choose another phrase" in message
    assert Session.objects.count() == 1


def test_the_same_phrase_is_fine_when_the_windows_do_not_overlap(alice, classroom):
    make_session(classroom, "python lab 3")
    tomorrow = timezone.now() + timedelta(days=1)
    response = alice.post(ADD_URL, form_data(classroom, "python lab 3", start=tomorrow))
    assert response.status_code == 302
    assert Session.objects.count() == 2


@pytest.mark.parametrize(
    ("phrase", "message"),
    [
        ("STOP", "“STOP” is a reserved SMS keyword"),
        ("help!", "“HELP” is a reserved SMS keyword"),
        ("abc", "The phrase must be at least 4 characters long."),
        ("...", "The phrase must be at least 4 characters long."),
    ],
)
def test_bad_phrases_are_explained(alice, classroom, phrase, message):
    response = alice.post(ADD_URL, form_data(classroom, phrase))
    assert any(text.startswith(message) for text in errors(response)["phrase"])
    assert not Session.objects.exists()


def test_enrollment_must_close_after_it_opens(alice, classroom):
    start = timezone.now()
    data = form_data(
        classroom,
        closes_at_0=f"{start - timedelta(hours=1):%Y-%m-%d}",
        closes_at_1=f"{start - timedelta(hours=1):%H:%M:%S}",
    )
    assert errors(alice.post(ADD_URL, data))["closes_at"] == [
        "Enrollment must close after it opens."
    ]


def test_accounts_cannot_expire_before_enrollment_closes(alice, classroom):
    start = timezone.now()
    data = form_data(
        classroom,
        expires_at_0=f"{start + timedelta(minutes=10):%Y-%m-%d}",
        expires_at_1=f"{start + timedelta(minutes=10):%H:%M:%S}",
    )
    assert errors(alice.post(ADD_URL, data))["expires_at"] == [
        "Accounts cannot expire before enrollment closes."
    ]


def test_a_credentials_override_must_carry_email_and_password(alice, classroom):
    data = form_data(classroom, credentials_message="Welcome {email}! {oops}")
    assert errors(alice.post(ADD_URL, data))["credentials_message"] == [
        "Unknown placeholder {oops}. Use only {url}, {email}, {username}, {password}, {expires}."
    ]
    data = form_data(classroom, credentials_message="Welcome {email}!")
    assert errors(alice.post(ADD_URL, data))["credentials_message"] == [
        "The message must contain {password}, or students cannot log in."
    ]
    data = form_data(classroom, credentials_message="Welcome {username}! {password}")
    assert errors(alice.post(ADD_URL, data))["credentials_message"] == [
        "Coder's login form asks for the email address, not the username: the message must "
        "contain {email}, or students cannot log in."
    ]


def test_unknown_time_zone_is_refused(alice, classroom):
    response = alice.post(ADD_URL, form_data(classroom, time_zone="Mars/Olympus"))
    assert "time_zone" in errors(response)


def test_default_times_never_close_after_expiry():
    start = timezone.now()
    times = default_times(opens_at=start, lifetime_minutes=10)
    assert times.closes_at == times.expires_at == start + timedelta(minutes=10)
    times = default_times(opens_at=start, enroll_minutes=5, lifetime_minutes=60)
    assert (times.closes_at, times.expires_at) == (
        start + timedelta(minutes=5),
        start + timedelta(minutes=60),
    )


def test_template_choices_come_from_coder(alice, classroom, fake_coder):
    fake_coder.add_template("python-lab", display_name="Python lab")
    fake_coder.add_template("old-lab", deprecated=True)
    field = alice.get(ADD_URL).context["adminform"].form.fields["coder_template"]
    assert [name for name, _ in field.choices] == ["", "python-lab"]
    response = alice.post(ADD_URL, form_data(classroom, coder_template="not-offered"))
    assert "coder_template" in errors(response)
    response = alice.post(ADD_URL, form_data(classroom, coder_template="python-lab"))
    assert Session.objects.get().coder_template == "python-lab"


def test_template_is_free_text_with_an_escaped_reason_when_coder_fails(
    alice, classroom, fake_coder
):
    fake_coder.down = True
    response = alice.get(ADD_URL)
    field = response.context["adminform"].form.fields["coder_template"]
    # The admin renders help text as HTML, so what Coder's failure says arrives escaped.
    assert str(field.help_text).startswith("Could not list Coder's templates (Coder GET")
    assert "-&gt; no response" in str(field.help_text)
    assert field.widget.input_type == "text"


def test_admin_says_when_twilio_and_coder_are_not_configured(alice, classroom, settings):
    settings.TWILIO_ACCOUNT_SID = settings.CODER_URL = ""
    for url in (ADD_URL, reverse("admin:index"), reverse("admin:registrations_session_dashboard")):
        content = alice.get(url).content.decode()
        assert "Twilio is not configured (TWILIO_ACCOUNT_SID" in content
        assert "Coder is not configured (CODER_URL" in content


def test_preview_renders_the_override_with_its_segment_count(alice, settings):
    settings.CODER_URL = "https://coder.example.edu"
    response = alice.post(
        PREVIEW_URL,
        {
            "kind": "credentials",
            "text": "Lab: {url} email {email} pass {password}",
            "time_zone": "Europe/Paris",
        },
    )
    data = response.json()
    assert data["text"].startswith("Lab: https://coder.example.edu email cs")
    assert "@lab.invalid pass " in data["text"]
    assert (data["segments"], data["problems"], data["default"]) == (1, [], False)
    assert data["characters"] == len(data["text"])


def test_preview_counts_segments_of_a_long_or_unicode_text(alice):
    long = alice.post(PREVIEW_URL, {"kind": "warning", "text": "Save your work! " * 20}).json()
    assert long["segments"] == 3
    emoji = alice.post(PREVIEW_URL, {"kind": "warning", "text": "Bye 👋 " * 12}).json()
    assert (emoji["gsm7"], emoji["segments"]) == (False, 2)


def test_preview_lists_problems_and_shows_the_default_instead(alice):
    data = alice.post(PREVIEW_URL, {"kind": "credentials", "text": "Hi {name}"}).json()
    assert data["problems"] == [
        "Unknown placeholder {name}. Use only {url}, {email}, {username}, {password}, {expires}."
    ]
    assert data["default"] is True
    assert "Password:" in data["text"] and "Email: cs-" in data["text"]


def test_preview_of_an_override_with_username_only_explains_coder_logs_in_by_email(alice):
    data = alice.post(
        PREVIEW_URL, {"kind": "credentials", "text": "Hi {username}, password {password}"}
    ).json()
    assert data["problems"] == [
        "Coder's login form asks for the email address, not the username: the message must "
        "contain {email}, or students cannot log in."
    ]
    assert data["default"] is True and "Email: cs-" in data["text"]


def test_preview_of_a_blank_override_is_the_default_text(alice):
    data = alice.post(PREVIEW_URL, {"kind": "warning", "text": "", "warn_minutes": "15"}).json()
    assert data["default"] is True
    assert "will be deleted in 15 min" in data["text"]


@pytest.mark.parametrize("warn_minutes", ["-3", "99999999999", "soon"])
def test_preview_survives_odd_warning_minutes(alice, warn_minutes):
    response = alice.post(PREVIEW_URL, {"kind": "warning", "warn_minutes": warn_minutes})
    assert response.status_code == 200 and response.json()["segments"] == 1


def test_preview_is_for_staff_only_and_post_only(client, alice):
    assert alice.get(PREVIEW_URL).status_code == 405
    assert alice.post(PREVIEW_URL, {"kind": "other"}).status_code == 400
    client.logout()
    response = client.post(PREVIEW_URL, {"kind": "warning", "text": "x"})
    assert response.status_code == 302 and "/login/" in response.url
