"""The session form's "Template parameters": one input per parameter the chosen Coder template
reports (a list for options, a number box, a check box, a text box), checked by
registrations/template_parameters.py when the form is saved.

The inputs follow the template: the change form's script asks `fragment` for the inputs of a
newly chosen template, and a save whose inputs were drawn for another template (no script) is
refused with the right inputs shown, so values are never saved unseen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import slugify

from registrations import coder, template_parameters
from registrations.checks import missing_coder_settings
from registrations.coder import TemplateParameter

PREFIX = "template_parameters__"
# Hidden input: the template the inputs were drawn for.
DRAWN_FOR = PREFIX + "template"
CONTAINER_ID = "template-parameters"


def _is_checkbox(parameter: TemplateParameter) -> bool:
    return parameter.type == "bool" and not parameter.options


def _input_id(parameter: TemplateParameter) -> str:
    return f"id_tp_{slugify(parameter.name) or 'parameter'}"


class ParametersWidget(forms.Widget):
    """Inputs for a template's parameters, or a line saying why there are none."""

    def __init__(
        self,
        template: str,
        parameters: Sequence[TemplateParameter] | None,
        notice: str = "",
    ) -> None:
        super().__init__()
        self.template = template
        self.parameters = list(parameters or [])
        self.notice = notice

    def value_from_datadict(self, data: Any, files: Any, name: str) -> dict[str, str] | None:
        """The posted values; None when the inputs were drawn for another template (or none)."""
        if data.get(DRAWN_FOR) != self.template:
            return None
        values: dict[str, str] = {}
        for parameter in self.parameters:
            key = PREFIX + parameter.name
            if _is_checkbox(parameter):
                # An unticked box is not posted at all: that is "false", not "not given".
                values[parameter.name] = "true" if data.get(key) else "false"
            else:
                values[parameter.name] = data.get(key, "")
        return values

    def value_omitted_from_data(self, data: Any, files: Any, name: str) -> bool:
        return False

    def render(
        self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None
    ) -> SafeString:
        values = value if isinstance(value, Mapping) else {}
        hidden = format_html('<input type="hidden" name="{}" value="{}">', DRAWN_FOR, self.template)
        rows = format_html_join("", "{}", ((self._row(p, values),) for p in self.parameters))
        notice = ""
        if self.notice:
            notice = format_html('<ul class="errorlist"><li>{}</li></ul>', self.notice)
        elif not self.template:
            notice = format_html("<p>{}</p>", "Choose a Coder template to set its parameters.")
        elif not self.parameters:
            notice = format_html("<p>{}</p>", f"Template “{self.template}” has no parameters.")
        return format_html(
            '<div id="{}" class="cs-template-parameters" data-template="{}">{}{}{}{}</div>',
            CONTAINER_ID,
            self.template,
            hidden,
            notice,
            rows,
            self._kept(values) if self.notice else "",
        )

    def _row(self, parameter: TemplateParameter, values: Mapping[str, str]) -> SafeString:
        current = values[parameter.name] if parameter.name in values else parameter.default_value
        label = parameter.label + ("" if not parameter.required else " (required)")
        note = parameter.description
        if parameter.default_value and not _is_checkbox(parameter):
            note = f"{note} Default: {parameter.default_value}.".strip()
        return format_html(
            '<div class="cs-parameter"><label for="{}">{}</label> {}{}</div>',
            _input_id(parameter),
            label,
            self._input(parameter, str(current)),
            format_html('<div class="help">{}</div>', note) if note else "",
        )

    def _input(self, parameter: TemplateParameter, current: str) -> SafeString:
        name, input_id = PREFIX + parameter.name, _input_id(parameter)
        if parameter.options:
            blank = [] if parameter.required else [("", "— the template's default —")]
            choices = blank + [(o.value, o.name or o.value) for o in parameter.options]
            return forms.Select(choices=choices).render(name, current, {"id": input_id})
        if _is_checkbox(parameter):
            return forms.CheckboxInput().render(name, current == "true", {"id": input_id})
        if parameter.type == "number":
            attrs: dict[str, Any] = {"id": input_id, "step": 1}
            if parameter.validation_min is not None:
                attrs["min"] = parameter.validation_min
            if parameter.validation_max is not None:
                attrs["max"] = parameter.validation_max
            return forms.NumberInput().render(name, current, attrs)
        return forms.TextInput().render(name, current, {"id": input_id, "size": 40})

    @staticmethod
    def _kept(values: Mapping[str, str]) -> SafeString:
        if not values:
            return mark_safe("")
        items = format_html_join("", "<li>{} = {}</li>", sorted(values.items()))
        return format_html("<p>Saved values:</p><ul>{}</ul>", items)


class ParametersField(forms.Field):
    """The session's {name: value}, checked against the template's parameters."""

    def __init__(
        self,
        template: str,
        parameters: Sequence[TemplateParameter] | None,
        *,
        stored: Mapping[str, str],
        unchecked: str = "",
        must_check: bool = False,
    ) -> None:
        super().__init__(
            required=False,
            label="Template parameters",
            widget=ParametersWidget(template, parameters, unchecked),
            help_text="Values for the template's parameters, passed to Coder when each "
            "student's workspace is created.",
        )
        self.template = template
        self.parameters = parameters
        self.stored = dict(stored)
        self.unchecked = unchecked
        self.must_check = must_check

    def clean(self, value: Any) -> dict[str, str]:
        if not self.template:
            return {}  # no template, no parameters
        if self.parameters is None:
            # Coder could not be asked: a template kept keeps its values; a new one cannot be
            # checked, and saving it unchecked would leave every student without a workspace.
            if self.must_check and self.unchecked:
                raise ValidationError(self.unchecked)
            return self.stored
        if value is None:
            if self.parameters:
                raise ValidationError(
                    f"Check the parameters of “{self.template}” below, then save again."
                )
            return {}
        return template_parameters.cleaned(self.parameters, value)

    def has_changed(self, initial: Any, data: Any) -> bool:
        return data is not None and dict(initial or {}) != data


def parameters_field(
    template: str, stored: Mapping[str, str], *, must_check: bool
) -> ParametersField:
    """The field for `template`'s parameters, as Coder reports them now.

    `stored`: the session's values (for the template it had); `must_check`: the template is
    new to the session, so values that Coder cannot check now may not be saved.
    """
    template = template.strip()
    parameters: list[TemplateParameter] | None = []
    unchecked = ""
    if template and (missing := missing_coder_settings()):
        parameters = None
        unchecked = (
            f"Coder is not configured ({', '.join(missing)} unset): the parameters of "
            f"“{template}” cannot be listed or checked."
        )
        must_check = False  # a trial without Coder: nothing could ever be checked
    elif template:
        try:
            parameters = template_parameters.parameters_of(template)
        except coder.CoderError as exc:
            parameters = None
            unchecked = (
                f"Could not ask Coder for the parameters of “{template}” ({exc}). The values "
                "saved before are kept; a new template can be saved once Coder answers."
            )
        if parameters is None and not unchecked:
            unchecked = f"Coder has no template named “{template}”."
    return ParametersField(
        template, parameters, stored=stored, unchecked=unchecked, must_check=must_check
    )


def fragment(template: str, stored_template: str, stored: Mapping[str, str]) -> str:
    """The inputs for `template`, as the change form's script swaps them in."""
    kept = stored if template == stored_template else {}
    field = parameters_field(template, kept, must_check=False)
    widget = ParametersWidget(field.template, field.parameters, field.unchecked)
    return str(widget.render("template_parameters", kept))
