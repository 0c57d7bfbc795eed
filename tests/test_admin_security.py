"""Admin security: CSRF on every POST, login rate limiting, and production cookies and headers.

Instructor isolation is tested in test_admin_scoping.py and test_admin_walk.py, and
`check --deploy` in test_settings.py.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib import admin
from django.db import connection
from django.test import Client
from django.urls import URLPattern, URLResolver, reverse
from django.utils import timezone

from registrations.models import (
    Account,
    AccountStatus,
    Classroom,
    LoginFailure,
    LoginThrottle,
    Session,
)
from registrations.security import client_network, username_wait
from tests.conftest import at_once, make_account, make_session

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
LOGIN = "/admin/login/"


def admin_routes() -> list[str]:
    """Every route of the admin site, with converters left in (e.g. `<path:object_id>`)."""

    def walk(patterns: list, prefix: str) -> list[str]:
        routes = []
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                routes += walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern):
                routes.append(route)
        return routes

    return sorted(set(walk(admin.site.get_urls(), "admin/")))


def concrete(route: str, ids: dict[str, int]) -> str:
    """Fill a route's converters, with one of the instructor's own objects where it takes one."""
    if route.startswith("admin/^("):
        return "/admin/registrations/"  # the app index, a regular expression route
    model = route.split("/")[2] if route.count("/") > 2 else ""
    path = route.replace("<path:object_id>", str(ids.get(model, 1)))
    path = path.replace("(?P<url>.*)$", "nowhere/")  # the catch-all route
    return "/" + re.sub(r"<[^>]+>", "1", path)


@pytest.fixture
def csrf_client(instructor, open_session):
    client = Client(enforce_csrf_checks=True)
    client.force_login(instructor)
    return client


def state() -> list:
    return [list(Session.objects.values()), list(Account.objects.values())]


def test_every_admin_post_without_a_csrf_token_is_refused(csrf_client, open_session):
    account = make_account(open_session, status=AccountStatus.ACTIVE, coder_username="cs-csrf")
    ids = {"session": open_session.pk, "account": account.pk,
           "classroom": open_session.classroom.pk}
    before = state()
    routes = admin_routes()
    assert len(routes) > 30

    for route in routes:
        url = concrete(route, ids)
        response = csrf_client.post(url, {"confirm": "yes", "action": "close", "minutes": "60",
                                          "post": "yes", "phones": "+14155550166"})
        assert response.status_code == 403, url
        assert b"CSRF" in response.content, url
    assert state() == before


def test_the_same_post_with_the_token_goes_through(csrf_client, open_session):
    page = csrf_client.get(reverse("admin:registrations_session_page", args=[open_session.pk]))
    token = page.context["csrf_token"]

    response = csrf_client.post(
        reverse("admin:registrations_session_extend", args=[open_session.pk]),
        {"minutes": "30", "csrfmiddlewaretoken": str(token)},
    )

    assert response.status_code == 302
    assert Session.objects.get().expires_at > open_session.expires_at


def test_the_login_form_needs_a_csrf_token(instructor):
    response = Client(enforce_csrf_checks=True).post(
        LOGIN, {"username": "alice", "password": "pw"}
    )

    assert response.status_code == 403


def login(client: Client, password: str, username: str = "alice", **headers):
    return client.post(LOGIN, {"username": username, "password": password,
                               "next": "/admin/"}, **headers)


def logged_in(response) -> bool:
    return response.status_code == 302 and "_auth_user_id" in response.client.session


@pytest.fixture
def limits(settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    settings.LOGIN_FAILURE_WINDOW_MINUTES = 15
    settings.NUM_PROXIES = 0
    return settings


def test_after_too_many_failures_even_the_right_password_is_refused(
    client, instructor, limits, caplog
):
    for _ in range(3):
        assert login(client, "wrong").status_code == 200

    response = login(client, "pw")

    assert not logged_in(response)
    assert response.status_code == 200
    assert "Too many failed login attempts for this username. Please wait 15 minutes" in \
        response.content.decode()
    assert "alice" not in caplog.text


def test_failures_are_counted_per_username_and_address(client, instructor, limits):
    for _ in range(3):
        login(client, "wrong", REMOTE_ADDR="10.0.0.1")

    assert logged_in(login(client, "pw", REMOTE_ADDR="10.0.0.2"))


def test_the_lock_lifts_after_the_window(client, instructor, limits):
    for _ in range(3):
        login(client, "wrong")
    LoginFailure.objects.update(failed_at=timezone.now() - timedelta(minutes=16))

    assert logged_in(login(client, "pw"))


def test_a_success_clears_the_count_and_an_empty_password_does_not(client, instructor, limits):
    for _ in range(2):
        login(client, "wrong")
    login(client, "")
    assert LoginFailure.objects.count() == 2
    assert logged_in(login(client, "pw"))
    assert LoginFailure.objects.count() == 0


def test_unknown_usernames_are_limited_too(client, db, limits):
    for _ in range(3):
        login(client, "guess", username="nobody")

    assert "Too many failed" in login(client, "guess", username="nobody").content.decode()


def test_the_shared_count_stores_neither_username_nor_address(client, instructor, limits):
    login(client, "wrong", username="my-secret-password", REMOTE_ADDR="203.0.113.9")

    stored = json.dumps(list(LoginFailure.objects.values()), default=str)
    assert "my-secret-password" not in stored
    assert "203.0.113.9" not in stored


def test_behind_a_proxy_a_forged_forwarded_for_does_not_evade_the_limit(
    client, instructor, limits
):
    limits.NUM_PROXIES = 1
    for n in range(3):
        # The client forges the left part; our proxy appends the address it really saw.
        login(client, "wrong", HTTP_X_FORWARDED_FOR=f"198.51.100.{n}, 203.0.113.7",
              REMOTE_ADDR="10.0.0.254")

    response = login(client, "pw", HTTP_X_FORWARDED_FOR="198.51.100.99, 203.0.113.7",
                     REMOTE_ADDR="10.0.0.254")
    assert not logged_in(response)
    other = login(client, "pw", HTTP_X_FORWARDED_FOR="203.0.113.8", REMOTE_ADDR="10.0.0.254")
    assert logged_in(other)


PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.contrib import admin
from django.test import Client, override_settings
client = Client(HTTP_HOST="sms.example.edu")
# Only static storage differs: the manifest needs collectstatic, which the probe skips.
plain_storage = {**settings.STORAGES, "staticfiles": {
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
with override_settings(STORAGES=plain_storage):
    plain = client.get("/admin/login/")
    secure = client.get("/admin/login/", secure=True)
cookie = secure.cookies["csrftoken"]
print(json.dumps({
    "settings": {name: getattr(settings, name) for name in (
        "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY",
        "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS",
        "SECURE_PROXY_SSL_HEADER", "X_FRAME_OPTIONS", "DEBUG")},
    "login_form": admin.site.login_form.__name__,
    "plain": [plain.status_code, plain.get("Location", "")],
    "secure": [secure.status_code, dict(secure.headers)],
    "csrf_cookie": {"secure": cookie["secure"], "samesite": cookie["samesite"]},
}))
"""


