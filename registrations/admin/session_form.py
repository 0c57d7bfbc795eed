"""The session form: sensible defaults, a time-zone list, and Coder's templates as choices."""

from __future__ import annotations

import functools
import logging
import zoneinfo

from django import forms
from django.conf import settings
from django.utils.html import format_html

from registrations import coder, session_lifecycle
from registrations.checks import missing_coder_settings
from registrations.models import Session

logger = logging.getLogger(__name__)


class SessionForm(forms.ModelForm):
    class Meta:
        model = Session
        fields = [
            "classroom",
            "phrase",
            "inbound_number",
            "opens_at",
            "closes_at",
            "expires_at",
            "time_zone",
            "warn_minutes",
            "capacity",
            "coder_template",
            "credentials_message",
            "warning_message",
        ]
        widgets = {
            # data-sms-preview hooks the live preview script of the change form.
            "credentials_message": forms.Textarea(
                attrs={"rows": 4, "cols": 60, "data-sms-preview": "credentials"}
            ),
            "warning_message": forms.Textarea(
                attrs={"rows": 3, "cols": 60, "data-sms-preview": "warning"}
            ),
        }


@functools.cache
def time_zone_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in sorted(zoneinfo.available_timezones())]


def time_zone_field(current: str) -> forms.ChoiceField:
    """A choice of IANA time zones (keeping an unknown stored value selectable)."""
    choices = time_zone_choices()
    if current and (current, current) not in choices:
        choices = [(current, current), *choices]
    return forms.ChoiceField(
        choices=choices,
        initial=settings.TIME_ZONE,
        label="Time zone",
        help_text="Times in SMS are shown in this zone.",
    )


def template_field(current: str) -> forms.Field:
    """Offer Coder's templates as choices, or a text box saying why they could not be listed."""
    label = "Coder template"
    if missing := missing_coder_settings():
        return forms.CharField(
            required=False,
            max_length=128,
            label=label,
            help_text=format_html(
                "Coder is not configured ({} unset): type a template name, or leave blank.",
                ", ".join(missing),
            ),
        )
    try:
        templates = session_lifecycle.coder_templates()
    except coder.CoderError as exc:
        logger.warning("could not list Coder templates: %s", exc)
        return forms.CharField(
            required=False,
            max_length=128,
            label=label,
            # The admin renders help text as HTML: escape what Coder answered.
            help_text=format_html(
                "Could not list Coder's templates ({}): type a template name, or leave blank.",
                str(exc),
            ),
        )
    choices = [("", "— none: students create their own workspace —")]
    choices += [
        (t.name, f"{t.display_name} ({t.name})" if t.display_name else t.name)
        for t in templates
        if not t.deprecated
    ]
    if current and current not in {name for name, _ in choices}:
        choices.append((current, f"{current} (not offered by Coder any more)"))
    return forms.ChoiceField(
        choices=choices,
        required=False,
        label=label,
        help_text="A workspace from this template is created for each student.",
    )
