"""Template tags of the admin: integration warnings, the user's open sessions, login options."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils import timezone

from registrations.admin.common import integration_notes, integration_warnings
from registrations.admin.scoping import classrooms_for, sessions_for
from registrations.sso import login_options

register = template.Library()


@register.inclusion_tag("registrations/_index_summary.html", takes_context=True)
def classroom_summary(context: template.Context) -> dict[str, Any]:
    """Show what is missing from the settings and the sessions open for this user right now."""
    request = context["request"]
    now = timezone.now()
    open_now = sessions_for(request.user).filter(
        opens_at__lte=now, closes_at__gt=now, expires_at__gt=now, ended_at__isnull=True
    )
    return {
        "warnings": integration_warnings(),
        "integration_notes": integration_notes(),
        "open_sessions": list(open_now.select_related("classroom")[:10]),
        "can_view_sessions": request.user.has_perm("registrations.view_session"),
        "can_add_session": request.user.has_perm("registrations.add_session"),
        # A first-time instructor creates the classroom first, then its first session.
        "has_classroom": classrooms_for(request.user).exists(),
    }


@register.simple_tag
def sso_login() -> dict[str, Any]:
    """How the login page lets people in: single sign-on, the password form, or both."""
    return login_options()
