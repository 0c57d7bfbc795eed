"""Headless Chromium walks one session through its states as an instructor sees them: scheduled
(opens at ...), opened early, students join, closed, "End now" (no join card any more,
deletion progress instead), and, once Coder is empty, a summary that the page switches to by
itself."""

# Fixtures imported from tests.browser are test parameters of the same name.
# ruff: noqa: F811

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from registrations.models import Account, AccountStatus, Classroom
from tests.browser import (  # noqa: F401  (app, browser_page, live_app: fixtures)
    app,
    browser_page,
    live_app,
    log_in,
    screenshot,
    text_the_phrase,
)
from tests.conftest import make_session

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

PHONES = ("+14155550101", "+14155550102", "+14155550103")


def test_the_session_page_follows_the_session_from_scheduled_to_all_deleted(
    app, browser_page, fake_coder
):
    page = browser_page
    fake_coder.add_template("docker")
    later = timezone.now() + timedelta(hours=1)
    session = make_session(
        Classroom.objects.get(),
        "python lab 4",
        opens_at=later,
        closes_at=later + timedelta(minutes=30),
        expires_at=later + timedelta(hours=3),
        coder_template="docker",
    )
    log_in(page, app)
    page.goto(f"{app.url}/admin/registrations/session/{session.pk}/page/")

    # Scheduled: the join card can be projected already, and says when it opens.
    assert "Not open yet." in page.inner_text("#state-banner")
    assert page.inner_text("#join-opens").startswith("Opens ")
    assert page.inner_text("#join-opens").endswith(" UTC")
    page.click("input[value='Open enrollment now']")
    page.wait_for_selector(".messagelist .success")
    assert page.inner_text(".messagelist").endswith(" UTC.")  # the flash names the zone
    assert "Open." in page.inner_text("#state-banner")
    assert page.is_visible("#count-seats-left")

    for phone in PHONES:
        text_the_phrase(app, "python lab 4", phone)
    page.wait_for_function("document.querySelector('#count-joined').textContent === '3'")

    # Closed: nothing to project any more, and the way to let latecomers in.
    page.click("input[value='Close enrollment now']")
    page.wait_for_selector("#reopen")
    assert "Enrollment closed" in page.inner_text("#state-banner")
    for gone in ("#join-phrase", "#present-toggle", "#count-seats-left"):
        assert page.locator(gone).count() == 0, gone

    # End now: the page is no longer a join card but the deletion's progress.
    page.click("#end-now")
    page.click("input[value='Yes, end now and delete 3 accounts']")
    page.wait_for_selector("#deletion-progress")
    assert "Ended early" in page.inner_text("#state-banner")
    for gone in ("#join-phrase", "#present-toggle", "#count-seats-left", "#end-now"):
        assert page.locator(gone).count() == 0, gone
    assert page.inner_text("#count-remaining") == "3"
    assert page.inner_text("#count-deleted") == "0"
    assert page.inner_text("#deletion-eta").startswith("About ")
    screenshot(page, "session-ended.png")

    # Coder finishes (here: the pipeline's last step, written directly); the page notices.
    Account.objects.filter(session=session).update(
        status=AccountStatus.DELETED, deleted_at=timezone.now(), phone=None
    )
    page.wait_for_selector("#summary", timeout=15_000)
    assert page.inner_text("#summary-joined") == "3"
    assert "All 3 accounts and their workspaces were deleted" in page.inner_text(
        "#summary-deleted"
    )
    assert page.locator("#deletion-progress").count() == 0
    screenshot(page, "session-summary.png", docs=False)
