"""Single sign-on test fixtures: a fake OpenID Connect provider the app is configured for.

    from tests.sso import oidc_provider, sso_log_in  # noqa: F401  (oidc_provider is a fixture)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.test import Client

from tests.fakes.oidc import FakeOidcProvider

INSTRUCTOR_GROUP = "instructors"
ADMIN_GROUP = "it-admins"


def configure(settings: Any, provider: FakeOidcProvider, *, password_login: bool = True) -> None:
    """What settings.py makes of the OIDC_* and PASSWORD_LOGIN variables for this provider."""
    settings.OIDC_RP_CLIENT_ID = provider.client_id
    settings.OIDC_RP_CLIENT_SECRET = provider.client_secret
    settings.OIDC_OP_ISSUER = provider.issuer
    settings.OIDC_ENABLED = True
    settings.OIDC_PROVIDER_NAME = "SSO"
    settings.OIDC_INSTRUCTOR_GROUPS = [INSTRUCTOR_GROUP]
    settings.OIDC_ADMIN_GROUPS = [ADMIN_GROUP]
    settings.PASSWORD_LOGIN = password_login
    settings.AUTHENTICATION_BACKENDS = [
        "django.contrib.auth.backends.ModelBackend"
        if password_login
        else "registrations.sso.NoPasswordBackend",
        "registrations.sso.OidcBackend",
    ]


@pytest.fixture
def oidc_provider(settings: Any) -> Iterator[FakeOidcProvider]:
    with FakeOidcProvider() as provider:
        configure(settings, provider)
        yield provider


def sso_log_in(client: Client, next_url: str = "/admin/") -> Any:
    """Click "Log in with SSO" with the test client: to the provider over real HTTP and back.

    Returns the app's answer to the provider's redirect (the callback's response).
    """
    start = client.get("/oidc/authenticate/", {"next": next_url})
    assert start.status_code == 302, start
    at_provider = requests.get(start["Location"], allow_redirects=False, timeout=10)
    assert at_provider.status_code == 302, at_provider.text
    back = urlsplit(at_provider.headers["Location"])
    assert back.path == "/oidc/callback/"
    query = {key: values[0] for key, values in parse_qs(back.query).items()}
    return client.get(back.path, query)
