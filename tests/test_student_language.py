"""Students' SMS in their session's language: what reaches Twilio and the webhook's replies are
in Spanish for a Spanish session (English unchanged), every shipped translation fits the
segment budget of its English original, and the admin preview, the CLI and the system checks
know about it."""

from __future__ import annotations

import json
import os
import re
import string
import subprocess
import sys
import xml.etree.ElementTree as ET
import zoneinfo
from datetime import UTC, datetime, timedelta
from io import StringIO
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from registrations import deletion, expiry, texts
from registrations.checks import check_translations
from registrations.models import Account, AccountStatus, Session
from registrations.session_lifecycle import duplicate_session
from tests.conftest import STUDENT_PHONE, make_account, make_session
from tests.student import logs_in

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parent.parent
CATALOGUES = sorted((ROOT / "locale").glob("*/LC_MESSAGES/django.po"))
LANGUAGES = [code for code, _ in django_settings.STUDENT_LANGUAGES]
PREVIEW_URL = "/admin/registrations/session/preview-message/"
# A Tuesday, 17:30 in New York; every weekday is tried where the expiry is in the text.
EXPIRES = datetime(2025, 3, 4, 22, 30, tzinfo=UTC)


@pytest.fixture
def spanish(open_session) -> Session:
    open_session.language = "es"
    open_session.save()
    return open_session


@pytest.fixture
def services(fake_coder, fake_twilio, settings):
    settings.CODER_EMAIL_DOMAIN = "lab.invalid"
    return fake_coder, fake_twilio


def texts_to_student(fake_twilio) -> list[str]:
    return [m["body"] for m in fake_twilio.messages_to(STUDENT_PHONE)]


def reply(response) -> str | None:
    """The text of the TwiML <Message> the webhook answered with (None for no reply)."""
    assert response.status_code == 200
    message = ET.fromstring(response.content).find("Message")
    return None if message is None else message.text


def test_a_spanish_session_texts_credentials_in_spanish_that_log_in(
    spanish, send_sms, services, sync_tasks, django_capture_on_commit_callbacks
):
    fake_coder, fake_twilio = services
    with django_capture_on_commit_callbacks(execute=True):
        assert reply(send_sms("python lab 3")) is None
    [message] = fake_twilio.messages_to(STUDENT_PHONE)
    body = message["body"]
    assert body.startswith("Ya tienes tu cuenta de Coder.\n" + fake_coder.url + "\nEmail: cs-")
    assert re.search(r"\nVence el \d{1,2} [a-z]{3} \d\d:\d\d \S+$", body), body
    assert message["num_segments"] == 1
    # The labels are Coder's own (its login form is in English): the student can log in.
    assert logs_in(fake_coder.url, body)


def test_an_english_session_is_texted_as_before(
    open_session, send_sms, services, sync_tasks, django_capture_on_commit_callbacks
):
    _, fake_twilio = services
    with django_capture_on_commit_callbacks(execute=True):
        send_sms("python lab 3")
    [body] = texts_to_student(fake_twilio)
    assert body.startswith("Your Coder account is ready.\n") and "\nExpires " in body


def test_resend_warning_and_goodbye_reach_twilio_in_spanish(
    spanish, send_sms, services, sync_tasks, django_capture_on_commit_callbacks
):
    fake_coder, fake_twilio = services
    fake_coder.build_polls = 0
    with django_capture_on_commit_callbacks(execute=True):
        send_sms("python lab 3")
    with django_capture_on_commit_callbacks(execute=True):
        assert reply(send_sms("RESEND")) is None
    assert texts_to_student(fake_twilio)[-1].startswith("Nueva contraseña de Coder.\n")
    assert logs_in(fake_coder.url, texts_to_student(fake_twilio)[-1])

    account = Account.objects.get()
    Account.objects.filter(pk=account.pk).update(expires_at=timezone.now() + timedelta(minutes=9))
    with django_capture_on_commit_callbacks(execute=True):
        assert expiry.warn_due() == 1
    assert re.fullmatch(
        rf"Tu cuenta de Coder {account.coder_username} se borra en 9 min \(.+\)\. "
        r"Guarda ya tu trabajo en otro lugar\.",
        texts_to_student(fake_twilio)[-1],
    )

    with django_capture_on_commit_callbacks(execute=True):
        assert reply(send_sms("DONE")) == (
            "De acuerdo, estamos borrando tu cuenta de la clase. ¡Gracias por participar!"
        )
    for _ in range(5):  # the pipeline, one step at a time, until the account is gone
        Account.objects.filter(pk=account.pk).update(next_attempt_at=timezone.now())
        with django_capture_on_commit_callbacks(execute=True):
            deletion.advance(account.pk)
    assert texts_to_student(fake_twilio)[-1] == (
        f"Hemos borrado tu cuenta de Coder {account.coder_username} y sus workspaces. "
        "¡Gracias por participar, y a seguir programando!"
    )
    assert all(m["num_segments"] == 1 for m in fake_twilio.messages_to(STUDENT_PHONE))


