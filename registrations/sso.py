"""Single sign-on for staff: OpenID Connect's code flow (mozilla-django-oidc), and who gets in.

On only when OIDC_RP_CLIENT_ID, OIDC_RP_CLIENT_SECRET and OIDC_OP_ISSUER are set (settings.py
then adds `OidcBackend`; the views answer 404 otherwise). What this module adds to the library:

- The provider's endpoints come from its discovery document unless set one by one.
- The ID token is checked in full: signature, algorithm, audience (the library skips it),
  issuer, expiry, and the nonce of this browser's login.
- A person is their provider's `sub` (an `SsoIdentity` row), never just an email address: a
  first login may take over an existing account only when the provider says the email is
  verified, that account is not a superuser, and no other identity holds it.
- Their role comes from the groups claim at every login: an admin group makes a superuser, an
  instructor group an instructor (registrations/instructors.py, as `createinstructor` does);
  no configured group is a refusal, and an account that lost its groups loses admin access.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import jwt
import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import SuspiciousOperation
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from registrations.instructors import Role, set_role
from registrations.models import SsoIdentity

logger = logging.getLogger(__name__)

NOT_ALLOWED = (
    "Your account at %(provider)s is not in a group allowed to use this site. "
    "Ask your administrator to add you to the instructors' group."
)
DEACTIVATED = "This account has been deactivated here. Ask your administrator."
RETRY = "Single sign-on could not finish. Please try again."
UNAVAILABLE = "%(provider)s did not answer. Please try again in a minute."
# The discovery document rarely changes; read it again after this many seconds.
DISCOVERY_TTL = 3600.0
# How much the provider's clock may differ from ours when checking the token's times.
CLOCK_LEEWAY_SECONDS = 60


class SsoRefused(Exception):
    """A single sign-on login refused; the message is for the person trying to log in."""


class SsoUnavailable(SsoRefused):
    """The provider could not be reached or answered nonsense."""


@dataclass(frozen=True)
class Endpoints:
    authorization: str
    token: str
    userinfo: str
    jwks: str


_discovered: dict[str, tuple[float, dict[str, Any]]] = {}


def provider_name() -> str:
    return str(settings.OIDC_PROVIDER_NAME)


def message(template: str) -> str:
    """A message for the person logging in, naming the provider."""
    return template % {"provider": provider_name()}


def issuer() -> str:
    return str(settings.OIDC_OP_ISSUER).rstrip("/")


def discovery(issuer_url: str) -> dict[str, Any]:
    """The provider's discovery document (cached per issuer for DISCOVERY_TTL seconds)."""
    cached = _discovered.get(issuer_url)
    if cached is not None and time.monotonic() - cached[0] < DISCOVERY_TTL:
        return cached[1]
    url = issuer_url + "/.well-known/openid-configuration"
    try:
        response = requests.get(url, timeout=settings.OIDC_TIMEOUT)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        logger.warning("single sign-on: discovery failed (%s)", type(exc).__name__)
        raise SsoUnavailable(message(UNAVAILABLE)) from exc
    # A document naming another issuer is someone else's provider (OpenID Discovery 4.3).
    if not isinstance(document, dict) or str(document.get("issuer", "")).rstrip("/") != issuer_url:
        logger.warning("single sign-on: the discovery document names another issuer")
        raise SsoUnavailable(message(UNAVAILABLE))
    _discovered[issuer_url] = (time.monotonic(), document)
    return document


def endpoints() -> Endpoints:
    """The provider's endpoints: those set in the settings, the rest from discovery."""
    explicit = {
        "authorization": settings.OIDC_OP_AUTHORIZATION_ENDPOINT,
        "token": settings.OIDC_OP_TOKEN_ENDPOINT,
        "userinfo": settings.OIDC_OP_USER_ENDPOINT,
        "jwks": settings.OIDC_OP_JWKS_ENDPOINT,
    }
    if not all(explicit.values()):
        document = discovery(issuer())
        keys = {
            "authorization": "authorization_endpoint",
            "token": "token_endpoint",
            "userinfo": "userinfo_endpoint",
            "jwks": "jwks_uri",
        }
        for name, key in keys.items():
            explicit[name] = explicit[name] or str(document.get(key) or "")
        if not all(explicit.values()):
            logger.warning("single sign-on: the discovery document lacks an endpoint")
            raise SsoUnavailable(message(UNAVAILABLE))
    return Endpoints(**explicit)


