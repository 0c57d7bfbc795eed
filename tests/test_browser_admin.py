"""Headless Chromium drives the admin the way an instructor does: log in, create a session,
see the join card, watch an account appear after a (signed, simulated) text, send that student
a new password (after a confirmation that names them), then revoke them."""

# Fixtures imported from tests.browser are test parameters of the same name.
# ruff: noqa: F811

from __future__ import annotations

import pytest

from registrations.models import Account, AccountStatus, Session
from tests.browser import (  # noqa: F401  (app, browser_page, live_app: fixtures)
    app,
    browser_page,
    live_app,
    log_in,
    screenshot,
    text_the_phrase,
)
from tests.conftest import STUDENT_PHONE

# serialized_rollback: the flush after this test must not re-create content types under new ids
# (post_migrate), or the next serialized_rollback test fails to restore the migrated data.
pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

IN_DELETION = (
    AccountStatus.SUSPENDING,
    AccountStatus.DELETING_WORKSPACES,
    AccountStatus.DELETING_USER,
)


def test_instructor_creates_a_session_sees_a_student_join_resends_and_revokes(
    app, browser_page, fake_twilio
):
    page = browser_page
    log_in(page, app)
    assert page.inner_text("#site-name") == "Classroom SMS"

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
    assert "Open." in page.inner_text("#state-banner")
    assert app.url not in page.inner_text("#what-students-get")  # the Coder URL, not ours
    assert "warning SMS" in page.inner_text("#what-happens-at-expiry")

    text_the_phrase(app, "Python Lab 3")
    row = page.wait_for_selector("#roster tbody tr")  # the roster refreshes itself
    account = Account.objects.get()
    assert account.status == AccountStatus.ACTIVE
    assert "+•••••••••23" in row.inner_text() and account.coder_username in row.inner_text()
    page.wait_for_function("document.querySelector('#count-joined').textContent === '1'")
    assert [m["to"] for m in fake_twilio.messages] == [STUDENT_PHONE]
    screenshot(page, "session-page.png")

    # Resend: a confirmation that names the student and says the old password stops working.
    page.click(f"#account-{account.pk} a:text('Resend')")
    page.wait_for_selector("#confirm-resend")
    assert page.inner_text("#resend-who") == account.coder_username
    assert "+•••••••••23" in page.inner_text("#resend-what")
    assert "old password stops working at once" in page.inner_text("#resend-what")
    assert len(fake_twilio.messages) == 1  # nothing changed before the confirmation
    page.click("#confirm-resend")
    page.wait_for_selector(".messagelist .success")
    flash = page.inner_text(".messagelist")
    assert f"Sending {account.coder_username} (+•••••••••23) a new password by SMS" in flash
    assert "old password stops working" in flash
    assert page.url.endswith(f"/admin/registrations/session/{session.pk}/page/")
    assert [m["body"].split("\n")[0] for m in fake_twilio.messages][-1] == "New Coder password."

    # Revoke: the confirmation says the student will be texted.
    page.click(f"#account-{account.pk} a:text('Revoke')")
    page.wait_for_selector("#confirm-revoke")
    assert account.coder_username in page.inner_text("#revoke-what")
    assert "texted that their Coder account and its workspaces" in page.inner_text("#revoke-sms")
    page.click("#confirm-revoke")
    page.wait_for_selector(".messagelist .success")
    assert f"Revoked {account.coder_username} (+•••••••••23)" in page.inner_text(".messagelist")
    assert page.url.endswith(f"/admin/registrations/session/{session.pk}/page/")
    account.refresh_from_db()
    assert account.deletion_reason == "revoked"
    assert account.status in (*IN_DELETION, AccountStatus.DELETED)
