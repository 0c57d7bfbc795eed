"""Twilio request signatures: the guard every Twilio-facing view sits behind."""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from twilio.request_validator import RequestValidator

logger = logging.getLogger(__name__)


def public_url(request: HttpRequest) -> str:
    """Rebuild the URL Twilio called: PUBLIC_BASE_URL when set, else what the proxy says."""
    if settings.PUBLIC_BASE_URL:
        return str(settings.PUBLIC_BASE_URL) + request.get_full_path()
    # build_absolute_uri honours SECURE_PROXY_SSL_HEADER and USE_X_FORWARDED_HOST.
    return request.build_absolute_uri()


def signature_is_valid(request: HttpRequest) -> bool:
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not settings.TWILIO_AUTH_TOKEN:
        return False
    validator = RequestValidator(settings.TWILIO_AUTH_TOKEN)
    url = public_url(request)
    # The URL exactly as Twilio called it first: that is what Twilio signs, and it matches at
    # the first HMAC. validate() always computes two (the URL with and without its port,
    # since Twilio's signing was inconsistent about ports), so it only decides the rest.
    computed = validator.compute_signature(url, request.POST)
    if hmac.compare_digest(computed.encode(), signature.encode()):
        return True
    return bool(validator.validate(url, request.POST, signature))


def _rejection_reason(request: HttpRequest) -> str:
    if not settings.TWILIO_AUTH_TOKEN:
        return "TWILIO_AUTH_TOKEN is unset, so no signature can be checked"
    if not request.headers.get("X-Twilio-Signature"):
        return "missing X-Twilio-Signature"
    return f"X-Twilio-Signature does not match {public_url(request)}"


def twilio_signature_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Answer 403 to any request not signed by Twilio with our auth token."""

    @functools.wraps(view)
    def wrapped(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
        if not settings.TWILIO_AUTH_TOKEN and settings.DEBUG:
            logger.warning(
                "TWILIO_AUTH_TOKEN is unset and DEBUG is on: accepting an UNSIGNED request to %s. "
                "Never run like this in production.",
                request.path,
            )
            return view(request, *args, **kwargs)
        if not signature_is_valid(request):
            # Never log the body or the sender: only why the request was refused.
            logger.warning(
                "rejected a request to %s: %s",
                request.path,
                _rejection_reason(request),
            )
            return HttpResponseForbidden(
                "Invalid or missing X-Twilio-Signature.", content_type="text/plain"
            )
        return view(request, *args, **kwargs)

    return wrapped
