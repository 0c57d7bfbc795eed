"""Helpers shared by the admin pages: object look-up with scoping, redirects, warnings."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import Http404, HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme

from registrations.checks import missing_coder_settings, missing_twilio_settings


def scoped_object(
    model_admin: admin.ModelAdmin, request: HttpRequest, object_id: str, need: str = "view"
) -> Model:
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
    """Say which integrations cannot work because their settings are missing."""
    warnings = []
    if missing := missing_twilio_settings():
        warnings.append(
            f"Twilio is not configured ({', '.join(missing)} unset): texts are recorded, "
            "but no SMS can be sent."
        )
    if missing := missing_coder_settings():
        warnings.append(
            f"Coder is not configured ({', '.join(missing)} unset): accounts cannot be "
            "created or deleted in Coder."
        )
    return warnings
