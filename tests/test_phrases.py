"""Phrase normalisation, reserved keywords, and the clash rule enforced by Session.clean()."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from registrations.models import Session
from registrations.phrases import RESERVED_WORDS, normalize_phrase, phrase_problem
from tests.conftest import make_session


@pytest.mark.parametrize(
    "text",
    [
        "python lab 3",
        "Python Lab 3",
        "  PYTHON   lab\t3 ",
        "python\nlab 3",
        "python lab 3!",
        "“python lab 3.”",
        "...python lab 3???",
        "python\u00a0lab\u20093",  # no-break and thin spaces from phone keyboards
        "python\u200b lab 3",  # zero-width space
        "ｐｙｔｈｏｎ ｌａｂ ３",  # full-width letters and digits
    ],
)
def test_variants_normalise_to_the_same_phrase(text):
    assert normalize_phrase(text) == "python lab 3"


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("c++ lab", "c++ lab"),  # inner punctuation is kept
        ("Straße 1", "strasse 1"),  # case folding, not just lowering
        ("python lab 3 please", "python lab 3 please"),
        ("", ""),
        ("?!", ""),
    ],
)
def test_normalisation_keeps_what_matters(text, normalized):
    assert normalize_phrase(text) == normalized


@pytest.mark.parametrize(
    ("typed", "texted"),
    [
        ("Ada's lab", "Ada’s lab"),  # iOS smart apostrophe
        ("Ada's lab", "Ada‘s lab"),
        ('the "big" lab', "the “big” lab"),
        ("lab-3", "lab–3"),  # en dash
        ("lab-3", "lab—3"),  # em dash
        ("lab-3", "lab‑3"),  # non-breaking hyphen
    ],
)
def test_smart_punctuation_from_a_phone_matches_what_the_instructor_typed(typed, texted):
    assert normalize_phrase(texted) == normalize_phrase(typed)


@pytest.mark.parametrize("word", sorted(RESERVED_WORDS))
def test_reserved_words_are_never_phrases(word):
    assert phrase_problem(word) is not None
    assert phrase_problem(f" {word.upper()}! ") is not None


def test_every_carrier_and_app_keyword_is_reserved():
    expected = {"stop", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout",
                "start", "yes", "unstop", "help", "info", "done", "resend"}  # fmt: skip
    assert RESERVED_WORDS == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("lab", "The phrase must be at least 4 characters long."),
        (" !ab! ", "The phrase must be at least 4 characters long."),
        ("x" * 65, "The phrase must be at most 64 characters long."),
        ("Resend", "“RESEND” is a reserved SMS keyword (STOP, HELP, START, DONE, RESEND…); "
                   "choose another phrase."),
    ],
)  # fmt: skip
def test_phrase_problems_are_explained(text, problem):
    assert phrase_problem(text) == problem


@pytest.mark.parametrize("text", ["lab 4", "x" * 64, "python lab 3", "stop lab"])
def test_acceptable_phrases(text):
    assert phrase_problem(text) is None


def new_session(classroom, phrase: str, start_in_minutes: int = 0, **fields) -> Session:
    opens = timezone.now() + timedelta(minutes=start_in_minutes)
    return Session(
        classroom=classroom,
        phrase=phrase,
        opens_at=opens,
        closes_at=opens + timedelta(minutes=30),
        expires_at=opens + timedelta(hours=3),
        **fields,
    )


def test_saving_stores_the_normalised_phrase(classroom):
    assert make_session(classroom, phrase="  Python LAB 3! ").phrase_normalized == "python lab 3"


def test_same_phrase_in_an_overlapping_window_clashes(open_session, classroom):
    with pytest.raises(ValidationError) as error:
        new_session(classroom, "PYTHON lab 3.", start_in_minutes=10).full_clean()

    assert "is already the phrase of" in error.value.message_dict["phrase"][0]


def test_same_phrase_in_a_later_window_is_allowed(open_session, classroom):
    new_session(classroom, "python lab 3", start_in_minutes=60).full_clean()


def test_same_phrase_of_an_ended_session_is_allowed(open_session, classroom):
    open_session.ended_at = timezone.now()
    open_session.save()

    new_session(classroom, "python lab 3").full_clean()


def test_same_phrase_on_different_inbound_numbers_is_allowed(classroom):
    make_session(classroom, inbound_number="+14155550901")

    new_session(classroom, "python lab 3", inbound_number="+14155550902").full_clean()


def test_a_session_on_every_number_clashes_with_a_pinned_one(classroom):
    make_session(classroom, inbound_number="+14155550901")

    with pytest.raises(ValidationError):
        new_session(classroom, "python lab 3").full_clean()
    with pytest.raises(ValidationError):
        new_session(classroom, "python lab 3", inbound_number="+14155550901").full_clean()


def test_editing_a_session_does_not_clash_with_itself(open_session):
    open_session.capacity = 50
    open_session.full_clean()


def test_reserved_phrase_is_rejected_by_clean(classroom):
    with pytest.raises(ValidationError) as error:
        new_session(classroom, "Stop").full_clean()

    assert "reserved SMS keyword" in error.value.message_dict["phrase"][0]


def test_an_inbound_number_typed_any_way_is_stored_in_e164(classroom):
    session = new_session(classroom, "python lab 9", inbound_number=" +1 (415) 555-0901 ")

    session.full_clean()

    assert session.inbound_number == "+14155550901"


def test_a_typed_number_on_the_same_line_still_clashes(classroom):
    make_session(classroom, inbound_number="+14155550901")

    with pytest.raises(ValidationError) as error:
        new_session(classroom, "python lab 3", inbound_number="(415) 555-0901").full_clean()

    assert "is already the phrase of" in error.value.message_dict["phrase"][0]


@pytest.mark.parametrize("number", ["hello", "+999", "555"])
def test_an_inbound_number_that_is_not_a_phone_number_is_refused(classroom, number):
    with pytest.raises(ValidationError) as error:
        new_session(classroom, "python lab 9", inbound_number=number).full_clean()

    assert error.value.message_dict["inbound_number"] == [
        "Enter the Twilio number in international format, e.g. +14155550100."
    ]


def test_a_student_texting_with_smart_punctuation_joins(classroom, send_sms, broker):
    from registrations.models import Account

    session = make_session(classroom, "Ada's lab-3")

    response = send_sms("Ada’s lab–3")

    assert response.status_code == 200
    assert Account.objects.get().session == session


def test_the_migration_renormalises_phrases_stored_before_smart_punctuation_was_folded(
    classroom,
):
    from importlib import import_module

    from django.apps import apps

    session = make_session(classroom, "Ada’s lab")
    Session.objects.filter(pk=session.pk).update(phrase_normalized="ada’s lab")
    migration = import_module("registrations.migrations.0004_session_inbound_number_e164")

    migration.renormalize_phrases(apps, None)

    session.refresh_from_db()
    assert session.phrase_normalized == "ada's lab"
