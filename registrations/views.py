"""HTTP entry points: Twilio's inbound webhook, its status callback, /healthz, /metrics, and
the two steps of single sign-on (/oidc/authenticate/ and /oidc/callback/)."""

from __future__ import annotations

import logging
from typing import Any

import requests
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import SuspiciousOperation
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseRedirect,
    JsonResponse,
)
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST
from mozilla_django_oidc.views import (
    OIDCAuthenticationCallbackView,
    OIDCAuthenticationRequestView,
)

from registrations import inbound, sms, sso
from registrations.health import health_report
from registrations.metrics import metrics_token_required, render_metrics
from registrations.twilio_auth import twilio_signature_required

logger = logging.getLogger(__name__)


@csrf_exempt
@require_POST
@twilio_signature_required
def sms_webhook(request: HttpRequest) -> HttpResponse:
    """Twilio's "A message comes in" webhook: record, route, answer with TwiML."""
    try:
        reply = inbound.handle_inbound(request.POST)
    except inbound.MalformedInbound as exc:
        return HttpResponseBadRequest(str(exc), content_type="text/plain")
    return HttpResponse(inbound.twiml(reply), content_type="text/xml")


@csrf_exempt
@require_POST
@twilio_signature_required
def status_callback(request: HttpRequest) -> HttpResponse:
    """Twilio's delivery status callback; always 200 so Twilio stops retrying."""
    sms.record_status(request.GET.get("m", ""), request.POST)
    return HttpResponse(status=200)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    can_serve, report = health_report()
    return JsonResponse(report, status=200 if can_serve else 503)


@never_cache
@metrics_token_required
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus scrape endpoint; the token check comes first, so without it nothing shows."""
    body, content_type = render_metrics()
    return HttpResponse(body, content_type=content_type)


def _sso_refused(request: HttpRequest, reason: str) -> HttpResponse:
    """Back to the admin login page, saying why."""
    messages.error(request, reason)
    return HttpResponseRedirect(reverse("admin:login"))


class SsoStart(OIDCAuthenticationRequestView):  # type: ignore[misc]
    """The "Log in with ..." button: off to the provider with a fresh state, nonce and PKCE."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.OIDC_ENABLED:
            raise Http404("Single sign-on is not configured.")
        response: HttpResponse = super().dispatch(request, *args, **kwargs)
        return response

    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            self.OIDC_OP_AUTH_ENDPOINT = sso.endpoints().authorization
        except sso.SsoUnavailable as exc:
            return _sso_refused(request, str(exc))
        response: HttpResponse = super().get(request)
        return response


class SsoCallback(OIDCAuthenticationCallbackView):  # type: ignore[misc]
    """Where the provider sends the browser back: check everything, then log in or say no."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not settings.OIDC_ENABLED:
            raise Http404("Single sign-on is not configured.")
        response: HttpResponse = super().dispatch(request, *args, **kwargs)
        return response

    def get(self, request: HttpRequest) -> HttpResponse:
        try:
            response: HttpResponse = super().get(request)
        except sso.SsoRefused as exc:
            return _sso_refused(request, str(exc))
        except SuspiciousOperation as exc:
            # A state this browser never started, a token that fails a check: never a 500.
            logger.warning("single sign-on refused: %s", exc)
            return _sso_refused(request, sso.RETRY)
        except requests.RequestException as exc:
            # The class only: the library's message would carry the provider's whole answer.
            logger.warning("single sign-on: the provider failed (%s)", type(exc).__name__)
            return _sso_refused(request, sso.message(sso.UNAVAILABLE))
        return response

    @property
    def success_url(self) -> str:
        # The library already checked "next" when the login started.
        return str(self.request.session.get("oidc_login_next") or reverse("admin:index"))

    def login_success(self) -> HttpResponse:
        response: HttpResponse = super().login_success()
        # The provider (and the person's groups) are asked again when this ends.
        self.request.session.set_expiry(int(settings.OIDC_SESSION_HOURS * 3600))
        return response

    def login_failure(self) -> HttpResponse:
        # The provider said no (?error=...), or the browser came back without a login started.
        logger.warning("single sign-on failed: %.40r", self.request.GET.get("error", "no login"))
        return _sso_refused(self.request, sso.RETRY)