def test_webhook_replies_about_a_spanish_session_are_in_spanish(send_sms, classroom):
    now = timezone.now()
    make_session(
        classroom,
        "lab mañana",
        language="es",
        time_zone="America/Mexico_City",
        opens_at=datetime(2030, 3, 9, 16, 0, tzinfo=UTC),  # a Saturday
        closes_at=datetime(2030, 3, 9, 17, 0, tzinfo=UTC),
        expires_at=datetime(2030, 3, 9, 20, 0, tzinfo=UTC),
    )
    make_session(classroom, "lab cerrado", language="es", closes_at=now - timedelta(minutes=1))
    full = make_session(classroom, "lab lleno", language="es", capacity=1)
    make_account(full, "+14155550999")

    assert reply(send_sms("lab mañana")) == (
        "El registro para esta clase abre el 9 mar 10:00 CST. "
        "Manda la frase de nuevo a partir de entonces."
    )
    assert reply(send_sms("lab cerrado", phone="+14155550124")) == (
        "Lo sentimos, el registro para esta clase ya ha cerrado. Pide ayuda a tu docente."
    )
    assert reply(send_sms("lab lleno", phone="+14155550125")) == (
        "Lo sentimos, ya no quedan lugares en esta clase. Pide ayuda a tu docente."
    )


def test_a_repeat_text_is_answered_in_the_sessions_language(spanish, send_sms):
    assert reply(send_sms("python lab 3")) is None
    assert reply(send_sms("python lab 3")) == (
        "Ya te has registrado. Tus datos de acceso te llegan en breve por SMS."
    )


def test_ended_limited_failed_and_deleting_replies_are_in_the_sessions_language(
    spanish, classroom, send_sms, settings
):
    settings.RESEND_LIMIT_PER_HOUR = 0
    make_session(classroom, "lab terminado", language="es", ended_at=timezone.now())
    assert reply(send_sms("lab terminado", phone="+14155550130")) == (
        "Lo sentimos, esta clase ya ha terminado. Pide ayuda a tu docente."
    )

    limited = (
        "Has pedido nuevos datos de acceso demasiadas veces. Espera hasta una hora y "
        "vuelve a intentarlo."
    )
    make_account(spanish, "+14155550131", status=AccountStatus.ACTIVE)
    assert reply(send_sms("RESEND", phone="+14155550131")) == limited
    make_account(spanish, "+14155550132", status=AccountStatus.ACTIVE)
    assert reply(send_sms("python lab 3", phone="+14155550132")) == limited

    failed = "Lo sentimos, no pudimos crear tu cuenta. Pide a tu docente que lo vuelva a intentar."
    make_account(spanish, "+14155550133", status=AccountStatus.FAILED)
    assert reply(send_sms("RESEND", phone="+14155550133")) == failed
    assert reply(send_sms("python lab 3", phone="+14155550133")) == failed

    make_account(
        spanish,
        "+14155550134",
        status=AccountStatus.SUSPENDING,
        deletion_requested_at=timezone.now(),
    )
    assert reply(send_sms("python lab 3", phone="+14155550134")) == (
        "Estamos borrando tu cuenta de esta clase. Manda la frase de nuevo en unos minutos "
        "para tener una nueva."
    )


