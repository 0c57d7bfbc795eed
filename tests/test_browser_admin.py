"""Headless Chromium drives the admin the way an instructor does: log in, create a session,
see the join card, watch an account appear after a (signed, simulated) text, revoke it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import requests
from django.db import connections

from registrations.models import Account, AccountStatus, Classroom, Session
from tests.conftest import PUBLIC_BASE_URL, STUDENT_PHONE, make_instructor, sign, twilio_params

# serialized_rollback: the flush after this test must not re-create content types under new ids
# (post_migrate), or the next serialized_rollback test fails to restore the migrated data.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).parent / "artifacts"
TIMEOUT_MS = 20_000
IN_DELETION = (
    AccountStatus.SUSPENDING,
    AccountStatus.DELETING_WORKSPACES,
    AccountStatus.DELETING_USER,
)


def require_chromium() -> None:
    """Skip where Chromium is absent, unless REQUIRE_BROWSER=1 (CI) makes that a failure."""
    missing = None
    if not CHROMIUM.exists():
        missing = f"{CHROMIUM} is not installed (apt-get install chromium chromium-driver)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "the playwright package is not installed"
    if missing and os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"REQUIRE_BROWSER=1 but {missing}")
    if missing:
        pytest.skip(missing)


@pytest.fixture
def browser_page(monkeypatch):
    require_chromium()
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # still synchronous and safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        yield page
        browser.close()
        # ORM calls made while Playwright runs get a connection of their own; close it, or
        # PostgreSQL refuses to drop the test database at the end.
        connections.close_all()


@pytest.fixture
def app(live_server, twilio_settings, fake_coder, fake_twilio, sync_tasks, broker):
    # The live server speaks plain http on localhost.
    twilio_settings.SESSION_COOKIE_SECURE = twilio_settings.CSRF_COOKIE_SECURE = False
    twilio_settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
    instructor = make_instructor("alice")
    Classroom.objects.create(name="CS 101", owner=instructor)
    return live_server


def text_the_phrase(live_server, body: str) -> None:
    """Post the webhook the way Twilio does: signed for the public URL it was configured with."""
    params = twilio_params(body, STUDENT_PHONE)
    response = requests.post(
        live_server.url + "/twilio/sms/",
        data=params,
        headers={"X-Twilio-Signature": sign(PUBLIC_BASE_URL + "/twilio/sms/", params)},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def test_instructor_creates_a_session_sees_a_student_join_and_revokes_them(
    app, browser_page, fake_twilio
):
    page = browser_page
    page.goto(app.url + "/admin/login/")
    page.fill("#id_username", "alice")
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    page.wait_for_selector("#classroom-summary")

    page.goto(app.url + "/admin/registrations/session/add/")
    page.fill("#id_phrase", "python lab 3")
    page.wait_for_selector(".sms-preview .sms-segments")  # the live preview answered
    page.click("input[name=_save]")

    page.wait_for_selector(".join-card")
    session = Session.objects.get()
    assert page.url.endswith(f"/admin/registrations/session/{session.pk}/page/")
    assert page.inner_text("#join-phrase") == "python lab 3"
    assert page.inner_text("#join-number") == "+1 500-555-0006"
    assert page.locator(".join-qr svg path").count() == 1
    assert page.get_attribute(".join-qr a", "href") == "sms:+15005550006?body=python%20lab%203"
    assert page.is_visible("#roster-empty")

    text_the_phrase(app, "Python Lab 3")
    row = page.wait_for_selector("#roster tbody tr")  # the roster refreshes itself
    account = Account.objects.get()
    assert account.status == AccountStatus.ACTIVE
    assert "+•••••••••23" in row.inner_text() and account.coder_username in row.inner_text()
    page.wait_for_function("document.querySelector('#count-joined').textContent === '1'")
    assert [m["to"] for m in fake_twilio.messages] == [STUDENT_PHONE]

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "session-page.png"
    page.screenshot(path=str(screenshot), full_page=True)
    assert screenshot.stat().st_size > 10_000

    page.click(f"#account-{account.pk} a:text('Revoke')")
    page.wait_for_selector("#confirm-revoke")
    page.click("#confirm-revoke")
    page.wait_for_selector(".messagelist .success")
    assert "Revoked 1 account" in page.inner_text(".messagelist")
    assert page.url.endswith(f"/admin/registrations/session/{session.pk}/page/")
    account.refresh_from_db()
    assert account.deletion_reason == "revoked"
    assert account.status in (*IN_DELETION, AccountStatus.DELETED)
    if os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
        shutil.copy(screenshot, Path(__file__).parent.parent / "docs" / "session-page.png")
