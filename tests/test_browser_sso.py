"""Headless Chromium: a person clicks "Log in with SSO" on the admin login page, the fake
OpenID Connect provider (real HTTP) lets them through, and they land on the admin as an
instructor; with PASSWORD_LOGIN off the page offers nothing else."""

# Fixtures imported from tests.browser and tests.sso are test parameters of the same name.
# ruff: noqa: F811

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from tests.browser import browser_page, live_app, screenshot  # noqa: F401  (fixtures)
from tests.sso import configure, oidc_provider  # noqa: F401  (fixture)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def test_clicking_log_in_with_sso_lands_on_the_admin_as_an_instructor(
    live_app, oidc_provider, browser_page
):
    page = browser_page
    page.goto(live_app.url + "/admin/")
    page.wait_for_selector("#sso-login-button")
    assert page.inner_text("#sso-login-button") == "Log in with SSO"
    screenshot(page, "sso-login.png", docs=False)

    page.click("#sso-login-button")
    # Off to the provider and back: the admin index, with the first steps of a new instructor.
    page.wait_for_selector("#first-steps")
    assert page.url == live_app.url + "/admin/"
    assert page.text_content("#user-tools strong") == "ada"
    screenshot(page, "sso-landed.png", docs=False)

    user = User.objects.get(username="ada")
    assert user.is_staff and not user.is_superuser
    assert list(user.groups.values_list("name", flat=True)) == ["Instructors"]
    assert [path for path in oidc_provider.paths if path in ("/authorize", "/token")] == [
        "/authorize",
        "/token",
    ]

    page.click("#logout-form button")
    page.wait_for_selector("text=Logged out")
    page.goto(live_app.url + "/admin/")
    page.wait_for_selector("#sso-login-button")


def test_with_password_login_off_the_page_offers_only_the_provider(
    live_app, oidc_provider, browser_page, settings
):
    configure(settings, oidc_provider, password_login=False)
    page = browser_page
    page.goto(live_app.url + "/admin/login/")
    page.wait_for_selector("#sso-login-button")
    assert page.locator("#id_password").count() == 0
    assert page.locator("#login-form").count() == 0
    page.click("#sso-login-button")
    page.wait_for_selector("#first-steps")
