"""Headless Chromium as a brand-new instructor: the admin names the product, offers to create
the classroom first (its co-instructor picker lists only other instructors), then leads to the
session with that classroom chosen; "View site" opens the dashboard."""

# Fixtures imported from tests.browser are test parameters of the same name.
# ruff: noqa: F811

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from registrations.models import Classroom, Session
from tests.browser import browser_page, live_app, log_in  # noqa: F401  (fixtures)
from tests.conftest import make_instructor

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_a_new_instructor_creates_the_classroom_then_the_session(live_app, browser_page):
    page = browser_page
    make_instructor("bob")
    User.objects.create_superuser("root", "root@example.test", "pw")
    log_in(page, live_app)
    assert page.inner_text("#site-name") == "Classroom SMS"
    assert "Django administration" not in page.content()

    assert page.is_visible("#first-steps")
    page.click("#create-classroom")
    page.wait_for_selector("#id_name")
    pickable = page.eval_on_selector_all(
        "#id_co_instructors_from option", "options => options.map(o => o.textContent)"
    )
    assert pickable == ["bob"]  # not herself, not the superuser
    page.fill("#id_name", "CS 101")
    page.click("input[name=_save]")

    page.wait_for_selector("#id_phrase")
    classroom = Classroom.objects.get()
    assert "/admin/registrations/session/add/" in page.url
    assert page.input_value("#id_classroom") == str(classroom.pk)
    assert "Now create its first session." in page.inner_text(".messagelist")
    page.fill("#id_phrase", "python lab 1")
    page.click("input[name=_save]")
    page.wait_for_selector(".join-card")
    assert Session.objects.get().classroom == classroom

    page.click("#user-tools a:text('View site')")
    page.wait_for_selector("#open-sessions")
    assert page.url.endswith("/admin/registrations/session/dashboard/")
