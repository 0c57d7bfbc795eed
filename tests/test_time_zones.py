"""Times are entered and shown in the session's zone, and every time shown names its zone."""

from __future__ import annotations

import zoneinfo
from datetime import datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from registrations import zones
from registrations.models import Session
from tests.conftest import make_session

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/registrations/session/add/"
PREVIEW_URL = "/admin/registrations/session/preview-message/"
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


@pytest.fixture
def alice(client, instructor):
    client.force_login(instructor)
    return client


def typed(moment: datetime) -> tuple[str, str]:
    return f"{moment:%Y-%m-%d}", f"{moment:%H:%M:%S}"


def session_form(classroom, time_zone: str, opens: datetime) -> dict[str, str]:
    """The add form as a browser posts it, with wall-clock times typed in the boxes."""
    data = {
        "classroom": str(classroom.pk),
        "phrase": "python lab 3",
        "inbound_number": "",
        "time_zone": time_zone,
        "warn_minutes": "10",
        "capacity": "40",
        "coder_template": "",
        "credentials_message": "",
        "warning_message": "",
    }
    for name, moment in (
        ("opens_at", opens),
        ("closes_at", opens + timedelta(minutes=30)),
        ("expires_at", opens + timedelta(hours=3)),
    ):
        data[f"{name}_0"], data[f"{name}_1"] = typed(moment)
    return data


def test_the_zone_list_is_the_canonical_zones_without_aliases():
    names = zones.canonical_zones()
    assert names[0] == "UTC"
    assert {"America/New_York", "Europe/Paris", "Asia/Kolkata", "Europe/Oslo"} <= set(names)
    assert not {"US/Eastern", "Asia/Calcutta", "Europe/Kiev", "Etc/GMT+5", "EST"} & set(names)
    assert 300 < len(names) < 480 < len(zoneinfo.available_timezones())


def test_times_typed_in_the_form_are_read_in_the_chosen_zone(alice, classroom, settings):
    settings.TIME_ZONE = "UTC"
    opens = datetime(2031, 3, 4, 15, 35)  # 15:35 on the instructor's clock in New York
    response = alice.post(ADD_URL, session_form(classroom, "America/New_York", opens))
    assert response.status_code == 302, response.context["adminform"].form.errors
    session = Session.objects.get()
    assert session.opens_at == opens.replace(tzinfo=NEW_YORK)
    assert session.opens_at.astimezone(zoneinfo.ZoneInfo("UTC")).hour == 20


def test_the_change_form_shows_the_sessions_times_in_its_zone(alice, classroom, settings):
    settings.TIME_ZONE = "UTC"
    opens = datetime(2031, 3, 4, 15, 35, tzinfo=NEW_YORK)
    session = make_session(
        classroom,
        time_zone="America/New_York",
        opens_at=opens,
        closes_at=opens + timedelta(minutes=30),
        expires_at=opens + timedelta(hours=3),
    )
    page = alice.get(reverse("admin:registrations_session_change", args=[session.pk]))
    content = page.content.decode()
    assert 'name="opens_at_1" value="15:35:00"' in content
    assert '<strong id="zone-note">America/New_York</strong>' in content
    offset = int(timezone.now().astimezone(NEW_YORK).utcoffset().total_seconds())
    assert f'data-admin-utc-offset="{offset}"' in content  # the "Now" shortcut: New York's now
    assert '<datalist id="time-zone-list">' in content
    # Saving it unchanged keeps the times (they are read back in the same zone).
    data = session_form(classroom, "America/New_York", opens.replace(tzinfo=None))
    data["phrase"] = session.phrase
    alice.post(reverse("admin:registrations_session_change", args=[session.pk]), data)
    session.refresh_from_db()
    assert session.opens_at == opens


def test_a_new_session_starts_in_the_server_zone(alice, classroom, settings):
    settings.TIME_ZONE = "Europe/Paris"
    form = alice.get(ADD_URL).context["adminform"].form
    assert form.fields["time_zone"].initial == "Europe/Paris"
    content = alice.get(ADD_URL).content.decode()
    assert '<strong id="zone-note">Europe/Paris</strong>' in content


def test_lists_and_pages_name_the_zone_of_every_time(alice, classroom):
    opens = datetime(2031, 1, 7, 9, 0, tzinfo=NEW_YORK)
    session = make_session(
        classroom,
        time_zone="America/New_York",
        opens_at=opens,
        closes_at=opens + timedelta(minutes=30),
        expires_at=opens + timedelta(hours=3),
    )
    changelist = alice.get(reverse("admin:registrations_session_changelist")).content.decode()
    assert "Tue Jan 7 2031, 09:00 EST" in changelist
    assert "Tue Jan 7 2031, 12:00 EST" in changelist
    page = alice.get(reverse("admin:registrations_session_page", args=[session.pk]))
    content = page.content.decode()
    assert '<dd id="opens-at">Tue Jan 7 2031, 09:00 EST</dd>' in content
    assert '<dd id="expires-at">Tue Jan 7 2031, 12:00 EST</dd>' in content
    assert "p.m." not in content and "a.m." not in content


def test_the_enrollment_flash_names_the_zone(alice, classroom):
    now = timezone.now()
    session = make_session(
        classroom,
        time_zone="Asia/Tokyo",
        opens_at=now + timedelta(hours=1),
        closes_at=now + timedelta(hours=2),
    )
    url = reverse("admin:registrations_session_enrollment", args=[session.pk])
    response = alice.post(url, {"action": "open"}, follow=True)
    [text] = [str(m) for m in response.context["messages"]]
    assert text.endswith(" JST.")


def test_the_preview_follows_the_expiry_and_zone_typed_in_the_form(alice):
    expires = datetime(2031, 7, 1, 17, 30)
    date, time = typed(expires)
    data = alice.post(
        PREVIEW_URL,
        {"kind": "credentials", "text": "", "time_zone": "America/New_York",
         "expires_at_0": date, "expires_at_1": time},
    ).json()
    assert data["text"].endswith("Expires Tue Jul 1 17:30 EDT")
    warning = alice.post(
        PREVIEW_URL,
        {"kind": "warning", "text": "", "time_zone": "Europe/Paris", "warn_minutes": "15",
         "expires_at_0": date, "expires_at_1": time},
    ).json()
    assert "deleted in 15 min (Tue Jul 1 17:30 CEST)" in warning["text"]