def test_done_is_answered_in_the_language_of_the_newest_account(spanish, classroom, send_sms):
    english = make_session(classroom, "java lab 1")
    make_account(spanish, "+14155550140")
    make_account(english, "+14155550140")
    make_account(english, "+14155550141")
    make_account(spanish, "+14155550141")
    assert reply(send_sms("DONE", phone="+14155550140")) == (
        "OK, your class account is being deleted now. Thanks for taking part!"
    )
    assert reply(send_sms("DONE", phone="+14155550141")) == (
        "De acuerdo, estamos borrando tu cuenta de la clase. ¡Gracias por participar!"
    )


def test_replies_about_no_session_are_in_the_default_language(spanish, send_sms, settings):
    assert reply(send_sms("no such phrase")) == texts.WRONG_PHRASE_REPLY
    assert reply(send_sms("DONE")) == "You have no class account to delete."
    settings.DEFAULT_STUDENT_LANGUAGE = "es"
    assert reply(send_sms("RESEND", phone="+14155550124")) == (
        "No tienes cuenta en ninguna clase. Manda la frase que te dio tu docente para unirte."
    )


def test_an_instructors_own_text_is_sent_as_typed_with_the_expiry_in_spanish(spanish, settings):
    settings.CODER_URL = "https://coder.example.edu"
    spanish.time_zone = "America/New_York"
    spanish.credentials_message = "Lab 3: {url} {email} {password} hasta {expires}"
    account = make_account(spanish, coder_username="cs-k7pw3m", expires_at=EXPIRES)
    assert texts.credentials_text(account, "pw-1").startswith("Lab 3: https://coder.example.edu")
    assert texts.credentials_text(account, "pw-1").endswith(" pw-1 hasta 4 mar 17:30 EST")


@pytest.mark.parametrize(
    ("language", "expected"),
    [("en", "Tue Mar 4 17:30 EST"), ("es", "4 mar 17:30 EST")],
)
def test_expiries_name_the_month_in_the_language(language, expected):
    session = Session(language=language)
    with texts.speaking(session):
        assert texts.format_expiry(EXPIRES, "America/New_York") == expected


def test_english_expiries_are_formatted_as_before_whatever_the_language_active(settings):
    # The admin (and a worker) run in en-us: English expiries read as strftime made them.
    for day in range(7):
        moment = EXPIRES + timedelta(days=day)
        local = moment.astimezone(zoneinfo.ZoneInfo("Asia/Tokyo"))
        with texts.speaking(Session(language="en")):
            formatted = texts.format_expiry(moment, "Asia/Tokyo")
        assert formatted == f"{local:%a %b} {local.day} {local:%H:%M %Z}"


