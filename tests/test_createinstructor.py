"""`manage.py createinstructor`: a staff user in the Instructors group, never a duplicate."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import ManagementUtility, call_command
from django.core.management.base import CommandError
from django.db import connections

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-staple"


def createinstructor(*args: str) -> str:
    out = StringIO()
    call_command("createinstructor", *args, stdout=out)
    return out.getvalue()


def test_creates_a_staff_instructor_who_can_use_the_admin(client):
    output = createinstructor(
        "--username", "carol", "--email", "carol@example.edu", "--password", PASSWORD
    )
    assert output == "Instructor “carol” created. They can log in at /admin/.\n"
    user = User.objects.get(username="carol")
    assert user.is_staff and not user.is_superuser
    assert [group.name for group in user.groups.all()] == ["Instructors"]
    assert user.has_perm("registrations.add_session")
    assert client.login(username="carol", password=PASSWORD)
    # Without a classroom yet, "create a session" starts with the classroom (test_first_run.py).
    response = client.get("/admin/registrations/session/add/", follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == "/admin/registrations/classroom/add/?then=session"


def test_running_it_again_for_the_same_username_fails_and_changes_nothing(capsys, monkeypatch):
    # run_from_argv closes every connection when done, which would end the test's transaction.
    monkeypatch.setattr(connections, "close_all", lambda: None)
    createinstructor("--username", "carol", "--email", "carol@example.edu", "--password", PASSWORD)
    with pytest.raises(SystemExit) as exit_info:
        ManagementUtility(
            [
                "manage.py",
                "createinstructor",
                "--username",
                "Carol",
                "--email",
                "other@example.edu",
                "--password",
                "another-long-passphrase",
            ]
        ).execute()
    assert exit_info.value.code == 1
    assert "A user named “Carol” already exists; nothing was changed." in capsys.readouterr().err
    user = User.objects.get()
    assert user.email == "carol@example.edu" and user.check_password(PASSWORD)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--username", "bad name!", "--email", "x@example.edu", "--password", PASSWORD],
            "is not a valid username",
        ),
        (
            ["--username", "carol", "--email", "not-an-email", "--password", PASSWORD],
            "is not a valid email address",
        ),
        (
            ["--username", "carol", "--email", "c@example.edu", "--password", "123"],
            "Password rejected: This password is too short.",
        ),
    ],
)
def test_bad_input_is_refused_with_a_reason(args, message):
    with pytest.raises(CommandError, match=message):
        createinstructor(*args)
    assert not User.objects.exists()


def test_prompts_for_the_password_twice_when_not_given(monkeypatch):
    answers = iter([PASSWORD, PASSWORD])
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    createinstructor("--username", "carol", "--email", "carol@example.edu")
    assert User.objects.get().check_password(PASSWORD)


def test_mismatched_prompted_passwords_are_refused(monkeypatch):
    answers = iter([PASSWORD, PASSWORD + "x"])
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("getpass.getpass", lambda prompt: next(answers))
    with pytest.raises(CommandError, match="The two passwords differ."):
        createinstructor("--username", "carol", "--email", "carol@example.edu")
    assert not User.objects.exists()


def test_without_a_terminal_the_password_option_is_required(monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(CommandError, match="No --password given and no terminal"):
        createinstructor("--username", "carol", "--email", "carol@example.edu")


def test_on_a_terminal_it_asks_for_what_is_not_given(monkeypatch):
    """`make instructor` without USERNAME= and EMAIL= runs it with neither."""
    answers = iter(["dora", "dora@example.edu"])
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt: next(answers))
    createinstructor("--password", PASSWORD)
    assert User.objects.get(username="dora").email == "dora@example.edu"


def test_without_a_terminal_username_and_email_are_required(monkeypatch):
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    with pytest.raises(CommandError, match="No --username given and no terminal"):
        createinstructor("--email", "x@example.edu", "--password", PASSWORD)
    assert not User.objects.exists()
