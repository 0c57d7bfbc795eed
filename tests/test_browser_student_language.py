"""Headless Chromium: an instructor picks Español for a new session, the live preview shows the
Spanish SMS with its encoding (and says when a typed "á" makes it UCS-2), and the student who
texts the phrase gets their credentials in Spanish."""

# Fixtures imported from tests.browser are test parameters of the same name.
# ruff: noqa: F811

from __future__ import annotations

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

PREVIEW = "#id_credentials_message + .sms-preview"


def wait_for_preview(page, text: str, part: str = "pre") -> str:
    """Wait until the credentials preview's `part` contains `text` (it answers after a pause)."""
    page.wait_for_function(
        "([selector, text]) => { const el = document.querySelector(selector);"
        " return !!el && el.textContent.includes(text); }",
        arg=[f"{PREVIEW} {part}", text],
    )
    return page.inner_text(f"{PREVIEW} {part}")


def test_instructor_picks_spanish_and_the_preview_and_the_sms_are_in_spanish(
    app, browser_page, fake_twilio
):
    page = browser_page
    log_in(page, app)
    page.goto(app.url + "/admin/registrations/session/add/")
    page.fill("#id_phrase", "python lab 3")
    wait_for_preview(page, "Your Coder account is ready.")
    assert page.input_value("#id_language") == "en"

    page.select_option("#id_language", label="Español")
    assert wait_for_preview(page, "Ya tienes tu cuenta de Coder.").startswith("Ya tienes")
    assert page.inner_text(f"{PREVIEW} strong") == (
        "Default text in Español (leave blank to keep it):"
    )
    assert "1 SMS segment, GSM-7 (160 characters per segment)" in page.inner_text(
        f"{PREVIEW} .sms-segments"
    )

    # An instructor's own text is sent as typed: an "á" makes the whole SMS UCS-2.
    page.fill("#id_credentials_message", "Tu cuenta está lista: {url} {email} {password}")
    meta = wait_for_preview(page, "UCS-2", ".sms-segments")
    assert "UCS-2 (70 characters per segment): á outside GSM-7" in meta
    screenshot(page, "session-language-preview.png", docs=False)
    page.fill("#id_credentials_message", "")
    wait_for_preview(page, "GSM-7 (160", ".sms-segments")

    page.click("input[name=_save]")
    page.wait_for_selector(".join-card")
    session = Session.objects.get()
    assert session.language == "es"
    assert page.inner_text("#session-language") == "Español"
    assert "One SMS, in Español," in page.inner_text("#what-students-get")

    text_the_phrase(app, "python lab 3")
    page.wait_for_selector("#roster tbody tr")  # the roster refreshes itself
    [message] = fake_twilio.messages_to(STUDENT_PHONE)
    assert message["body"].startswith("Ya tienes tu cuenta de Coder.\n")
    assert message["num_segments"] == 1
