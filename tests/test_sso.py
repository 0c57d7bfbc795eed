"""Single sign-on for staff against a fake OpenID Connect provider over real HTTP: who gets in
as what, what is refused, and PASSWORD_LOGIN=0 (registrations/sso.py)."""

# Fixtures imported from tests.sso are test parameters of the same name.
# ruff: noqa: F811

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.contrib.auth.models import User
from django.contrib.messages import get_messages

from registrations.checks import check_login_methods
from registrations.models import SsoIdentity
from tests.conftest import make_instructor
from tests.fakes.oidc import new_key
from tests.sso import ADMIN_GROUP, INSTRUCTOR_GROUP, configure, oidc_provider, sso_log_in  # noqa: F401

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


def logged_in_user(client) -> User | None:
    response = client.get("/admin/")
    if response.status_code != 200:
        return None
    return response.wsgi_request.user


def refused(client, response) -> str:
    """Assert the callback sent the browser back to the login page, not logged in; the reason."""
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/"
    assert logged_in_user(client) is None
    (message,) = messages_of(response)
    return message


# --- The whole flow ---------------------------------------------------------------------------


def test_an_instructor_logs_in_through_the_provider_and_lands_on_the_admin(client, oidc_provider):
    response = sso_log_in(client, next_url="/admin/registrations/session/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/registrations/session/"
    assert client.get("/admin/registrations/session/").status_code == 200

    user = User.objects.get(username="ada")
    assert user.email == "ada@example.edu"
    assert user.is_staff and not user.is_superuser
    assert [group.name for group in user.groups.all()] == ["Instructors"]
    assert user.has_perm("registrations.add_session")  # what createinstructor gives
    assert not user.has_usable_password()
    identity = SsoIdentity.objects.get()
    assert (identity.user, identity.issuer, identity.subject) == (
        user,
        oidc_provider.issuer,
        "ada-0001",
    )
    # Real HTTP to the provider: the code was redeemed at /token once.
    assert ("token", "ada-0001") in oidc_provider.events


def test_the_login_page_offers_the_provider_and_logout_works(client, oidc_provider):
    page = client.get("/admin/login/?next=/admin/")
    assert b"Log in with SSO" in page.content
    assert b'href="/oidc/authenticate/?next=/admin/"' in page.content
    assert b'id="id_password"' in page.content  # the password form too, by default

    sso_log_in(client)
    assert logged_in_user(client) is not None
    assert client.post("/admin/logout/").status_code == 200
    assert logged_in_user(client) is None


def test_the_login_lasts_the_configured_hours(client, oidc_provider, settings):
    settings.OIDC_SESSION_HOURS = 2
    sso_log_in(client)
    assert client.session.get_expiry_age() == 2 * 3600


def test_a_second_login_is_the_same_account(client, oidc_provider):
    sso_log_in(client)
    client.post("/admin/logout/")
    sso_log_in(client)
    assert logged_in_user(client).username == "ada"
    assert User.objects.count() == 1 and SsoIdentity.objects.count() == 1


def test_the_provider_endpoints_can_be_set_without_discovery(client, oidc_provider, settings):
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = oidc_provider.url + "/authorize"
    settings.OIDC_OP_TOKEN_ENDPOINT = oidc_provider.url + "/token"
    settings.OIDC_OP_USER_ENDPOINT = oidc_provider.url + "/userinfo"
    settings.OIDC_OP_JWKS_ENDPOINT = oidc_provider.url + "/jwks"
    settings.OIDC_TOKEN_USE_BASIC_AUTH = True
    sso_log_in(client)
    assert logged_in_user(client).username == "ada"
    assert "/.well-known/openid-configuration" not in oidc_provider.paths


# --- Roles from groups ------------------------------------------------------------------------


def test_a_member_of_the_admin_group_becomes_a_superuser(client, oidc_provider):
    oidc_provider.user["groups"] = [ADMIN_GROUP, INSTRUCTOR_GROUP]
    sso_log_in(client)
    user = logged_in_user(client)
    assert user.is_superuser and user.is_staff


def test_someone_in_no_configured_group_is_refused_and_no_account_is_made(client, oidc_provider):
    oidc_provider.user["groups"] = ["students"]
    message = refused(client, sso_log_in(client))
    assert "not in a group allowed to use this site" in message
    assert not User.objects.exists() and not SsoIdentity.objects.exists()


def test_no_groups_claim_at_all_is_refused(client, oidc_provider):
    del oidc_provider.user["groups"]
    refused(client, sso_log_in(client))
    assert not User.objects.exists()


def test_groups_are_read_from_the_configured_claim(client, oidc_provider, settings):
    settings.OIDC_GROUPS_CLAIM = "roles"
    oidc_provider.user["roles"] = INSTRUCTOR_GROUP  # one group, as a string
    oidc_provider.user["groups"] = []
    sso_log_in(client)
    assert logged_in_user(client).groups.filter(name="Instructors").exists()


def test_removed_from_the_group_the_next_login_loses_instructor_access(client, oidc_provider):
    sso_log_in(client)
    client.post("/admin/logout/")
    oidc_provider.user["groups"] = []
    refused(client, sso_log_in(client))
    user = User.objects.get(username="ada")
    assert not user.is_staff and not user.is_superuser
    assert not user.groups.exists()


def test_an_admin_moved_to_the_instructor_group_is_no_longer_a_superuser(client, oidc_provider):
    oidc_provider.user["groups"] = [ADMIN_GROUP]
    sso_log_in(client)
    client.post("/admin/logout/")
    oidc_provider.user["groups"] = [INSTRUCTOR_GROUP]
    sso_log_in(client)
    user = logged_in_user(client)
    assert user.is_staff and not user.is_superuser
    assert user.groups.filter(name="Instructors").exists()


def test_a_deactivated_account_stays_out(client, oidc_provider):
    sso_log_in(client)
    client.post("/admin/logout/")
    User.objects.filter(username="ada").update(is_active=False)
    assert "deactivated" in refused(client, sso_log_in(client))


# --- Matching accounts: no takeover --------------------------------------------------------


def test_an_existing_instructor_with_the_verified_email_is_linked(client, oidc_provider):
    carol = make_instructor("carol")
    oidc_provider.user.update(sub="carol-7", email="carol@example.test", preferred_username="c")
    sso_log_in(client)
    assert logged_in_user(client) == carol
    assert SsoIdentity.objects.get().user == carol


def test_an_unverified_email_never_takes_over_an_account(client, oidc_provider):
    carol = make_instructor("carol")
    oidc_provider.user.update(
        sub="mallory", email="carol@example.test", email_verified=False, preferred_username="carol"
    )
    sso_log_in(client)
    user = logged_in_user(client)
    assert user != carol and user.username != "carol"
    assert user.email == ""  # an address the provider does not vouch for is not kept
    assert SsoIdentity.objects.get().user == user


def test_a_superuser_is_never_taken_over_by_email(client, oidc_provider, superuser):
    oidc_provider.user.update(sub="someone", email="root@example.test", groups=[ADMIN_GROUP])
    sso_log_in(client)
    user = logged_in_user(client)
    assert user != superuser
    assert not SsoIdentity.objects.filter(user=superuser).exists()


def test_a_changed_email_at_the_provider_still_finds_the_same_account(client, oidc_provider):
    sso_log_in(client)
    client.post("/admin/logout/")
    oidc_provider.user["email"] = "ada.lovelace@example.edu"
    sso_log_in(client)
    user = logged_in_user(client)
    assert user.username == "ada" and user.email == "ada.lovelace@example.edu"
    assert User.objects.count() == 1


def test_an_account_linked_to_one_identity_is_not_linked_to_another(client, oidc_provider):
    sso_log_in(client)
    client.post("/admin/logout/")
    # Another person at the provider, now holding ada's old address.
    oidc_provider.user.update(sub="newcomer", preferred_username="ada")
    sso_log_in(client)
    newcomer = logged_in_user(client)
    assert newcomer.username != "ada"
    assert SsoIdentity.objects.get(subject="ada-0001").user.username == "ada"


# --- Tampering and failures ----------------------------------------------------------------


def test_a_callback_with_a_state_this_browser_never_started_is_refused(client, oidc_provider):
    client.get("/oidc/authenticate/")  # a login started, with its own state
    other = requests.get(
        oidc_provider.url + "/authorize",
        params={"client_id": oidc_provider.client_id, "redirect_uri": "http://testserver/oidc/"
                "callback/", "state": "forged", "response_type": "code"},
        allow_redirects=False,
        timeout=10,
    )
    query = {k: v[0] for k, v in parse_qs(urlsplit(other.headers["Location"]).query).items()}
    refused(client, client.get("/oidc/callback/", query))
    assert not User.objects.exists()
    # The code was never redeemed.
    assert not [event for event in oidc_provider.events if event[0] == "token"]


def test_a_callback_without_a_login_started_is_refused(client, oidc_provider):
    refused(client, client.get("/oidc/callback/", {"code": "x", "state": "y"}))


def test_a_token_with_another_nonce_is_refused(client, oidc_provider):
    oidc_provider.token_overrides = {"nonce": "replayed-from-another-login"}
    refused(client, sso_log_in(client))
    assert not User.objects.exists()


def test_a_token_without_a_nonce_is_refused(client, oidc_provider):
    oidc_provider.token_overrides = {"nonce": None}
    refused(client, sso_log_in(client))
    assert not User.objects.exists()


@pytest.mark.parametrize(
    "override",
    [
        {"aud": "some-other-app"},
        {"iss": "http://127.0.0.1:1/evil"},
        {"exp": 1_000_000_000},
        {"aud": ["classroom-sms", "some-other-app"], "azp": "some-other-app"},
    ],
    ids=["audience", "issuer", "expired", "azp"],
)
def test_a_token_meant_for_someone_else_or_expired_is_refused(client, oidc_provider, override):
    oidc_provider.token_overrides = override
    refused(client, sso_log_in(client))
    assert not User.objects.exists()


def test_a_token_signed_with_another_key_is_refused(client, oidc_provider):
    oidc_provider.sign_with = new_key()
    refused(client, sso_log_in(client))
    assert not User.objects.exists()


def test_keys_without_a_key_id_are_a_message_not_an_error(client, oidc_provider):
    oidc_provider.kid = None
    refused(client, sso_log_in(client))
    assert not User.objects.exists()


def test_userinfo_about_another_person_is_refused(client, oidc_provider):
    oidc_provider.userinfo_overrides = {"sub": "someone-else"}
    refused(client, sso_log_in(client))
    assert not User.objects.exists()


def test_the_provider_saying_no_is_a_message_not_an_error(client, oidc_provider):
    oidc_provider.deny = True
    assert "try again" in refused(client, sso_log_in(client))


def test_a_provider_that_is_down_is_a_message_not_an_error(client, oidc_provider):
    oidc_provider.stop()
    response = client.get("/oidc/authenticate/")
    assert response.status_code == 302 and response["Location"] == "/admin/login/"
    assert messages_of(response) == ["SSO did not answer. Please try again in a minute."]


def test_a_wrong_client_secret_is_a_message_not_an_error(client, oidc_provider, settings):
    settings.OIDC_RP_CLIENT_SECRET = "not-the-secret"
    assert "did not answer" in refused(client, sso_log_in(client))


def test_a_password_login_posted_with_a_code_in_its_address_does_not_run_the_flow(
    client, oidc_provider
):
    response = client.post(
        "/admin/login/?code=abc&state=def", {"username": "ada", "password": "x"}
    )
    assert response.status_code == 200  # the form again, with its error
    assert logged_in_user(client) is None
    assert not [event for event in oidc_provider.events if event[0] == "token"]


# --- Off, and PASSWORD_LOGIN=0 -----------------------------------------------------------------


def test_without_configuration_there_is_no_button_and_no_route(client, db):
    assert client.get("/oidc/authenticate/").status_code == 404
    assert client.get("/oidc/callback/").status_code == 404
    page = client.get("/admin/login/")
    assert b"Log in with" not in page.content and b'id="id_password"' in page.content


def test_with_password_login_off_the_form_is_gone_and_a_password_post_is_refused(
    client, settings, instructor
):
    with_provider = FakeOidcProviderContext(settings, password_login=False)
    with with_provider:
        page = client.get("/admin/login/")
        assert b"Log in with SSO" in page.content
        assert b'id="id_password"' not in page.content
        response = client.post("/admin/login/", {"username": "alice", "password": "pw"})
        assert response.status_code == 200
        assert b"Logging in with a password is turned off here" in response.content
        assert logged_in_user(client) is None
        # Not the form alone: no backend accepts a password either.
        assert not client.login(username="alice", password="pw")
        # Single sign-on still works, and permissions with it.
        sso_log_in(client)
        user = logged_in_user(client)
        assert user.username == "ada" and user.has_perm("registrations.add_session")


class FakeOidcProviderContext:
    """The oidc_provider fixture, as a context manager, for a test that sets its own options."""

    def __init__(self, settings, **options) -> None:
        from tests.fakes.oidc import FakeOidcProvider

        self.provider = FakeOidcProvider()
        self.settings = settings
        self.options = options

    def __enter__(self):
        self.provider.start()
        configure(self.settings, self.provider, **self.options)
        return self.provider

    def __exit__(self, *exc) -> None:
        self.provider.stop()


def test_password_login_off_without_sso_is_a_warning_and_says_so_on_the_login_page(
    client, settings
):
    settings.PASSWORD_LOGIN = False
    settings.OIDC_ENABLED = False
    (warning,) = check_login_methods()
    assert warning.id == "registrations.W010"
    assert b"nobody\n  can log in" in client.get("/admin/login/").content


def test_sso_with_no_group_configured_is_a_warning(settings, oidc_provider):
    settings.OIDC_INSTRUCTOR_GROUPS = settings.OIDC_ADMIN_GROUPS = []
    assert [w.id for w in check_login_methods()] == ["registrations.W011"]


def test_a_configured_app_has_no_login_warning(oidc_provider):
    assert check_login_methods() == []


# --- What settings.py makes of the environment --------------------------------------------------

PROBE = """
import json
from django.conf import settings
print(json.dumps({
    "enabled": settings.OIDC_ENABLED,
    "password_login": settings.PASSWORD_LOGIN,
    "backends": settings.AUTHENTICATION_BACKENDS,
    "instructor_groups": settings.OIDC_INSTRUCTOR_GROUPS,
}))
"""


def load_settings(**env: str) -> dict | str:
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OIDC_", "PASSWORD", "DATABASE_URL", "REDIS_URL"))
    }
    environment.update(
        {"DJANGO_SETTINGS_MODULE": "classroom_sms.settings", "ENV_FILE": "", "SECRET_KEY": "x"}
    )
    environment.update(env)
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=environment, capture_output=True, text=True
    )
    if done.returncode:
        return done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