def groups_of(claims: dict[str, Any]) -> set[str]:
    """The groups the provider puts the person in (a list, or one group as a string)."""
    value = claims.get(settings.OIDC_GROUPS_CLAIM)
    if isinstance(value, str):
        return {value}
    if isinstance(value, list | tuple):
        return {str(group) for group in value}
    return set()


def role_for(claims: dict[str, Any]) -> Role:
    groups = groups_of(claims)
    if groups & set(settings.OIDC_ADMIN_GROUPS):
        return Role.ADMIN
    if groups & set(settings.OIDC_INSTRUCTOR_GROUPS):
        return Role.INSTRUCTOR
    return Role.NONE


def verified_email(claims: dict[str, Any]) -> str:
    """The email address, only when the provider vouches for it ("" otherwise)."""
    # Some providers send the flag as the string "true".
    if claims.get("email_verified") in (True, "true"):
        return str(claims.get("email") or "").strip()
    return ""


def _subject_tag(subject: str) -> str:
    """A short stable stand-in for a `sub` in logs and generated usernames."""
    return hashlib.sha256(subject.encode()).hexdigest()[:12]


def _free_username(claims: dict[str, Any], subject: str) -> str:
    """A username for a new account: the provider's preferred one when it is free."""
    User = get_user_model()
    wanted = str(claims.get("preferred_username") or verified_email(claims).split("@")[0])
    base = re.sub(r"[^\w.@+-]", "", wanted)[:100]
    tag = _subject_tag(subject)
    candidates = ([base, f"{base}-{tag[:6]}"] if base else []) + [f"sso-{tag}"]
    for candidate in candidates:
        if not User.objects.filter(username__iexact=candidate).exists():
            return candidate
    return f"sso-{tag}-{int(time.time())}"


def _account_for_new_identity(claims: dict[str, Any], subject: str) -> Any:
    """The account a first login gets: an existing one with the same verified email, or new.

    A superuser is never taken over by email (it is the way in when the provider is down),
    nor an account another identity holds.
    """
    User = get_user_model()
    email = verified_email(claims)
    if email:
        matches = list(User.objects.filter(email__iexact=email)[:2])
        if (
            len(matches) == 1
            and not matches[0].is_superuser
            and not SsoIdentity.objects.filter(user=matches[0]).exists()
        ):
            logger.info("single sign-on: linked existing user %s", matches[0].pk)
            return matches[0]
    # No usable password: this account logs in through the provider only.
    return User.objects.create_user(_free_username(claims, subject), email, None)


def sign_in(claims: dict[str, Any]) -> Any:
    """The user these verified claims log in as, with the role their groups give today.

    Raises SsoRefused (after saving any loss of access) when they may not log in.
    """
    subject = str(claims.get("sub") or "")
    if not subject:
        raise SuspiciousOperation("no sub claim")
    role = role_for(claims)
    tag = _subject_tag(subject)
    refusal = None
    try:
        with transaction.atomic():
            identity = (
                SsoIdentity.objects.select_for_update()
                .select_related("user")
                .filter(issuer=issuer(), subject=subject)
                .first()
            )
            if identity is None and role is Role.NONE:
                refusal = message(NOT_ALLOWED)
            elif identity is None:
                user = _account_for_new_identity(claims, subject)
                identity = SsoIdentity.objects.create(user=user, issuer=issuer(), subject=subject)
                logger.info("single sign-on: new identity %s for user %s", tag, user.pk)
            if identity is not None:
                user = identity.user
                if not user.is_active:
                    refusal = DEACTIVATED
                else:
                    # Removed from the groups: the account stays (it may own classrooms) but
                    # is no longer staff.
                    set_role(user, role)
                    if role is Role.NONE:
                        refusal = message(NOT_ALLOWED)
                    email = verified_email(claims)
                    if email and email != user.email:
                        user.email = email
                        user.save(update_fields=["email"])
                    identity.last_login_at = timezone.now()
                    identity.save(update_fields=["last_login_at"])
    except IntegrityError as exc:  # the same person's first login in two tabs at once
        raise SsoRefused(RETRY) from exc
    if refusal is not None:
        logger.warning("single sign-on refused for %s: role %s", tag, role.value)
        raise SsoRefused(refusal)
    logger.info("single sign-on: user %s logged in as %s", user.pk, role.value)
    return user


