"""The roster CSV: masked phones, zoned times, formulas neutralised, scoped like the page; the
same text from `sessions roster ID --csv`."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse

from registrations.models import Account, AccountStatus, Classroom, OutboundMessage, OutboundStatus
from registrations.phones import mask_phone
from registrations.roster_export import neutralise, roster_csv
from tests.conftest import STUDENT_PHONE, make_account, make_session

pytestmark = pytest.mark.django_db

JOINED = datetime(2030, 3, 4, 20, 35, tzinfo=UTC)


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text.removeprefix("\ufeff"))))


@pytest.fixture
def session(classroom):
    session = make_session(classroom, time_zone="America/New_York")
    account = make_account(
        session,
        coder_username="cs-ada",
        status=AccountStatus.ACTIVE,
        created_at=JOINED,
        coder_last_seen_at=JOINED.replace(hour=21),
    )
    OutboundMessage.objects.create(
        phone=STUDENT_PHONE, kind="credentials", body="x", session=session, account=account,
        status=OutboundStatus.UNDELIVERED, error_code=30003,
    )
    return session


def test_csv_has_masked_phone_zoned_times_and_latest_sms_status(session):
    header, row = rows(roster_csv(session))
    assert header[4] == "joined at (America/New_York)"
    assert "first login not recorded" in header[6]
    # Masked exactly as on screen, then neutralised: the mask starts with "+".
    assert row[0] == "'" + mask_phone(STUDENT_PHONE)
    assert STUDENT_PHONE not in roster_csv(session)
    assert row[1:4] == ["cs-ada", Account.objects.get().login_email, "Active"]
    assert row[4] == "2030-03-04T15:35:00-05:00"
    assert row[6] == "2030-03-04T16:35:00-05:00"
    assert row[7] == "Undelivered (30003)"


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_cells_starting_a_formula_get_a_leading_quote(start):
    assert neutralise(f"{start}HYPERLINK(1)") == f"'{start}HYPERLINK(1)"
    assert neutralise("cs-ada") == "cs-ada"


def test_a_hostile_username_is_neutralised_in_the_csv(classroom):
    session = make_session(classroom)
    make_account(session, coder_username='=HYPERLINK("http://x")')
    assert rows(roster_csv(session))[1][1] == '\'=HYPERLINK("http://x")'


def test_instructor_downloads_their_sessions_roster(client, instructor, session):
    client.force_login(instructor)
    response = client.get(reverse("admin:registrations_session_roster_csv", args=[session.pk]))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="roster-{session.pk}-python-lab-3.csv"'
    )
    assert response.content.decode().removeprefix("\ufeff") == roster_csv(session)


def test_another_instructors_roster_is_a_404(client, other_instructor, session):
    client.force_login(other_instructor)
    response = client.get(reverse("admin:registrations_session_roster_csv", args=[session.pk]))
    assert response.status_code == 404


def test_the_session_page_links_the_download(client, instructor, session):
    client.force_login(instructor)
    page = client.get(reverse("admin:registrations_session_page", args=[session.pk]))
    url = reverse("admin:registrations_session_roster_csv", args=[session.pk])
    assert f'href="{url}"' in page.content.decode()


def test_cli_prints_the_same_csv(session):
    out = StringIO()
    call_command("sessions", "roster", str(session.pk), "--csv", stdout=out)
    assert out.getvalue() == roster_csv(session)


def test_cli_prints_a_table_without_csv(session):
    out = StringIO()
    call_command("sessions", "roster", str(session.pk), stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("phone") and "cs-ada" in lines[1]
    assert "Undelivered (30003)" in lines[1]


def test_cli_names_a_missing_session(db):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="No session with id 999"):
        call_command("sessions", "roster", "999", stdout=StringIO())


def test_rows_of_other_sessions_are_not_exported(session, other_instructor):
    other = make_session(Classroom.objects.create(name="B", owner=other_instructor), "bob lab")
    make_account(other, "+14155550177", coder_username="cs-bob")
    assert "cs-bob" not in roster_csv(session)