def _every_text(account: Account) -> dict[str, str]:
    """Every SMS a student can get about this account, and every webhook reply, rendered."""
    session = account.session
    password = "k7pw-m3rt-q9zx"
    rendered = {
        "credentials": texts.credentials_text(account, password),
        "resend": texts.resend_text(account, password),
        "warning": texts.warning_text(account, account.expires_at - timedelta(minutes=10)),
        "failure": texts.failure_text(account),
        "ended before ready": texts.ended_before_ready_text(account),
        "goodbye": texts.deleted_text(account),
        "test": texts.test_text(session),
        "new expiry": texts.new_expiry_text(account),
        "delayed": texts.delayed_text(account),
        "not open": texts.not_open_reply(session),
    }
    for name in dir(texts):
        if name.endswith("_REPLY") and name != "NOT_OPEN_REPLY":
            rendered[name] = texts.in_language(getattr(texts, name), session)
    return rendered


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_shipped_text_fits_one_gsm7_segment_with_realistic_values(
    language, open_session, settings
):
    # A realistic URL and email, the longest phrase, and each day of the week (Spanish "sáb"
    # would have made Saturdays UCS-2).
    settings.CODER_URL = "https://coder.cs.example.edu"
    settings.DEPLOYMENT_ID = "q4xzt"
    open_session.language = language
    open_session.time_zone = "America/Los_Angeles"
    open_session.phrase = "p" * 64
    for day in range(7):
        expires_at = EXPIRES + timedelta(days=day)
        account = Account(session=open_session, coder_username="cs-k7pw3m", expires_at=expires_at)
        open_session.opens_at = account.expires_at
        for name, text in _every_text(account).items():
            assert texts.is_gsm7(text), (name, texts.outside_gsm7(text), text)
            assert texts.segments(text) == 1, (name, len(text), text)


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_fullest_credentials_fit_a_realistic_url_in_every_language(
    language, open_session, settings
):
    settings.CODER_URL = "https://coder.cs.example.edu"
    settings.DEPLOYMENT_ID = "q4xzt"
    open_session.language = language
    account = make_account(open_session, coder_username="cs-k7pw3m", expires_at=EXPIRES)
    with texts.speaking(open_session):
        fullest = str(texts.CREDENTIALS_DEFAULTS[0]).split("\n")[0]
        renewed = str(texts.RESEND_DEFAULTS[0]).split("\n")[0]
    assert texts.credentials_text(account, "k7pw-m3rt-q9zx").startswith(fullest + "\n")
    assert texts.resend_text(account, "k7pw-m3rt-q9zx").startswith(renewed + "\n")


def test_a_long_username_still_fits_the_spanish_goodbye_and_new_expiry(spanish):
    account = make_account(spanish, coder_username="x" * 32, expires_at=EXPIRES)
    for text in (texts.deleted_text(account), texts.new_expiry_text(account)):
        assert texts.is_gsm7(text) and texts.segments(text) == 1


@pytest.mark.parametrize("language", [code for code in LANGUAGES if code != "en"])
def test_every_text_is_translated(language, open_session):
    # A missing text, or an uncompiled catalogue, would silently send English.
    account = make_account(open_session, coder_username="cs-k7pw3m", expires_at=EXPIRES)
    english = _every_text(account)
    open_session.language = language
    translated = _every_text(account)
    assert [name for name in english if english[name] == translated[name]] == []