SSO_ENV = {
    "OIDC_RP_CLIENT_ID": "classroom-sms",
    "OIDC_RP_CLIENT_SECRET": "s3cret",
    "OIDC_OP_ISSUER": "https://login.example.edu/realms/school/",
    "OIDC_INSTRUCTOR_GROUPS": "teachers,tas",
}


def test_settings_default_to_passwords_only():
    assert load_settings() == {
        "enabled": False,
        "password_login": True,
        "backends": ["django.contrib.auth.backends.ModelBackend"],
        "instructor_groups": [],
    }


def test_settings_with_sso_add_its_backend():
    loaded = load_settings(**SSO_ENV)
    assert loaded["enabled"] is True
    assert loaded["backends"] == [
        "django.contrib.auth.backends.ModelBackend",
        "registrations.sso.OidcBackend",
    ]
    assert loaded["instructor_groups"] == ["teachers", "tas"]


def test_settings_with_password_login_off_accept_no_password():
    loaded = load_settings(**SSO_ENV, PASSWORD_LOGIN="0")
    assert loaded["backends"] == [
        "registrations.sso.NoPasswordBackend",
        "registrations.sso.OidcBackend",
    ]


def test_half_an_sso_configuration_refuses_to_start():
    error = load_settings(OIDC_RP_CLIENT_ID="classroom-sms")
    assert "Single sign-on needs OIDC_RP_CLIENT_SECRET, OIDC_OP_ISSUER too" in error