def run_probe(**env: str) -> dict:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("DATABASE_URL", "REDIS_URL", "DEBUG")}
    environment.update(DJANGO_SETTINGS_MODULE="classroom_sms.settings", ENV_FILE="",
                       SECRET_KEY="s" * 50, ALLOWED_HOSTS="sms.example.edu",
                       PUBLIC_BASE_URL="https://sms.example.edu", **env)
    done = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=environment,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_production_settings_make_cookies_and_transport_secure():
    probe = run_probe()

    assert probe["settings"] == {
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SESSION_COOKIE_HTTPONLY": True,
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 31536000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "X_FRAME_OPTIONS": "DENY",
        "DEBUG": False,
    }
    assert probe["login_form"] == "RateLimitedAdminLoginForm"
    assert probe["plain"] == [301, "https://sms.example.edu/admin/login/"]
    status, headers = probe["secure"]
    assert status == 200
    assert headers["Strict-Transport-Security"].startswith("max-age=31536000")
    assert headers["X-Frame-Options"] == "DENY"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert probe["csrf_cookie"]["secure"] is True


def test_a_phrase_clash_does_not_name_another_instructors_classroom(
    client, instructor, classroom, other_instructor
):
    bobs = make_session(Classroom.objects.create(name="Bob Secret Class", owner=other_instructor),
                        "python lab 3")
    client.force_login(instructor)
    now = timezone.localtime()
    form = {
        "classroom": classroom.pk, "phrase": "Python Lab 3", "time_zone": "UTC",
        "opens_at_0": now.date(), "opens_at_1": now.time().strftime("%H:%M"),
        "closes_at_0": (now + timedelta(minutes=30)).date(),
        "closes_at_1": (now + timedelta(minutes=30)).time().strftime("%H:%M"),
        "expires_at_0": (now + timedelta(hours=3)).date(),
        "expires_at_1": (now + timedelta(hours=3)).time().strftime("%H:%M"),
        "warn_minutes": "10", "capacity": "10",
    }

    response = client.post(reverse("admin:registrations_session_add"), form)

    [message] = response.context["adminform"].form.errors["phrase"]
    assert f"is already the phrase of another session (session #{bobs.pk})" in message
    assert "Bob Secret Class" not in response.content.decode()


BOB_SECRETS = ("Bob Secret Class", "bob secret phrase", "cs-bobsecret", "+14155550177")


