"""Abuse: phrase guessing, session hopping, floods, hostile text in admin, long and unusual text."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from django.contrib import admin
from django.urls import NoReverseMatch, reverse

from registrations.models import (
    Account,
    AccountStatus,
    Classroom,
    InboundMessage,
    InboundOutcome,
    OutboundMessage,
)
from registrations.texts import WRONG_PHRASE_REPLY
from tests.conftest import STUDENT_PHONE, make_account, make_instructor, make_session, queued_tasks

pytestmark = pytest.mark.django_db


def reply_of(response) -> str | None:
    assert response.status_code == 200
    message = ET.fromstring(response.content).find("Message")
    return None if message is None else message.text


def outcomes() -> list[str]:
    return list(InboundMessage.objects.order_by("pk").values_list("outcome", flat=True))


def test_phrase_guessing_is_throttled_then_silent_even_for_the_right_phrase(
    open_session, send_sms, settings
):
    guesses = [f"python lab {n}" for n in range(4, 4 + settings.INBOUND_THROTTLE_COUNT + 5)]

    replies = [reply_of(send_sms(guess)) for guess in guesses]
    late_hit = reply_of(send_sms("python lab 3"))

    assert replies == [WRONG_PHRASE_REPLY] + [None] * (len(guesses) - 1)
    assert late_hit is None
    assert not Account.objects.exists()
    limit = settings.INBOUND_THROTTLE_COUNT
    assert outcomes() == [InboundOutcome.WRONG_PHRASE] * limit + [InboundOutcome.THROTTLED] * (
        len(guesses) + 1 - limit
    )
    assert not OutboundMessage.objects.exists()


def test_the_instructor_sees_guessing_on_the_dashboard(
    client, instructor, open_session, send_sms, settings
):
    for n in range(settings.INBOUND_THROTTLE_COUNT + 3):
        send_sms(f"guess {n}", phone="+14155550142")
    client.force_login(instructor)

    response = client.get(reverse("admin:registrations_session_dashboard"))

    assert response.context["wrong_phrase"] == settings.INBOUND_THROTTLE_COUNT
    assert response.context["throttled"] == 3
    content = response.content.decode()
    assert '<strong id="throttled">3</strong>' in content
    # Counts only: the guesser's number and texts stay out of the instructor's view.
    assert "guess 1" not in content and "0142" not in content


def test_one_phone_hopping_between_sessions_is_bounded_by_the_throttle(
    classroom, send_sms, settings
):
    settings.INBOUND_THROTTLE_COUNT = 3
    owner = make_instructor("carol")
    other = Classroom.objects.create(name="Other", owner=owner)
    sessions = [make_session(classroom if n % 2 else other, f"lab number {n}") for n in range(5)]

    for session in sessions:
        send_sms(session.phrase)
    send_sms(sessions[0].phrase)

    joined = list(Account.objects.order_by("pk").values_list("session", flat=True))
    assert joined == [s.pk for s in sessions[:3]]
    assert outcomes()[3:] == [InboundOutcome.THROTTLED] * 3


def test_hopping_back_to_a_joined_session_never_makes_a_second_account(classroom, send_sms):
    first, second = make_session(classroom, "lab one"), make_session(classroom, "lab two")

    for phrase in ("lab one", "lab two", "lab one", "lab two"):
        send_sms(phrase)

    assert sorted(Account.objects.values_list("session", flat=True)) == [first.pk, second.pk]
    assert outcomes()[2:] == [InboundOutcome.DUPLICATE] * 2


def test_flood_of_wrong_phrases_from_many_phones_gets_one_reply_each_and_no_sms(
    open_session, send_sms, broker, django_capture_on_commit_callbacks
):
    phones = [f"+1415555{n:04d}" for n in range(2000, 2060)]

    with django_capture_on_commit_callbacks(execute=True):
        replies = [reply_of(send_sms(f"spam {n}", phone=p)) for n in range(3) for p in phones]

    assert sum(1 for reply in replies if reply) == len(phones)
    assert set(replies) == {WRONG_PHRASE_REPLY, None}
    assert not OutboundMessage.objects.exists()
    assert not Account.objects.exists()
    assert broker.queue_size() == 0


def test_an_enrolled_phone_spamming_the_phrase_gets_one_new_password(
    open_session, send_sms, broker, django_capture_on_commit_callbacks
):
    make_account(open_session, status=AccountStatus.ACTIVE, coder_username="cs-spam")

    with django_capture_on_commit_callbacks(execute=True):
        replies = [reply_of(send_sms("python lab 3")) for _ in range(15)]

    assert replies == [None] * 15
    assert [t["func"] for t in queued_tasks(broker)] == ["registrations.tasks.resend_credentials"]
    assert Account.objects.count() == 1


SCRIPT = '<script>alert("x")</script>'
ATTRIBUTE = '"><img src=x onerror=alert(1)>'
RAW = (SCRIPT, ATTRIBUTE, "<img src=x")


@pytest.fixture
def hostile(open_session, superuser):
    """Hostile text in every field a student, an instructor or a remote service can fill."""
    classroom = open_session.classroom
    classroom.name = f"CS {SCRIPT}"
    classroom.save()
    session = make_session(classroom, f"lab {ATTRIBUTE}")
    account = make_account(session, status=AccountStatus.FAILED, coder_username="cs-hostile",
                           last_error=f"Coder said {SCRIPT}")
    InboundMessage.objects.create(message_sid="SMhostile", phone=STUDENT_PHONE,
                                  body=f"{SCRIPT}{ATTRIBUTE}", outcome="wrong_phrase",
                                  session=session, account=account)
    OutboundMessage.objects.create(phone=STUDENT_PHONE, kind="test", body=SCRIPT, session=session,
                                   account=account, error_message=ATTRIBUTE, status="failed")
    return session, account


def admin_pages(session, account) -> list[str]:
    """Every page of our models' admins that shows one of the hostile rows, and the rest."""
    urls = [reverse("admin:index"), reverse("admin:registrations_session_dashboard")]
    for model in admin.site._registry:
        if model._meta.app_label != "registrations":
            continue
        info = f"admin:registrations_{model._meta.model_name}"
        urls.append(reverse(f"{info}_changelist"))
        urls.append(reverse(f"{info}_changelist") + "?q=" + SCRIPT)
        for obj in model._default_manager.all()[:5]:
            for view in ("change", "history", "delete"):
                urls.append(reverse(f"{info}_{view}", args=[obj.pk]))
    for name in ("page", "roster", "end", "invite", "test_message"):
        urls.append(reverse(f"admin:registrations_session_{name}", args=[session.pk]))
    for name in ("revoke", "reveal_phone"):
        try:
            urls.append(reverse(f"admin:registrations_account_{name}", args=[account.pk]))
        except NoReverseMatch:
            pass
    return urls


