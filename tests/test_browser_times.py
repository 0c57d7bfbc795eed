"""Headless Chromium, in a browser zone (Tokyo) that is neither the server's (UTC) nor the
session's (New York): the instructor picks the session's zone from the searchable list, types
times on New York's clock, sees the SMS preview follow, and reads every time back with its
zone; extending the session texts the student the new expiry."""

# Fixtures imported from tests.browser are test parameters of the same name.
# ruff: noqa: F811

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime

import pytest

from registrations.models import Session
from tests.browser import (  # noqa: F401  (app, browser_page, live_app: fixtures)
    app,
    browser_page,
    live_app,
    log_in,
    screenshot,
    text_the_phrase,
)
from tests.conftest import STUDENT_PHONE

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


def minutes_apart(shown: str, expected: datetime) -> int:
    """How far a "HH:MM:SS" typed by the clock's "Now" is from a moment's clock time."""
    hours, minutes = (int(part) for part in shown.split(":")[:2])
    difference = abs(hours * 60 + minutes - (expected.hour * 60 + expected.minute))
    return min(difference, 24 * 60 - difference)


def test_times_are_typed_and_read_in_the_sessions_zone(app, browser_page, fake_twilio, settings):
    settings.TIME_ZONE = "UTC"
    page = browser_page
    log_in(page, app)
    page.goto(app.url + "/admin/registrations/session/add/")

    # The zone list: canonical zones only, searchable as one types (a datalist).
    options = page.eval_on_selector_all("#time-zone-list option", "els => els.map(e => e.value)")
    assert "America/New_York" in options and "US/Eastern" not in options
    assert 300 < len(options) < 480
    assert page.inner_text("#zone-note") == "UTC"
    # Django's "You are 9 hours ahead of server time" is replaced by the zone note.
    assert not page.locator(".timezonewarning").first.is_visible()

    page.fill("#id_time_zone", "America/New_York")
    page.dispatch_event("#id_time_zone", "change")
    page.wait_for_function(
        "document.getElementById('zone-note').textContent === 'America/New_York'"
    )
    # The clock's "Now" is now in New York, not in the browser's Tokyo.
    page.click("#id_opens_at_1 + .datetimeshortcuts >> text=Now")
    assert minutes_apart(page.input_value("#id_opens_at_1"), datetime.now(NEW_YORK)) <= 2

    page.fill("#id_phrase", "python lab 5")
    for field, date, time in (
        ("opens_at", "2031-01-07", "09:00:00"),
        ("closes_at", "2031-01-07", "09:30:00"),
        ("expires_at", "2031-01-07", "12:00:00"),
    ):
        page.fill(f"#id_{field}_0", date)
        page.fill(f"#id_{field}_1", time)
    page.dispatch_event("#id_expires_at_1", "change")
    # The preview states the expiry as typed, in the session's zone, as students will read it.
    page.wait_for_function(
        "[...document.querySelectorAll('.sms-preview pre')]"
        ".some(p => p.textContent.endsWith('Expires Tue Jan 7 12:00 EST'))"
    )
    screenshot(page, "session-form.png")
    page.click("input[name=_save]")

    page.wait_for_selector("#session-times")
    session = Session.objects.get()
    assert session.time_zone == "America/New_York"
    assert session.opens_at == datetime(2031, 1, 7, 14, 0, tzinfo=UTC)
    assert page.inner_text("#opens-at") == "Tue Jan 7 2031, 09:00 EST"
    assert page.inner_text("#expires-at") == "Tue Jan 7 2031, 12:00 EST"
    assert "09:00 EST" in page.inner_text("#join-opens")

    # Open early, a student joins, then the instructor extends the session by 45 minutes.
    page.click("input[value='Open enrollment now']")
    page.wait_for_selector(".messagelist .success")
    assert page.inner_text(".messagelist").endswith("Tue Jan 7 2031, 09:30 EST.")
    text_the_phrase(app, "python lab 5")
    page.wait_for_function("document.querySelector('#count-active').textContent === '1'")
    assert page.is_checked("#id_notify")  # texting the students is the default
    page.fill("#id_minutes", "45")
    page.click("#extend-form input[type=submit]")
    page.wait_for_selector(".messagelist .success")
    flash = page.inner_text(".messagelist")
    assert "accounts now expire at Tue Jan 7 2031, 12:45 EST." in flash
    assert flash.endswith("Texting the new expiry to 1 student.")
    notice = fake_twilio.messages_to(STUDENT_PHONE)[-1]["body"]
    assert notice.endswith("now expires Tue Jan 7 12:45 EST.")
    assert page.inner_text("#expires-at") == "Tue Jan 7 2031, 12:45 EST"

    # Lists name the zone of each row's times too.
    page.click(".breadcrumbs a:text('Sessions')")
    row = page.inner_text("#result_list tbody tr")
    assert "Tue Jan 7 2031, 09:30 EST" in row and "Tue Jan 7 2031, 12:45 EST" in row
    page.click("#nav-sidebar a:text('Accounts')")
    assert page.inner_text("#result_list tbody tr td.field-joined").endswith(" EST")
