"""Helpers shared by the admin pages: object look-up with scoping, redirects, warnings."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme

from registrations import probes
from registrations.admin.scoping import ModelT
from registrations.checks import missing_coder_settings, missing_twilio_settings
from registrations.health import is_stale, probe_results
from registrations.models import IntegrationStatus


def scoped_object(
    model_admin: admin.ModelAdmin[ModelT], request: HttpRequest, object_id: str, need: str = "view"
) -> ModelT:
    """Fetch an object through the admin's scoped queryset and check a permission on it.

    Objects outside the user's classrooms are 404 (not 403), so their existence is not revealed.
    """
    obj = model_admin.get_object(request, unquote(object_id))
    if obj is None:
        raise Http404(f"No {model_admin.opts.verbose_name} with that id.")
    if not getattr(model_admin, f"has_{need}_permission")(request, obj):
        raise PermissionDenied
    return obj


def safe_next(request: HttpRequest, fallback: str) -> str:
    """Return the `next` URL from the request when it points at this site, else the fallback."""
    target = request.POST.get("next") or request.GET.get("next") or ""
    allowed = url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return target if target and allowed else fallback


def integration_warnings() -> list[str]:
    """Say which integrations cannot work: settings missing, or the worker's probe failing."""
    warnings = []
    probed = probe_results()
    if missing := missing_twilio_settings():
        warnings.append(
            f"Twilio is not configured ({', '.join(missing)} unset): texts are recorded, "
            "but no SMS can be sent."
        )
    elif problem := _probe_warning(probes.TWILIO, probed.get(probes.TWILIO)):
        warnings.append(problem)
    if missing := missing_coder_settings():
        warnings.append(
            f"Coder is not configured ({', '.join(missing)} unset): accounts cannot be "
            "created or deleted in Coder."
        )
    elif problem := _probe_warning(probes.CODER, probed.get(probes.CODER)):
        warnings.append(problem)
    return warnings


_LABELS = {probes.CODER: "Coder", probes.TWILIO: "Twilio"}
# What to do about each problem a probe finds (registrations.probes).
_ADVICE = {
    (probes.CODER, probes.REJECTED): "Coder rejects the session token: check CODER_SESSION_TOKEN.",
    (probes.CODER, probes.NOT_OWNER): (
        "The Coder session token's user is not an owner: accounts cannot be created or "
        "deleted. Set CODER_SESSION_TOKEN to an owner's token."
    ),
    (probes.CODER, probes.UNREACHABLE): (
        "Coder is not reachable: {detail}. Accounts wait until it answers; check CODER_URL."
    ),
    (probes.TWILIO, probes.REJECTED): (
        "Twilio rejects our credentials: check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN. "
        "Messages wait and are sent once they work."
    ),
    (probes.TWILIO, probes.SUSPENDED): "The Twilio {detail}: no SMS can be sent.",
    (probes.TWILIO, probes.UNREACHABLE): "Twilio is not reachable: {detail}. Messages wait.",
}


def _probe_warning(name: str, row: IntegrationStatus | None) -> str:
    """Turn a configured integration's last probe into a warning ("" when it is fine)."""
    if row is None or row.checked_at is None:
        return ""
    label = _LABELS[name]
    if is_stale(row):
        minutes = int((timezone.now() - row.checked_at).total_seconds() // 60)
        return (
            f"{label} was last checked {minutes} minutes ago: is the worker "
            "(manage.py qcluster) running?"
        )
    if row.ok:
        return ""
    advice = _ADVICE.get((name, row.problem), "{label} check failed: {detail}.")
    return advice.format(label=label, detail=row.detail.removeprefix("not reachable: "))


def integration_notes() -> list[str]:
    """Say which integrations the worker's probe found working (the Coder version too)."""
    probed = probe_results()
    notes = []
    coder = probed.get(probes.CODER)
    if not missing_coder_settings() and coder and coder.ok and not is_stale(coder):
        version = f" {coder.version}" if coder.version else ""
        notes.append(f"Coder{version} accepts the session token.")
    twilio = probed.get(probes.TWILIO)
    if not missing_twilio_settings() and twilio and twilio.ok and not is_stale(twilio):
        notes.append("Twilio accepts our credentials.")
    return notes
