"""Admin login rate limiting, shared by every web process through the database.

After LOGIN_FAILURE_LIMIT failed logins for one username from one client address within
LOGIN_FAILURE_WINDOW_MINUTES, every login for that pair is refused, even with the right password,
until the window has passed. Keying on the pair (not the username alone) means a student on the
campus network cannot lock an instructor out from home, and vice versa.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import salted_hmac

from registrations.models import LoginFailure

logger = logging.getLogger(__name__)

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


def failure_key(request: HttpRequest, username: str) -> str:
    """Return the HMAC that identifies a username and client address in LoginFailure rows."""
    material = f"{username.strip().casefold()}\n{client_address(request)}"
    return salted_hmac("registrations.security.login", material, algorithm="sha256").hexdigest()


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


class RateLimitedAdminLoginForm(AdminAuthenticationForm):
    """The admin login form, refusing a username and address with too many recent failures."""

    error_messages = {**AdminAuthenticationForm.error_messages, "rate_limited": LOCKED_MESSAGE}

    def clean(self) -> dict[str, Any]:
        request = self.request
        if request is None:  # the admin always passes its request; nothing to key on without
            return super().clean()
        key = failure_key(request, self.cleaned_data.get("username") or "")
        if is_locked(key):
            # The username may be a password typed in the wrong box: log only the address.
            logger.warning("admin login refused: too many failures from %s",
                           client_address(request))
            raise ValidationError(
                self.error_messages["rate_limited"],
                code="rate_limited",
                params={"minutes": settings.LOGIN_FAILURE_WINDOW_MINUTES},
            )
        try:
            cleaned = super().clean()
        except ValidationError:
            record_failure(key)
            raise
        # Only a real success resets the count (an empty password never reaches authenticate).
        if self.get_user() is not None:
            clear_failures(key)
        return cleaned
