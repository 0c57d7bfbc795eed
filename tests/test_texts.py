"""SMS texts: one GSM-7 segment where possible, segment counting, validated session overrides."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError

from registrations import texts
from registrations.models import Account
from registrations.texts import is_gsm7, segments

EXPIRES = datetime(2025, 3, 4, 22, 30, tzinfo=UTC)


@pytest.fixture
def account(open_session, settings) -> Account:
    settings.CODER_URL = "https://coder.example.edu"
    settings.DEPLOYMENT_ID = "q4xzt"
    open_session.time_zone = "America/New_York"
    open_session.save()
    return Account.objects.create(
        session=open_session, phone="+14155550123", coder_username="cs-k7pw3m", expires_at=EXPIRES
    )


def test_gsm7_detection():
    assert is_gsm7("Hello @ £5 {ok} [x] €")
    assert not is_gsm7("curly “quotes”")
    assert not is_gsm7("emoji 🙂")


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("€" * 80, 1),  # extension characters take two septets
        ("€" * 81, 2),
        ("a" * 152 + "€", 1),
        ("a" * 159 + "€", 2),
        ("é" * 160, 1),  # é is in the GSM-7 basic table
        ("ł" * 70, 1),
        ("ł" * 71, 2),
        ("ł" * 134, 2),
        ("ł" * 135, 3),
        ("🙂" * 35, 1),  # a surrogate pair is two UCS-2 units
        ("🙂" * 36, 2),
    ],
)
def test_segment_count(text, count):
    assert segments(text) == count


def test_segment_count_never_splits_an_escape_sequence():
    # 306 septets would fit two parts, but the escape sequence cannot straddle them.
    assert segments("a" * 152 + "€" + "a" * 151) == 2
    assert segments("a" * 152 + "€" + "a" * 152) == 3


def test_credentials_text_is_one_gsm7_segment_with_local_expiry(account):
    text = texts.credentials_text(account, "k7pw-m3rt-q9zx")
    assert text == (
        "Your Coder account is ready.\nhttps://coder.example.edu\n"
        "Email: cs-k7pw3m.q4xzt@lab.invalid\nPassword: k7pw-m3rt-q9zx\nExpires Tue Mar 4 17:30 EST"
    )
    assert is_gsm7(text) and segments(text) == 1


def test_credentials_show_the_email_coder_answered_with_not_one_derived_now(account, settings):
    # The domain setting may change after the user was created; the user's email does not.
    account.coder_email = "cs-k7pw3m@old-domain.invalid"
    settings.CODER_EMAIL_DOMAIN = "new.invalid"
    assert "Email: cs-k7pw3m@old-domain.invalid\n" in texts.credentials_text(account, "pw")


@pytest.mark.parametrize("render", [texts.credentials_text, texts.resend_text])
def test_every_credentials_sms_fits_one_segment_with_a_realistic_url(account, settings, render):
    settings.CODER_URL = "https://coder.cs.example.edu"
    text = render(account, "k7pw-m3rt-q9zx")
    assert "\nEmail: cs-k7pw3m.q4xzt@lab.invalid\nPassword: k7pw-m3rt-q9zx\n" in text
    assert is_gsm7(text) and segments(text) == 1


def test_credentials_text_gets_terser_for_a_long_coder_url(account, settings):
    settings.CODER_URL = "https://coder.computing-department.example-university.edu/lab"
    text = texts.credentials_text(account, "k7pw-m3rt-q9zx")
    assert segments(text) == 1
    assert "cs-k7pw3m.q4xzt@lab.invalid" in text and "k7pw-m3rt-q9zx" in text
    assert settings.CODER_URL in text


def test_resend_text_says_it_is_a_new_password(account):
    text = texts.resend_text(account, "abcd-efgh-jkmn")
    assert text.startswith("New Coder password.")
    assert "abcd-efgh-jkmn" in text and segments(text) == 1


def test_session_override_is_used_for_credentials_and_resend(account):
    account.session.credentials_message = "Lab 3! Log in at {url} as {email} / {password}."
    assert texts.credentials_text(account, "pw-1") == (
        "Lab 3! Log in at https://coder.example.edu as cs-k7pw3m.q4xzt@lab.invalid / pw-1."
    )
    assert texts.resend_text(account, "pw-2").endswith("cs-k7pw3m.q4xzt@lab.invalid / pw-2.")


def test_a_stored_override_without_email_is_never_sent(account):
    # Written before Coder's email login was understood: a student could not log in with it.
    account.session.credentials_message = "Log in at {url} as {username} / {password}."
    text = texts.credentials_text(account, "pw-1")
    assert text.startswith("Your Coder account is ready.") and "Email: cs-k7pw3m.q4xzt@" in text


def test_an_invalid_stored_override_falls_back_to_the_default(account):
    account.session.credentials_message = "Hi {name}, your password is {password}"
    assert texts.credentials_text(account, "pw").startswith("Your Coder account is ready.")


def test_warning_text_counts_minutes_and_uses_the_override(account):
    now = datetime(2025, 3, 4, 22, 20, 30, tzinfo=UTC)
    assert texts.warning_text(account, now) == (
        "Your Coder account cs-k7pw3m will be deleted in 10 min (Tue Mar 4 17:30 EST). "
        "Save your work somewhere else now."
    )
    account.session.warning_message = "{minutes} minutes left (until {expires})."
    assert texts.warning_text(account, now) == "10 minutes left (until Tue Mar 4 17:30 EST)."


def test_fixed_texts_are_single_gsm7_segments(account):
    for text in (
        texts.failure_text(account),
        texts.deleted_text(account),
        texts.test_text(account.session),
    ):
        assert is_gsm7(text) and segments(text) == 1
    assert "instructor has been told" in texts.failure_text(account)


def test_expiry_falls_back_to_the_site_zone_for_an_unknown_zone(settings):
    settings.TIME_ZONE = "UTC"
    assert texts.format_expiry(EXPIRES, "Mars/Olympus") == "Tue Mar 4 22:30 UTC"


def _errors(session) -> dict[str, list[str]]:
    with pytest.raises(ValidationError) as info:
        session.full_clean()
    return info.value.message_dict


def test_override_with_unknown_placeholder_is_rejected(open_session):
    open_session.credentials_message = "Hi {name}: {username} {password}"
    assert _errors(open_session)["credentials_message"] == [
        "Unknown placeholder {name}. Use only {url}, {email}, {username}, {password}, {expires}."
    ]


def test_credentials_override_must_contain_email_and_password(open_session):
    open_session.credentials_message = "Log in at {url}."
    assert _errors(open_session)["credentials_message"] == [
        "The message must contain {email}, {password}, or students cannot log in."
    ]


def test_an_override_with_username_instead_of_email_says_why_it_cannot_work(open_session):
    open_session.credentials_message = "Log in at {url} as {username} / {password}."
    assert _errors(open_session)["credentials_message"] == [
        "Coder's login form asks for the email address, not the username: the message must "
        "contain {email}, or students cannot log in."
    ]


def test_warning_override_cannot_carry_the_password(open_session):
    open_session.warning_message = "Expires {expires}, password {password}"
    assert _errors(open_session)["warning_message"] == [
        "Unknown placeholder {password}. Use only {url}, {username}, {expires}, {minutes}."
    ]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("{email} {password", 'Unmatched "{" or "}". Write {{ or }} for a literal brace.'),
        ("{email} {password} }", 'Unmatched "{" or "}". Write {{ or }} for a literal brace.'),
        ("{email} {password} {}", "Empty placeholder {}. Write {{}} for literal braces."),
        (
            "{username.__class__} {email} {password}",
            "Placeholders take no attributes, indexes or formats: {username.__class__} is not "
            "allowed. Use only {url}, {email}, {username}, {password}, {expires}.",
        ),
        (
            "{username!r} {email} {password}",
            "Placeholders take no attributes, indexes or formats: {username} is not allowed. "
            "Use only {url}, {email}, {username}, {password}, {expires}.",
        ),
    ],
)
def test_malformed_overrides_are_rejected_with_a_clear_message(open_session, override, message):
    open_session.credentials_message = override
    assert _errors(open_session)["credentials_message"] == [message]


def test_valid_overrides_and_literal_braces_pass(open_session):
    open_session.credentials_message = "{{Lab}} {url} {email} {password} until {expires}"
    open_session.warning_message = "{minutes} min left"
    open_session.full_clean()


def test_override_too_long_for_twilio_is_rejected(open_session):
    open_session.credentials_message = "{email} {password} " + "x" * 1600
    assert "too long" in _errors(open_session)["credentials_message"][0]
