"""Coder template parameters: a session sets values for its template's rich parameters, checked
against what Coder reports (admin form and CLI alike), and provisioning passes them when it
creates each workspace; a workspace Coder refuses for them fails the account loudly."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from registrations import coder, provisioning, template_parameters
from registrations.models import Account, AccountStatus, Session
from registrations.notifiers import instructor_alerts
from registrations.session_lifecycle import duplicate_session
from registrations.texts import FAILURE_TEXT
from tests.conftest import STUDENT_PHONE, make_session
from tests.student import logs_in
from tests.test_session_validation import errors, form_data

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/registrations/session/add/"
FRAGMENT_URL = "/admin/registrations/session/template-parameters/"
LAB_PARAMETERS = [
    {
        "name": "region",
        "display_name": "Region",
        "description": "Where the workspace runs.",
        "options": [{"name": "Europe", "value": "eu"}, {"name": "America", "value": "us"}],
    },
    {
        "name": "cpus",
        "type": "number",
        "default_value": "2",
        "validation_min": 1,
        "validation_max": 4,
    },
    {
        "name": "dotfiles",
        "default_value": "https://example.com/dots",
        "validation_regex": "^https://",
        "validation_error": "Use an https URL",
    },
    {"name": "gpu", "type": "bool", "default_value": "false"},
]


@pytest.fixture
def lab(fake_coder) -> dict:
    """The Coder template "python-lab", whose region is required."""
    fake_coder.add_template("python-lab", display_name="Python lab")
    return fake_coder.set_template_parameters("python-lab", LAB_PARAMETERS)


@pytest.fixture
def alice(client, instructor):
    client.force_login(instructor)
    return client


def parameter_inputs(**values: str) -> dict[str, str]:
    """What the form posts: its inputs, and the template they were drawn for."""
    data = {"template_parameters__template": "python-lab"}
    data.update({f"template_parameters__{name}": value for name, value in values.items()})
    return data


def lab_form(classroom, **values: str) -> dict[str, str]:
    return {**form_data(classroom, coder_template="python-lab"), **parameter_inputs(**values)}


def change_url(session: Session) -> str:
    return f"/admin/registrations/session/{session.pk}/change/"


# The Coder client: GET /templateversions/{id}/rich-parameters as typed results.


def test_the_client_lists_a_templates_parameters_as_coder_reports_them(lab, fake_coder):
    client = coder.get_client()
    region, cpus, dotfiles, gpu = client.template_rich_parameters(lab["active_version_id"])
    assert (region.label, region.required, region.description) == (
        "Region",
        True,
        "Where the workspace runs.",
    )
    assert [(o.name, o.value) for o in region.options] == [("Europe", "eu"), ("America", "us")]
    assert (cpus.type, cpus.validation_min, cpus.validation_max, cpus.required) == (
        "number",
        1,
        4,
        False,
    )
    assert (dotfiles.validation_regex, dotfiles.validation_error) == (
        "^https://",
        "Use an https URL",
    )
    assert (gpu.type, gpu.default_value, region.validation_min) == ("bool", "false", None)


# The rules, as Coder applies them to a first build.


def test_the_rules_say_what_is_wrong_with_each_value(lab):
    parameters = template_parameters.parameters_of("python-lab")
    assert parameters is not None
    found = template_parameters.problems(
        parameters,
        {"region": "asia", "cpus": "9", "dotfiles": "git@host", "gpu": "maybe", "colour": "red"},
    )
    assert found == [
        "“colour” is not a parameter of this template.",
        "Region: must be one of “eu”, “us”.",
        "cpus: must be at most 4.",
        "dotfiles: Use an https URL",
        "gpu: must be true or false.",
    ]
    assert template_parameters.problems(parameters, {}) == ["Region: a value is required."]
    assert template_parameters.problems(parameters, {"region": "eu", "cpus": "1.5"}) == [
        "cpus: must be a whole number."
    ]
    # Values left empty are not stored: Coder then uses the template's default.
    assert template_parameters.cleaned(parameters, {"region": "us", "cpus": ""}) == {"region": "us"}


# Provisioning passes the values; a refusal fails the account where everyone sees it.


@pytest.fixture
def services(fake_coder, fake_twilio, settings, sync_tasks):
    settings.CODER_EMAIL_DOMAIN = "lab.invalid"
    settings.FAILURE_ALERTS = True
    return fake_coder, fake_twilio


def student_of(session: Session) -> Account:
    return Account.objects.create(
        session=session, phone=STUDENT_PHONE, expires_at=session.expires_at
    )


def test_the_workspace_is_created_with_the_sessions_values(classroom, lab, services):
    fake_coder, fake_twilio = services
    session = make_session(
        classroom, coder_template="python-lab", template_parameters={"region": "eu", "cpus": "3"}
    )
    account = student_of(session)
    provisioning.provision(account.pk)
    account.refresh_from_db()
    [create] = fake_coder.requests("POST", f"/api/v2/users/{account.coder_user_id}/workspaces")
    # PostgreSQL's jsonb keeps no key order, and Coder reads the values by name.
    values = sorted(create.body.pop("rich_parameter_values"), key=lambda v: v["name"])
    assert values == [{"name": "cpus", "value": "3"}, {"name": "region", "value": "eu"}]
    assert create.body == {"name": "python-lab", "template_id": lab["id"]}
    assert account.status == AccountStatus.ACTIVE and account.last_error == ""
    assert [w["name"] for w in fake_coder.workspaces_of(account.coder_username)] == ["python-lab"]


def test_a_workspace_refused_for_its_parameters_fails_the_account_loudly(
    classroom, instructor, lab, services, django_capture_on_commit_callbacks
):
    fake_coder, fake_twilio = services
    # Saved before the template gained its required "region".
    session = make_session(classroom, coder_template="python-lab")
    account = student_of(session)
    with django_capture_on_commit_callbacks(execute=True):
        provisioning.provision(account.pk)
    account.refresh_from_db()
    assert account.status == AccountStatus.FAILED
    assert 'Unable to validate parameter "region"' in account.last_error
    assert "Set the template parameters in the session's form" in account.last_error
    assert fake_coder.workspaces_of(account.coder_username) == []
    # The student is told, and the instructors get the failure digest naming the reason.
    assert [m["body"] for m in fake_twilio.messages_to(STUDENT_PHONE)] == [FAILURE_TEXT]
    assert instructor_alerts.send_digest(session.pk) == 1
    [email] = mail.outbox
    assert instructor.email in email.to and "Unable to validate parameter" in email.body

    # Once the session has its value, retrying adopts the user made above and builds.
    Session.objects.filter(pk=session.pk).update(template_parameters={"region": "us"})
    with django_capture_on_commit_callbacks(execute=True):
        assert provisioning.retry_failed(account)  # runs provisioning again, inline
    account.refresh_from_db()
    assert account.status == AccountStatus.ACTIVE
    assert [w["name"] for w in fake_coder.workspaces_of(account.coder_username)] == ["python-lab"]
    assert logs_in(fake_coder.url, fake_twilio.messages_to(STUDENT_PHONE)[-1]["body"])


# The admin form.


def test_the_form_lists_the_templates_parameters(alice, classroom, lab):
    session = make_session(
        classroom, coder_template="python-lab", template_parameters={"region": "us"}
    )
    page = alice.get(change_url(session)).content.decode()
    assert 'name="template_parameters__region"' in page
    assert '<option value="us" selected>America</option>' in page
    assert 'name="template_parameters__cpus"' in page and 'min="1"' in page and 'max="4"' in page
    assert 'type="checkbox" name="template_parameters__gpu"' in page
    assert "Region (required)" in page and "Where the workspace runs." in page


def test_the_form_refuses_a_missing_required_value_and_values_coder_would(alice, classroom, lab):
    response = alice.post(ADD_URL, lab_form(classroom, cpus="2"))
    assert errors(response) == {"template_parameters": ["Region: a value is required."]}
    response = alice.post(ADD_URL, lab_form(classroom, region="eu", cpus="7", dotfiles="ftp://x"))
    assert errors(response) == {
        "template_parameters": ["cpus: must be at most 4.", "dotfiles: Use an https URL"]
    }
    assert not Session.objects.exists()
    alice.post(ADD_URL, lab_form(classroom, region="eu", cpus="3", dotfiles="", gpu="on"))
    assert Session.objects.get().template_parameters == {"region": "eu", "cpus": "3", "gpu": "true"}


def test_a_template_chosen_without_its_inputs_shows_them_before_saving(alice, classroom, lab):
    # The browser's script did not run: the inputs on the page were for no template.
    data = {
        **form_data(classroom, coder_template="python-lab"),
        "template_parameters__template": "",
    }
    response = alice.post(ADD_URL, data)
    assert errors(response) == {
        "template_parameters": ["Check the parameters of “python-lab” below, then save again."]
    }
    assert 'name="template_parameters__region"' in response.content.decode()


def test_the_inputs_of_a_newly_chosen_template_come_from_the_server(alice, classroom, lab):
    session = make_session(
        classroom, coder_template="python-lab", template_parameters={"cpus": "4"}
    )
    page = alice.get(FRAGMENT_URL, {"template": "python-lab", "session": session.pk}).content
    assert b'name="template_parameters__cpus" value="4"' in page
    other = alice.get(FRAGMENT_URL, {"template": ""}).content.decode()
    assert "Choose a Coder template to set its parameters." in other


def test_coder_down_while_editing_says_so_and_keeps_the_values(alice, classroom, lab, fake_coder):
    session = make_session(
        classroom, coder_template="python-lab", template_parameters={"region": "eu"}
    )
    fake_coder.down = True
    response = alice.get(change_url(session))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Could not ask Coder for the parameters of “python-lab”" in page
    assert "region = eu" in page
    # Editing something else still works, and the values saved before stay.
    data = form_data(classroom, capacity="20", coder_template="python-lab")
    response = alice.post(change_url(session), data)
    assert response.status_code == 302
    session.refresh_from_db()
    assert (session.capacity, session.template_parameters) == (20, {"region": "eu"})
    # A template Coder cannot be asked about cannot be newly chosen: that is a form error.
    response = alice.post(change_url(session), form_data(classroom, coder_template="other-lab"))
    assert response.status_code == 200
    [problem] = errors(response)["template_parameters"]
    assert problem.startswith("Could not ask Coder for the parameters of “other-lab”")


# The CLI, and repeating a session.


def create(*extra: str) -> str:
    out = StringIO()
    call_command(
        "sessions",
        "create",
        "--classroom",
        "CS 101",
        "--owner",
        "alice",
        "--phrase",
        "python lab 3",
        "--template",
        "python-lab",
        *extra,
        stdout=out,
        stderr=StringIO(),
    )
    return out.getvalue()


def test_cli_sets_parameters_checked_like_the_form(instructor, lab):
    with pytest.raises(CommandError, match="Region: a value is required."):
        create("--parameter", "cpus=2")
    with pytest.raises(CommandError, match="“colour” is not a parameter of this template."):
        create("--parameter", "region=eu", "--parameter", "colour=red")
    with pytest.raises(CommandError, match="is not NAME=VALUE"):
        create("--parameter", "region")
    assert not Session.objects.exists()
    create("--parameter", "region=us", "--parameter", "dotfiles=https://x.example/a=b")
    session = Session.objects.get()
    assert session.template_parameters == {"region": "us", "dotfiles": "https://x.example/a=b"}
    out = StringIO()
    call_command("sessions", "list", "--json", stdout=out)
    [row] = json.loads(out.getvalue())
    assert row["template_parameters"] == {"region": "us", "dotfiles": "https://x.example/a=b"}


def test_a_repeated_session_keeps_its_parameters(classroom):
    session = make_session(
        classroom, coder_template="python-lab", template_parameters={"region": "eu"}
    )
    copy = duplicate_session(session, "python lab 4", timedelta(days=7))
    assert copy.template_parameters == {"region": "eu"}


def test_the_model_refuses_values_that_are_not_text(classroom):
    session = make_session(classroom)
    session.template_parameters = {"cpus": 2}
    with pytest.raises(ValidationError, match="map names to text values"):
        session.full_clean()
