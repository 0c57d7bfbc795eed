"""Headless Chromium: an instructor picks a Coder template for a new session, sees the
template's parameters appear as Coder reports them, fills them in, and saves."""

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
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_instructor_picks_a_template_and_fills_in_its_parameters(app, browser_page, fake_coder):
    fake_coder.add_template("python-lab", display_name="Python lab")
    fake_coder.set_template_parameters(
        "python-lab",
        [
            {
                "name": "region",
                "display_name": "Region",
                "options": [{"name": "Europe", "value": "eu"}, {"name": "America", "value": "us"}],
            },
            {"name": "cpus", "type": "number", "default_value": "2", "validation_max": 4},
        ],
    )
    page = browser_page
    log_in(page, app)
    page.goto(app.url + "/admin/registrations/session/add/")
    page.fill("#id_phrase", "python lab 3")
    assert "Choose a Coder template" in page.inner_text("#template-parameters")

    page.select_option("#id_coder_template", "python-lab")
    page.wait_for_selector("#id_tp_region")  # the inputs came from Coder's answer
    assert page.inner_text("label[for=id_tp_region]") == "Region (required)"
    assert page.input_value("#id_tp_cpus") == "2"  # the template's default

    # Too many CPUs: the form says so and keeps what was typed.
    page.select_option("#id_tp_region", "eu")
    page.fill("#id_tp_cpus", "8")
    page.click("input[name=_save]")
    page.wait_for_selector(".errorlist")
    assert "cpus: must be at most 4." in page.inner_text(".field-template_parameters")
    assert not Session.objects.exists()

    page.fill("#id_tp_cpus", "3")
    page.click("input[name=_save]")
    page.wait_for_selector(".join-card")
    assert Session.objects.get().template_parameters == {"region": "eu", "cpus": "3"}
