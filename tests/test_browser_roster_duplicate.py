"""Headless Chromium: an instructor downloads a session's roster and duplicates the session."""

# Fixtures imported from tests.browser are test parameters of the same name.
# ruff: noqa: F811

from __future__ import annotations

from pathlib import Path

import pytest

from registrations.models import AccountStatus, Classroom, Session
from tests.browser import (  # noqa: F401  (app, browser_page, live_app: fixtures)
    app,
    browser_page,
    live_app,
    log_in,
)
from tests.conftest import make_account, make_session

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_instructor_downloads_the_roster_and_duplicates_the_session(app, browser_page):
    page = browser_page
    session = make_session(Classroom.objects.get(), time_zone="America/Chicago")
    make_account(session, coder_username="cs-ada", status=AccountStatus.ACTIVE)
    log_in(page, app)
    page.goto(f"{app.url}/admin/registrations/session/{session.pk}/page/")

    with page.expect_download() as download:
        page.click("#download-roster")
    text = Path(download.value.path()).read_text(encoding="utf-8-sig")
    assert download.value.suggested_filename == f"roster-{session.pk}-python-lab-3.csv"
    assert "joined at (America/Chicago)" in text
    assert "cs-ada" in text and "'+•••••••••23" in text

    page.click("#duplicate")
    assert page.input_value("#id_phrase") == "python lab 3 week 2"
    page.click("#confirm-duplicate")
    page.wait_for_selector(".messagelist .success")
    copy = Session.objects.get(phrase="python lab 3 week 2")
    assert page.url.endswith(f"/admin/registrations/session/{copy.pk}/page/")
    assert page.inner_text("#join-opens").startswith("Opens")  # a week later: not open yet