def _fields(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


@pytest.mark.parametrize("path", CATALOGUES, ids=lambda path: path.parts[-3])
def test_every_catalogue_translates_every_text_with_the_same_placeholders(path):
    with path.open("rb") as po:
        catalogue = read_po(po)
    messages = [m for m in catalogue if m.id]
    assert messages
    for message in messages:
        assert message.string and not message.fuzzy, message.id
        if "python-brace-format" in message.flags:
            assert _fields(message.string) == _fields(message.id), message.id


def test_shipped_languages_each_have_a_catalogue():
    shipped = {path.parts[-3] for path in CATALOGUES}
    assert set(LANGUAGES) - {"en"} <= shipped


def test_a_stored_language_no_longer_offered_falls_back_to_the_default(open_session, settings):
    open_session.language = "fr"
    account = make_account(open_session, coder_username="cs-k7pw3m", expires_at=EXPIRES)
    assert texts.failure_text(account) == str(texts.FAILURE_TEXT)
    settings.DEFAULT_STUDENT_LANGUAGE = "es"
    assert texts.failure_text(account).startswith("Lo sentimos")


def test_new_sessions_take_the_default_language_and_duplicates_copy_theirs(
    classroom, settings
):
    assert make_session(classroom).language == "en"
    settings.DEFAULT_STUDENT_LANGUAGE = "es"
    session = make_session(classroom, "python lab 4")
    assert session.language == "es"
    settings.DEFAULT_STUDENT_LANGUAGE = "en"
    assert duplicate_session(session, "python lab 5", timedelta(days=7)).language == "es"


def test_the_preview_shows_the_default_in_the_chosen_language_and_its_encoding(
    client, instructor
):
    client.force_login(instructor)
    data = client.post(PREVIEW_URL, {"kind": "credentials", "language": "es"}).json()
    assert data["text"].startswith("Ya tienes tu cuenta de Coder.\n")
    assert (data["language"], data["default"]) == ("Español", True)
    assert (data["encoding"], data["per_segment"], data["outside_gsm7"]) == ("GSM-7", 160, [])
    assert data["segments"] == 1


def test_the_preview_says_which_letters_make_a_text_ucs2(client, instructor):
    client.force_login(instructor)
    text = "Tu cuenta está lista: {url} {email} {password} (válida hasta {expires})"
    data = client.post(PREVIEW_URL, {"kind": "credentials", "text": text, "language": "es"}).json()
    assert data["text"].startswith("Tu cuenta está lista: ")  # as typed, not translated
    assert (data["encoding"], data["per_segment"], data["gsm7"]) == ("UCS-2", 70, False)
    assert data["outside_gsm7"] == ["á"]
    assert data["segments"] == 2 and data["default"] is False


def test_the_preview_of_an_unknown_language_is_the_default_one(client, instructor):
    client.force_login(instructor)
    data = client.post(PREVIEW_URL, {"kind": "warning", "language": "xx"}).json()
    assert data["language"] == "English" and data["text"].startswith("Your Coder account")


def test_the_session_page_and_test_message_are_in_the_sessions_language(
    client, instructor, spanish
):
    client.force_login(instructor)
    page = client.get(f"/admin/registrations/session/{spanish.pk}/page/").content.decode()
    assert '<dd id="session-language">Español</dd>' in page
    form = client.get(f"/admin/registrations/session/{spanish.pk}/test-message/")
    assert "Mensaje de prueba de classroom-sms para" in form.content.decode()


def sessions(*args: str) -> str:
    out = StringIO()
    call_command("sessions", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_cli_creates_a_spanish_session_and_lists_its_language(instructor):
    base = ("create", "--classroom", "CS 101", "--owner", "alice")
    spanish_id = int(sessions(*base, "--phrase", "python lab 3", "--language", "es"))
    english_id = int(sessions(*base, "--phrase", "python lab 4"))
    assert Session.objects.get(pk=spanish_id).language == "es"
    rows = {row["id"]: row for row in json.loads(sessions("list", "--json"))}
    assert (rows[spanish_id]["language"], rows[english_id]["language"]) == ("es", "en")
    header, first, *_ = sessions("list").splitlines()
    assert header.split()[-1] == "LANG" and first.split()[-1] == "es"


def test_cli_refuses_an_unknown_language_and_a_language_with_from(instructor, open_session):
    with pytest.raises(CommandError, match="invalid choice: 'fr'"):
        sessions("create", "--classroom", "CS 101", "--owner", "alice", "--phrase", "lab x",
                 "--language", "fr")
    with pytest.raises(CommandError, match="drop --language"):
        sessions("create", "--from", str(open_session.pk), "--phrase", "lab y",
                 "--language", "es")
    assert Session.objects.count() == 1


def test_a_stale_or_missing_catalogue_is_a_system_check_warning(tmp_path, settings):
    folder = tmp_path / "es" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / "django.po").write_text('msgid ""\nmsgstr ""\n')
    settings.LOCALE_PATHS = [tmp_path]
    [warning] = check_translations()
    assert warning.id == "registrations.W004" and "es" in warning.msg
    (folder / "django.mo").write_bytes(b"")
    os.utime(folder / "django.po", (0, 0))
    assert check_translations() == []


def test_an_unknown_default_language_stops_the_app_at_start():
    environment = {**os.environ, "ENV_FILE": "", "SECRET_KEY": "x",
                   "DJANGO_SETTINGS_MODULE": "classroom_sms.settings"}
    probe = "import django; django.setup()"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={**environment, "DEFAULT_STUDENT_LANGUAGE": "fr"},
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "DEFAULT_STUDENT_LANGUAGE must be one of: en, es" in done.stderr
    ok = subprocess.run(
        [sys.executable, "-c", probe + "; from django.conf import settings as s; "
         "print(s.DEFAULT_STUDENT_LANGUAGE)"],
        cwd=ROOT,
        env={**environment, "DEFAULT_STUDENT_LANGUAGE": "ES"},
        capture_output=True,
        text=True,
    )
    assert ok.stdout.strip() == "es"
