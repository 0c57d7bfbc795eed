"""A session's values for its Coder template's rich parameters.

What the template takes is what Coder reports for its active version; the values are checked
when the session is saved (the admin form and the CLI alike), by the rules Coder applies to a
workspace's first build (codersdk/richparameters.go and terraform-provider-coder's
Validation.Valid): a required parameter needs a value, a value must be one of the options when
there are options, a number a whole number within the bounds, a text match the pattern. A
name the template does not have is refused too: Coder would ignore it without a word.

Coder is still the judge when each workspace is created: a template changed after the session
was saved makes provisioning fail the account loudly (see provisioning._ensure_workspace).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

from django.core.exceptions import ValidationError

from registrations import coder, session_lifecycle

# strconv.Atoi, which Coder's number check uses: an optional sign and ASCII digits only.
_WHOLE_NUMBER = re.compile(r"[+-]?[0-9]+")


def parameters_of(template_name: str) -> list[coder.TemplateParameter] | None:
    """The parameters of the named template's active version; None when Coder has no such
    template. Raises coder.CoderError when Coder cannot be asked."""
    template = session_lifecycle.find_template(template_name)
    if template is None:
        return None
    return coder.get_client().template_rich_parameters(template.active_version_id)


def problems(
    parameters: Sequence[coder.TemplateParameter], values: Mapping[str, str]
) -> list[str]:
    """Every reason the values would not do, one readable line each; [] when they will."""
    known = {p.name for p in parameters}
    found = [
        f"“{name}” is not a parameter of this template." for name in values if name not in known
    ]
    for parameter in parameters:
        problem = value_problem(parameter, values.get(parameter.name, ""))
        if problem:
            found.append(f"{parameter.label}: {problem}")
    return found


def value_problem(parameter: coder.TemplateParameter, value: str) -> str | None:
    """Why Coder would refuse this value of the parameter ("" meaning none given), or None."""
    if value == "":
        # Coder fills in the default; a required parameter (one without a default) has none.
        return "a value is required." if parameter.required else None
    if parameter.options:
        return _option_problem(parameter, value)
    if parameter.type == "bool" and value not in ("true", "false"):
        return "must be true or false."
    if parameter.type == "number":
        return _number_problem(parameter, value)
    if parameter.type == "list(string)" and _string_list(value) is None:
        return 'must be a JSON list of texts, e.g. ["a", "b"].'
    if parameter.type == "string" and parameter.validation_regex:
        return _pattern_problem(parameter, value)
    return None


def cleaned(
    parameters: Sequence[coder.TemplateParameter], values: Mapping[str, object]
) -> dict[str, str]:
    """The values to store: text, those left empty dropped (Coder then uses the default).

    Raises ValidationError listing every problem.
    """
    texts = {str(name): "" if value is None else str(value) for name, value in values.items()}
    found = problems(parameters, texts)
    if found:
        raise ValidationError(found)
    return {name: value for name, value in texts.items() if value != ""}


def check(template_name: str, values: Mapping[str, object]) -> dict[str, str]:
    """Check values for the named template with Coder; return them as they will be stored.

    Raises ValidationError (unknown template, or values it refuses) and coder.CoderError
    (Coder cannot be asked).
    """
    if not template_name:
        if values:
            raise ValidationError("Template parameters need a Coder template.")
        return {}
    parameters = parameters_of(template_name)
    if parameters is None:
        raise ValidationError(f"Coder has no template named “{template_name}”.")
    return cleaned(parameters, values)


def _option_problem(parameter: coder.TemplateParameter, value: str) -> str | None:
    allowed = [option.value for option in parameter.options]
    # codersdk inOptionSet: a multi-select list checks each of its items.
    if parameter.type == "list(string)" and parameter.form_type == "multi-select":
        items = _string_list(value)
        if items is not None and all(item in allowed for item in items):
            return None
    elif value in allowed:
        return None
    return "must be one of " + ", ".join(f"“{option}”" for option in allowed) + "."


def _number_problem(parameter: coder.TemplateParameter, value: str) -> str | None:
    low, high = parameter.validation_min, parameter.validation_max
    if not _WHOLE_NUMBER.fullmatch(value):
        problem = "must be a whole number."
    elif low is not None and int(value) < low:
        problem = f"must be at least {low}."
    elif high is not None and int(value) > high:
        problem = f"must be at most {high}."
    else:
        return None
    # The template's own message comes first, with its {min}, {max} and {value} filled in.
    if parameter.validation_error:
        return (
            parameter.validation_error.replace("{min}", str(low or 0))
            .replace("{max}", str(high or 0))
            .replace("{value}", value)
        )
    return problem


def _pattern_problem(parameter: coder.TemplateParameter, value: str) -> str | None:
    try:
        pattern = re.compile(parameter.validation_regex)
    except re.error:
        return None  # Go's RE2 syntax that Python does not read: Coder will judge it
    if pattern.search(value):  # Go's MatchString: anywhere in the value
        return None
    return parameter.validation_error or f"must match {parameter.validation_regex}."


def _string_list(value: str) -> list[str] | None:
    try:
        items = json.loads(value)
    except ValueError:
        return None
    if isinstance(items, list) and all(isinstance(item, str) for item in items):
        return items
    return None
