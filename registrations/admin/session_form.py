"""The session form: sensible defaults, a time-zone list, and Coder's templates as choices."""

from __future__ import annotations

import logging
from typing import Any

from django import forms
from django.conf import settings
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from registrations import coder, session_lifecycle
from registrations.checks import missing_coder_settings
from registrations.models import Session
from registrations.zones import canonical_zones, utc_offset, zone_named

logger = logging.getLogger(__name__)


class SessionForm(forms.ModelForm[Session]):
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
            "template_parameters",
            "language",
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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "language" in self.fields:
            # A post without it (a script, a form opened before this field existed) keeps the
            # session's language, or gives a new one DEFAULT_STUDENT_LANGUAGE, instead of failing.
            self.fields["language"].required = False


ZONE_LIST_ID = "time-zone-list"


class ZoneInput(forms.TextInput):
    """A text box that suggests the canonical zones as one types ("new_y", "paris", "EST").

    A datalist instead of a <select> of ~420 names: the browser filters it by what is typed,
    on the zone's name and on its label (current offset and abbreviation).
    """

    def __init__(self, zones: tuple[str, ...], attrs: dict[str, Any] | None = None) -> None:
        base = {"list": ZONE_LIST_ID, "autocomplete": "off", "spellcheck": "false", "size": 34}
        super().__init__({**base, **(attrs or {})})
        self.zones = zones

    def render(
        self,
        name: str,
        value: Any,
        attrs: dict[str, Any] | None = None,
        renderer: Any = None,
    ) -> SafeString:
        box = super().render(name, value, attrs, renderer)
        now = timezone.now()
        options = format_html_join(
            "",
            '<option value="{}">{} {}</option>',
            (
                (zone, utc_offset(now, zone_named(zone)), now.astimezone(zone_named(zone)).tzname())
                for zone in self.zones
            ),
        )
        return box + format_html('<datalist id="{}">{}</datalist>', ZONE_LIST_ID, options)


def time_zone_field(current: str) -> forms.ChoiceField:
    """The canonical IANA zones, typed with suggestions (an unknown stored value stays valid)."""
    zones = canonical_zones()
    extra = [name for name in (current, settings.TIME_ZONE) if name and name not in zones]
    zones = (*dict.fromkeys(extra), *zones)
    return forms.ChoiceField(
        choices=[(name, name) for name in zones],
        initial=settings.TIME_ZONE,
        label="Time zone",
        widget=ZoneInput(zones),
        error_messages={
            "invalid_choice": "“%(value)s” is not a time zone. Type a city or region, e.g. "
            "America/New_York or Europe/Paris, and pick it from the list."
        },
        help_text="The session's times below are entered and shown in this zone, and so are "
        "the times in students' SMS. Type a city or region (e.g. “New_York”, “Paris”) and "
        "pick it from the list.",
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