class OidcBackend(OIDCAuthenticationBackend):  # type: ignore[misc]
    """mozilla-django-oidc's backend with our endpoints, token checks and accounts."""

    def authenticate(self, request: HttpRequest | None, **kwargs: Any) -> Any:
        # Only the callback view's call, which carries this login's nonce, runs the code flow:
        # a password login's authenticate() (even one posted with ?code=&state=) never does.
        if request is None or not settings.OIDC_ENABLED or kwargs.get("nonce") is None:
            return None
        found = endpoints()
        self.OIDC_OP_TOKEN_ENDPOINT = found.token
        self.OIDC_OP_USER_ENDPOINT = found.userinfo
        self.OIDC_OP_JWKS_ENDPOINT = found.jwks
        return super().authenticate(request, **kwargs)

    def retrieve_matching_jwk(self, token: bytes | str) -> Any:
        try:
            return super().retrieve_matching_jwk(token)
        except KeyError as exc:  # the library indexes the token's and keys' "kid" blindly
            raise SuspiciousOperation("token or key without a key id") from exc

    def _verify_jws(self, payload: bytes | str, key: Any) -> dict[str, Any]:
        """Check the token's signature, algorithm, audience, issuer and times."""
        try:
            header = jwt.get_unverified_header(payload)
            if header.get("alg") != self.OIDC_RP_SIGN_ALGO:
                raise SuspiciousOperation("token signed with an unexpected algorithm")
            claims: dict[str, Any] = jwt.decode(
                payload,
                key,
                algorithms=[self.OIDC_RP_SIGN_ALGO],
                audience=self.OIDC_RP_CLIENT_ID,
                leeway=CLOCK_LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWTError as exc:
            raise SuspiciousOperation(f"token refused: {type(exc).__name__}") from exc
        # Compared by hand: providers differ on a trailing slash in their issuer.
        if str(claims["iss"]).rstrip("/") != issuer():
            raise SuspiciousOperation("token from another issuer")
        audience = claims["aud"]
        if isinstance(audience, list) and len(audience) > 1 and claims.get("azp") != (
            self.OIDC_RP_CLIENT_ID
        ):
            raise SuspiciousOperation("token issued to another client")
        return claims

    def get_or_create_user(
        self, access_token: str, id_token: str, payload: dict[str, Any]
    ) -> Any:
        userinfo = self.get_userinfo(access_token, id_token, payload)
        # OpenID Connect Core 5.3.2: the userinfo answer must be about the token's subject.
        if not isinstance(userinfo, dict) or userinfo.get("sub") != payload.get("sub"):
            raise SuspiciousOperation("userinfo is about someone else")
        return sign_in({**payload, **userinfo})


class NoPasswordBackend(ModelBackend):
    """Permissions as usual, but no password is ever accepted (PASSWORD_LOGIN off)."""

    def authenticate(
        self,
        request: HttpRequest | None,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> None:
        return None


def login_options() -> dict[str, Any]:
    """What the admin login page offers."""
    return {
        "enabled": bool(settings.OIDC_ENABLED),
        "password_login": bool(settings.PASSWORD_LOGIN),
        "provider_name": provider_name(),
        "url": reverse("oidc_authentication_init") if settings.OIDC_ENABLED else "",
    }
