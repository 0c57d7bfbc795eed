"""`manage.py sessions create|list|end|extend`: scriptable, validated, non-zero on failure."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.core.management import ManagementUtility, call_command
from django.core.management.base import CommandError
from django.db import connections
from django.utils import timezone

from registrations.models import Account, AccountStatus, Classroom, Session, SessionState
from tests.conftest import make_account, make_session

pytestmark = pytest.mark.django_db


def sessions(*args: str) -> str:
    out = StringIO()
    call_command("sessions", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.fixture
def command_line(capsys, monkeypatch):
    """Run `manage.py sessions ...` as a shell would; return the exit code and output."""
    # run_from_argv closes every connection when done, which would end the test's transaction.
    monkeypatch.setattr(connections, "close_all", lambda: None)

    def run(*args: str) -> tuple[int, str, str]:
        with pytest.raises(SystemExit) as exit_info:
            ManagementUtility(["manage.py", "sessions", *args]).execute()
            raise SystemExit(0)
        captured = capsys.readouterr()
        return exit_info.value.code, captured.out, captured.err

    return run


def create(*extra: str, phrase: str = "python lab 3", owner: str = "alice") -> str:
    return sessions("create", "--classroom", "CS 101", "--owner", owner, "--phrase", phrase, *extra)


def test_create_prints_the_id_and_creates_the_owners_classroom(instructor):
    before = timezone.now()
    output = create()
    session = Session.objects.get()
    assert output == f"{session.pk}\n"
    assert session.classroom == Classroom.objects.get(name="CS 101", owner=instructor)
    assert before <= session.opens_at <= timezone.now()
    assert session.closes_at - session.opens_at == timedelta(minutes=30)
    assert session.expires_at - session.opens_at == timedelta(hours=3)


def test_create_reuses_the_owners_existing_classroom(classroom):
    create()
    create("--opens", (timezone.now() + timedelta(days=1)).isoformat())
    assert Classroom.objects.count() == 1
    assert classroom.sessions.count() == 2


def test_create_with_explicit_times_capacity_and_minutes(instructor):
    create(
        "--opens",
        "2030-05-01T09:00:00+00:00",
        "--enroll-minutes",
        "15",
        "--lifetime-minutes",
        "90",
        "--capacity",
        "25",
    )
    session = Session.objects.get()
    opens = datetime.fromisoformat("2030-05-01T09:00:00+00:00")
    assert (session.opens_at, session.closes_at, session.expires_at, session.capacity) == (
        opens,
        opens + timedelta(minutes=15),
        opens + timedelta(minutes=90),
        25,
    )
    assert session.state == SessionState.SCHEDULED


def test_a_short_lifetime_moves_the_close_to_the_expiry(instructor):
    create("--lifetime-minutes", "10")
    session = Session.objects.get()
    assert session.closes_at == session.expires_at == session.opens_at + timedelta(minutes=10)


def test_naive_times_are_read_in_the_server_time_zone(instructor, settings):
    settings.TIME_ZONE = "America/New_York"
    create(
        "--opens",
        "2030-05-01T09:00",
        "--closes",
        "2030-05-01T09:30",
        "--expires",
        "2030-05-01T12:00",
    )
    assert Session.objects.get().opens_at.isoformat() == "2030-05-01T13:00:00+00:00"


def test_a_clashing_phrase_fails_naming_the_other_session(instructor, command_line):
    first = create()
    code, out, err = command_line(
        "create", "--classroom", "CS 102", "--owner", "alice", "--phrase", "PYTHON LAB 3!"
    )
    assert code == 1 and out == ""
    assert f"(session #{first.strip()})" in err and "is already the phrase of" in err
    assert Session.objects.count() == 1
    # The refused session's new classroom is not left behind, empty.
    assert not Classroom.objects.filter(name="CS 102").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--phrase", "stop"], "is a reserved SMS keyword"),
        (["--phrase", "ok"], "at least 4 characters"),
        (["--closes", "2020-01-01T00:00:00+00:00"], "Enrollment must close after it opens."),
        (
            [
                "--expires",
                (timezone.now() + timedelta(minutes=5)).isoformat(),
                "--enroll-minutes",
                "30",
            ],
            None,
        ),
        (
            ["--closes", (timezone.now() + timedelta(hours=5)).isoformat()],
            "Accounts cannot expire before enrollment closes.",
        ),
        (["--opens", "next tuesday"], "is not an ISO 8601 date-time"),
        (["--enroll-minutes", "0"], "is not a positive whole number"),
        (["--closes", "2030-01-01T00:00", "--enroll-minutes", "10"], "not allowed with"),
        (["--owner", "nobody"], "No user named “nobody”"),
    ],
)
def test_bad_input_fails_with_a_clear_message(instructor, args, message):
    base = {"--classroom": "CS 101", "--owner": "alice", "--phrase": "python lab 3"}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = [item for pair in base.items() for item in pair]
    if message is None:  # the default window is cut to the expiry instead of failing
        sessions("create", *argv)
        session = Session.objects.get()
        assert session.closes_at == session.expires_at
        return
    with pytest.raises(CommandError, match=message):
        sessions("create", *argv)
    assert not Session.objects.exists()


def test_a_non_staff_owner_is_refused(django_user_model):
    django_user_model.objects.create_user("student", password="pw")
    with pytest.raises(CommandError, match="is not staff"):
        create(owner="student")


def test_template_must_exist_in_coder(instructor, fake_coder):
    fake_coder.add_template("python-lab")
    create("--template", "Python-Lab")
    assert Session.objects.get().coder_template == "python-lab"
    with pytest.raises(CommandError, match="Coder has no template named “nope”"):
        create("--template", "nope", "--opens", (timezone.now() + timedelta(days=1)).isoformat())


def test_list_json_describes_every_session_with_account_counts(classroom, other_instructor):
    session = make_session(classroom, capacity=30)
    make_account(session, status=AccountStatus.ACTIVE, coder_username="cs-aaaaaa")
    make_account(session, "+14155550124", status=AccountStatus.FAILED)
    bobs = Classroom.objects.create(name="Bob's", owner=other_instructor)
    make_session(
        bobs,
        "bob lab",
        opens_at=timezone.now() + timedelta(days=1),
        closes_at=timezone.now() + timedelta(days=1, minutes=30),
        expires_at=timezone.now() + timedelta(days=1, hours=3),
    )
    rows = json.loads(sessions("list", "--json"))
    assert [row["phrase"] for row in rows] == ["python lab 3", "bob lab"]
    first = rows[0]
    assert {key: first[key] for key in ("id", "classroom", "owner", "state", "capacity")} == {
        "id": session.pk,
        "classroom": "CS 101",
        "owner": "alice",
        "state": "open",
        "capacity": 30,
    }
    assert datetime.fromisoformat(first["expires_at"]) == session.expires_at
    assert first["accounts"]["active"] == 1 and first["accounts"]["failed"] == 1
    assert first["accounts"]["deleted"] == 0 and first["accounts_total"] == 2
    assert rows[1]["state"] == "scheduled" and rows[1]["owner"] == "bob"


def test_list_prints_a_table(open_session):
    lines = sessions("list").splitlines()
    assert lines[0].split()[:4] == ["ID", "CLASSROOM", "OWNER", "PHRASE"]
    cells = re.split(r"\s{2,}", lines[1])
    assert cells[:5] == [str(open_session.pk), "CS 101", "alice", "python lab 3", "open"]
    assert cells[6] == f"{timezone.localtime(open_session.expires_at):%Y-%m-%d %H:%M}"
    assert cells[7] == "0/100"


def test_end_ends_the_session_and_requests_deletion(open_session):
    make_account(open_session, status=AccountStatus.ACTIVE, coder_username="cs-aaaaaa")
    output = sessions("end", str(open_session.pk))
    assert output == (
        f"Ended session {open_session.pk} (“python lab 3”): 1 account(s) being deleted.\n"
    )
    open_session.refresh_from_db()
    assert open_session.state == SessionState.ENDED
    assert Account.objects.get().deletion_reason == "ended"
    assert "had already ended" in sessions("end", str(open_session.pk))


def test_extend_moves_the_expiry(open_session):
    output = sessions("extend", str(open_session.pk), "--minutes", "20")
    new_expiry = open_session.expires_at + timedelta(minutes=20)
    assert Session.objects.get().expires_at == new_expiry
    assert new_expiry.isoformat() in output


def test_unknown_ids_and_ended_sessions_fail(classroom, command_line):
    code, _, err = command_line("end", "999")
    assert code == 1 and "No session with id 999." in err
    ended = make_session(classroom, ended_at=timezone.now())
    code, _, err = command_line("extend", str(ended.pk), "--minutes", "5")
    assert code == 1 and "has ended; it cannot be extended" in err
    code, _, err = command_line("extend", str(ended.pk))
    assert code == 2 and "--minutes" in err