@pytest.mark.parametrize("who", ["superuser", "instructor"])
def test_hostile_text_is_escaped_on_every_admin_page(client, hostile, request, who):
    client.force_login(request.getfixturevalue(who))

    for url in admin_pages(*hostile):
        response = client.get(url)
        assert response.status_code in (200, 302, 403), url
        content = response.content.decode()
        for raw in RAW:
            assert raw not in content, url


def test_hostile_phrase_is_escaped_in_admin_messages(client, instructor, classroom):
    client.force_login(instructor)
    form = {
        "classroom": classroom.pk, "phrase": f"lab {SCRIPT}", "opens_at_0": "2030-01-01",
        "opens_at_1": "10:00", "closes_at_0": "2030-01-01", "closes_at_1": "10:30",
        "expires_at_0": "2030-01-01", "expires_at_1": "13:00", "time_zone": "UTC",
        "warn_minutes": "10", "capacity": "10",
    }

    response = client.post(reverse("admin:registrations_session_add"), form, follow=True)

    content = response.content.decode()
    assert "Created “CS 101 · lab &lt;script&gt;" in content
    assert SCRIPT not in content


LONG = ("🐍 مرحبا שלום \u202eevil\u202c " * 60)[:1600]


def test_very_long_emoji_and_rtl_body_is_stored_truncated_and_shown_escaped(
    client, superuser, open_session, send_sms
):
    assert reply_of(send_sms(LONG)) == WRONG_PHRASE_REPLY
    message = InboundMessage.objects.get()
    message.full_clean()
    assert message.body == LONG.strip()[:320]

    client.force_login(superuser)
    for url in (reverse("admin:registrations_inboundmessage_changelist"),
                reverse("admin:registrations_inboundmessage_change", args=[message.pk])):
        response = client.get(url)
        assert response.status_code == 200
        assert "🐍 مرحبا שלום" in response.content.decode()


def test_rtl_and_emoji_names_and_phrases_work_end_to_end(client, instructor, send_sms):
    classroom = Classroom.objects.create(name="مختبر 🐍 בינה", owner=instructor)
    session = make_session(classroom, "مختبر بايثون")

    # Phones add invisible direction marks around right-to-left text.
    assert reply_of(send_sms("\u200fمختبر  بايثون\u200f")) is None
    assert Account.objects.get().session == session

    client.force_login(instructor)
    for url in (reverse("admin:registrations_session_page", args=[session.pk]),
                reverse("admin:registrations_session_changelist")):
        content = client.get(url).content.decode()
        assert "مختبر بايثون" in content
    assert "مختبر 🐍 בינה" in client.get(
        reverse("admin:registrations_classroom_changelist")).content.decode()


def test_replies_never_echo_what_was_texted(open_session, send_sms):
    for body in (LONG, SCRIPT, "🐍🐍 python lab 3 🐍🐍"):
        reply = reply_of(send_sms(body, phone="+14155550150"))
        assert reply is None or body not in reply