# The autocomplete of an annotated queryset has no ordering: harmless here.
@pytest.mark.filterwarnings("ignore::django.core.paginator.UnorderedObjectListWarning")
@pytest.mark.parametrize(
    "query",
    [
        "autocomplete/?app_label=registrations&model_name=account&field_name=session&term=bob",
        "autocomplete/?app_label=registrations&model_name=session&field_name=classroom&term=Bob",
        "registrations/session/add/?classroom={classroom}&phrase=x",
        "registrations/session/add/?_changelist_filters=classroom__id__exact%3D{classroom}",
        "registrations/session/?classroom__id__exact={classroom}",
        "registrations/account/?session__classroom__id__exact={classroom}",
        "registrations/account/?session__classroom__owner__username=bob",
        "registrations/account/?q=bobsecret",
        "registrations/inboundmessage/?session__id__exact={session}",
        "registrations/outboundmessage/?account__id__exact={account}",
        "registrations/classroom/?owner__id__exact={owner}",
    ],
)
def test_query_strings_naming_another_instructors_objects_reveal_nothing(
    client, instructor, classroom, other_instructor, query
):
    # test_admin_walk.py covers URLs that take an object id; these take ids in the query.
    bobs = Classroom.objects.create(name="Bob Secret Class", owner=other_instructor)
    session = make_session(bobs, "bob secret phrase")
    account = make_account(session, "+14155550177", coder_username="cs-bobsecret")
    client.force_login(instructor)
    url = "/admin/" + query.format(classroom=bobs.pk, session=session.pk, account=account.pk,
                                   owner=other_instructor.pk)

    response = client.get(url)

    assert response.status_code in (200, 400, 403, 404)
    content = response.content.decode()
    assert not [secret for secret in BOB_SECRETS if secret in content]


@pytest.fixture
def username_limits(limits):
    limits.LOGIN_FAILURE_LIMIT = 100  # only the per-username limit in play
    limits.LOGIN_USERNAME_FAILURE_LIMIT = 3
    limits.LOGIN_USERNAME_DELAY_MAX_SECONDS = 300
    return limits


def fail_from_many_addresses(client: Client, times: int) -> None:
    for n in range(times):
        login(client, "wrong", REMOTE_ADDR=f"198.51.100.{n}")


def test_guesses_from_many_addresses_make_the_username_wait(client, instructor, username_limits):
    fail_from_many_addresses(client, 3)

    response = login(client, "pw", REMOTE_ADDR="203.0.113.50")

    assert not logged_in(response)
    assert "Too many failed login attempts for this username. Please wait 1 minutes" in \
        response.content.decode()


def test_the_username_delay_doubles_with_each_failure_and_is_capped(
    client, instructor, username_limits
):
    fail_from_many_addresses(client, 3)
    throttle = LoginThrottle.objects.get()
    now = timezone.now()

    waits = []
    for failures in (3, 4, 5, 20):
        throttle.failures = failures
        waits.append(round(username_wait(throttle, throttle.last_failure_at)))
    assert waits == [1, 2, 4, 300]
    throttle.failures = 5
    assert username_wait(throttle, now + timedelta(seconds=5)) == 0


def test_after_the_delay_the_right_password_gets_in_and_resets_it(
    client, instructor, username_limits
):
    fail_from_many_addresses(client, 3)
    LoginThrottle.objects.update(last_failure_at=timezone.now() - timedelta(seconds=2))

    assert logged_in(login(client, "pw", REMOTE_ADDR="203.0.113.50"))
    assert LoginThrottle.objects.get().failures == 0


def test_an_ipv6_client_is_counted_by_its_slash_64(client, instructor, limits):
    for n in range(3):
        login(client, "wrong", REMOTE_ADDR=f"2001:db8:1:2::{n + 1:x}")

    assert not logged_in(login(client, "pw", REMOTE_ADDR="2001:db8:1:2:ffff::9"))
    assert logged_in(login(client, "pw", REMOTE_ADDR="2001:db8:1:3::1"))


def test_client_networks():
    assert client_network("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2::/64"
    assert client_network("::ffff:203.0.113.9") == "203.0.113.9"
    assert client_network("203.0.113.9") == "203.0.113.9"


@pytest.mark.postgres
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="parallel logins need PostgreSQL (SQLite lets one writer in at a time)",
)
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_parallel_guesses_for_one_username_never_exceed_the_limit(instructor, limits):
    statuses: list[int] = []

    def guess() -> None:
        statuses.append(login(Client(), "wrong", REMOTE_ADDR="192.0.2.1").status_code)

    at_once(guess, workers=20)

    assert statuses == [200] * 20
    # Only failures that were judged are counted; the rest were refused unjudged.
    assert LoginFailure.objects.count() == 3
    assert LoginThrottle.objects.get().failures == 3
