"""Admin login rate limiting, shared by every web process through the database; and no
password login at all when PASSWORD_LOGIN is off (single sign-on only, registrations/sso.py).

Two limits, both refusing even the right password:

- After LOGIN_FAILURE_LIMIT failed logins for one username from one client address within
  LOGIN_FAILURE_WINDOW_MINUTES, every login for that pair is refused until the window has
  passed. Keying on the pair means a student on the campus network cannot lock an instructor
  out from home, and vice versa. An IPv6 client is keyed by its /64, which one host can fill
  with addresses; an IPv4 client by its address.
- Guessing from many addresses is slowed per username: after LOGIN_USERNAME_FAILURE_LIMIT
  failures within the window from anywhere, each further attempt must wait 2**k seconds after
  the last failure (k = failures beyond the limit), at most LOGIN_USERNAME_DELAY_MAX_SECONDS.

Checking and counting are one step: a login holds its username's LoginThrottle row
(select_for_update) from the check until its failure is recorded, so parallel guesses are judged
one after another and cannot get past either limit together.
"""

from __future__ import annotations

import ipaddress
import logging
import math
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import salted_hmac

from registrations.models import LoginFailure, LoginThrottle

logger = logging.getLogger(__name__)

PASSWORD_LOGIN_OFF = "Logging in with a password is turned off here. Use single sign-on."
LOCKED_MESSAGE = (
    "Too many failed login attempts for this username. Please wait %(minutes)s minutes "
    "and try again."
)


def client_address(request: HttpRequest) -> str:
    """Return the client's address: the socket's, or the one our proxies put in X-Forwarded-For."""
    hops = settings.NUM_PROXIES
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if hops > 0 and forwarded:
        # Each of our proxies appends what it saw; anything further left the client could forge.
        addresses = [part.strip() for part in forwarded.split(",")]
        return str(addresses[-min(hops, len(addresses))])
    return str(request.META.get("REMOTE_ADDR", ""))


def client_network(address: str) -> str:
    """Return what a client is counted by: an IPv6 address's /64, an IPv4 address itself."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        # One host is usually given a whole /64: counting single addresses would let it rotate.
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def _username(username: str) -> str:
    return username.strip().casefold()


def failure_key(request: HttpRequest, username: str) -> str:
    """Return the HMAC that identifies a username and client network in LoginFailure rows."""
    material = f"{_username(username)}\n{client_network(client_address(request))}"
    return salted_hmac("registrations.security.login", material, algorithm="sha256").hexdigest()


def username_key(username: str) -> str:
    """Return the HMAC that identifies a username alone in LoginThrottle rows."""
    return salted_hmac(
        "registrations.security.username", _username(username), algorithm="sha256"
    ).hexdigest()


def _window() -> timedelta:
    return timedelta(minutes=settings.LOGIN_FAILURE_WINDOW_MINUTES)


def is_locked(key: str) -> bool:
    """Say whether the key has used up its failed logins for the current window."""
    since = timezone.now() - _window()
    recent = LoginFailure.objects.filter(key=key, failed_at__gte=since)
    return recent.count() >= int(settings.LOGIN_FAILURE_LIMIT)


def record_failure(key: str) -> None:
    """Count one failed login, and forget failures that have left the window."""
    now = timezone.now()
    LoginFailure.objects.create(key=key, failed_at=now)
    LoginFailure.objects.filter(failed_at__lt=now - _window()).delete()


def clear_failures(key: str) -> None:
    LoginFailure.objects.filter(key=key).delete()


def lock_username(key: str) -> LoginThrottle:
    """Take the username's row for the rest of the transaction; later logins for it wait."""
    throttle, _created = LoginThrottle.objects.select_for_update().get_or_create(key=key)
    if throttle.last_failure_at and throttle.last_failure_at < timezone.now() - _window():
        throttle.failures = 0  # the failures have left the window
    return throttle


def username_wait(throttle: LoginThrottle, now: datetime) -> float:
    """Seconds the username must still wait before its next attempt (0: none)."""
    over = throttle.failures - int(settings.LOGIN_USERNAME_FAILURE_LIMIT)
    if over < 0 or throttle.last_failure_at is None:
        return 0.0
    delay = min(2.0 ** min(over, 62), float(settings.LOGIN_USERNAME_DELAY_MAX_SECONDS))
    return max(0.0, (throttle.last_failure_at - now).total_seconds() + delay)


def record_username_failure(throttle: LoginThrottle, now: datetime) -> None:
    throttle.failures += 1
    throttle.last_failure_at = now
    throttle.save(update_fields=["failures", "last_failure_at"])
    # Forget usernames whose failures have all left the window (never the locked row: it is new).
    LoginThrottle.objects.filter(last_failure_at__lt=now - _window()).delete()


def clear_username(throttle: LoginThrottle) -> None:
    throttle.failures = 0
    throttle.last_failure_at = None
    throttle.save(update_fields=["failures", "last_failure_at"])


class RateLimitedAdminLoginForm(AdminAuthenticationForm):
    """The admin login form, refusing a username and address with too many recent failures."""

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "rate_limited": LOCKED_MESSAGE,
        "password_login_off": PASSWORD_LOGIN_OFF,
    }

    def clean(self) -> dict[str, Any]:
        if not settings.PASSWORD_LOGIN:
            # The form is not even shown then; a hand-made POST is refused before any password
            # is checked (and no backend would accept one: settings.AUTHENTICATION_BACKENDS).
            raise ValidationError(
                self.error_messages["password_login_off"], code="password_login_off"
            )
        request = self.request
        if request is None:  # the admin always passes its request; nothing to key on without
            return super().clean()
        username = self.cleaned_data.get("username") or ""
        key = failure_key(request, username)
        # One transaction from check to record, under the username's row lock: a parallel
        # guess for the username waits here and then sees this one's failure. Errors are
        # raised after it commits (raising inside would roll the recorded failure back).
        with transaction.atomic():
            throttle = lock_username(username_key(username))
            now = timezone.now()
            wait_minutes = self._wait_minutes(key, throttle, now)
            if wait_minutes:
                refused: ValidationError | None = None
            else:
                refused = self._check_password(key, throttle, now)
        if wait_minutes:
            # The username may be a password typed in the wrong box: log only the address.
            logger.warning("admin login refused: too many failures from %s",
                           client_address(request))
            raise ValidationError(self.error_messages["rate_limited"], code="rate_limited",
                                  params={"minutes": wait_minutes})
        if refused is not None:
            raise refused
        return self.cleaned_data

    def _wait_minutes(self, key: str, throttle: LoginThrottle, now: datetime) -> int:
        """Minutes to tell the user to wait, or 0 when this attempt may be judged."""
        if is_locked(key):
            return int(settings.LOGIN_FAILURE_WINDOW_MINUTES)
        wait = username_wait(throttle, now)
        return max(1, math.ceil(wait / 60)) if wait > 0 else 0

    def _check_password(
        self, key: str, throttle: LoginThrottle, now: datetime
    ) -> ValidationError | None:
        """Judge the credentials and count the outcome; return the form's error, if any."""
        try:
            super().clean()
        except ValidationError as error:
            record_failure(key)
            record_username_failure(throttle, now)
            return error
        # Only a real success resets the count (an empty password never reaches authenticate).
        if self.get_user() is not None:
            clear_failures(key)
            clear_username(throttle)
        return None
