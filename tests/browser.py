"""Headless Chromium for the browser tests (tests/test_browser_*.py): fixtures and helpers.

Each browser test module imports the fixtures it uses from here, e.g.

    from tests.browser import app, browser_page  # noqa: F401  (pytest fixtures)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.db import connections

from registrations.models import Classroom
from tests.conftest import PUBLIC_BASE_URL, STUDENT_PHONE, make_instructor, sign, twilio_params

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
DOCS = Path(__file__).parent.parent / "docs"
TIMEOUT_MS = 20_000
# A browser in another zone than the server and the sessions: times must still read right.
BROWSER_ZONE = "Asia/Tokyo"


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
def browser_page(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    require_chromium()
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are
    # still synchronous and safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        context = browser.new_context(
            viewport={"width": 1400, "height": 1000}, timezone_id=BROWSER_ZONE
        )
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        yield page
        browser.close()
        # ORM calls made while Playwright runs get a connection of their own; close it, or
        # PostgreSQL refuses to drop the test database at the end.
        connections.close_all()


@pytest.fixture
def live_app(live_server: Any, twilio_settings: Any, fake_coder: Any, fake_twilio: Any,
             sync_tasks: Any, broker: Any) -> Any:
    """The live server, with fake Coder and Twilio, and the instructor alice (no classroom)."""
    # The live server speaks plain http on localhost.
    twilio_settings.SESSION_COOKIE_SECURE = twilio_settings.CSRF_COOKIE_SECURE = False
    twilio_settings.ALLOWED_HOSTS = ["localhost", "127.0.0.1"]
    make_instructor("alice")
    return live_server


@pytest.fixture
def app(live_app: Any) -> Any:
    """As live_app, and alice has her classroom "CS 101"."""
    from django.contrib.auth.models import User

    Classroom.objects.create(name="CS 101", owner=User.objects.get(username="alice"))
    return live_app


def log_in(page: Any, live_server: Any, username: str = "alice") -> None:
    page.goto(live_server.url + "/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", "pw")
    page.click("input[type=submit]")
    page.wait_for_selector("#classroom-summary")


def text_the_phrase(live_server: Any, body: str, phone: str = STUDENT_PHONE) -> None:
    """Post the webhook the way Twilio does: signed for the public URL it was configured with."""
    params = twilio_params(body, phone)
    response = requests.post(
        live_server.url + "/twilio/sms/",
        data=params,
        headers={"X-Twilio-Signature": sign(PUBLIC_BASE_URL + "/twilio/sms/", params)},
        timeout=30,
    )
    assert response.status_code == 200, response.text


def screenshot(page: Any, name: str, *, docs: bool = True) -> Path:
    """Save a full-page screenshot under tests/artifacts, and (README's pictures) into docs/
    when UPDATE_DOCS_SCREENSHOT=1."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    if docs and os.environ.get("UPDATE_DOCS_SCREENSHOT") == "1":
        shutil.copy(path, DOCS / name)
    return path