def test_management_commands_work_with_password_login_off(tmp_path):
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OIDC_", "PASSWORD", "DATABASE_URL", "REDIS_URL"))
    }
    environment.update(
        DJANGO_SETTINGS_MODULE="classroom_sms.settings",
        ENV_FILE="",
        SECRET_KEY="x",
        PASSWORD_LOGIN="0",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        DJANGO_SUPERUSER_PASSWORD="a-long-enough-passphrase",
    )

    def manage(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=environment,
            capture_output=True, text=True,
        )

    assert manage("migrate", "--noinput").returncode == 0
    made = manage("createsuperuser", "--noinput", "--username", "root", "--email", "r@x.test")
    assert made.returncode == 0, made.stderr
    assert "registrations.W010" in made.stderr  # and it says nobody can log in
    made = manage(
        "createinstructor", "--username", "bea", "--email", "bea@x.test",
        "--password", "another-long-passphrase",
    )
    assert made.returncode == 0, made.stderr


def test_every_sso_setting_is_documented_in_env_example_and_the_readme():
    import re

    source = (ROOT / "classroom_sms" / "settings.py").read_text()
    names = set(re.findall(r'env\.\w+\("((?:OIDC_|PASSWORD_LOGIN)\w*)"', source))
    assert {"OIDC_RP_CLIENT_ID", "OIDC_OP_ISSUER", "PASSWORD_LOGIN"} <= names
    env_example = set(re.findall(r"^(\w+)=", (ROOT / ".env.example").read_text(), re.M))
    readme = (ROOT / "README.md").read_text()
    assert sorted(names - env_example) == []
    assert [name for name in sorted(names) if f"`{name}`" not in readme] == []
