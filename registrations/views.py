"""HTTP entry points: Twilio's inbound webhook, its status callback, /healthz and /metrics."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from registrations import inbound, sms
from registrations.health import health_report
from registrations.metrics import metrics_token_required, render_metrics
from registrations.twilio_auth import twilio_signature_required


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
