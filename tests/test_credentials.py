"""Usernames and passwords: valid for Coder, readable in an SMS, strong by Coder's own rule."""

from __future__ import annotations

import re

import pytest

from registrations import credentials
from registrations.credentials import (
    entropy_bits,
    generate_password,
    generate_username,
    is_valid_username,
)

AMBIGUOUS = set("lI1oO0")
CODER_NAME_RE = re.compile(r"^[a-zA-Z0-9]+(-[a-zA-Z0-9]+)*$")


def test_entropy_matches_coders_documented_examples():
    assert entropy_bits("Abc123!x") == pytest.approx(42.46, abs=0.01)
    assert entropy_bits("qmzkwpvrtnb") == pytest.approx(51.70, abs=0.01)
    assert entropy_bits("aB3dE5gH7j") == pytest.approx(59.54, abs=0.01)


def test_entropy_collapses_runs_and_sequences():
    assert entropy_bits("aaaaaa") == pytest.approx(2 * entropy_bits("a"))
    assert entropy_bits("x12345y") == entropy_bits("x12y")
    assert entropy_bits("qwerty") < entropy_bits("qwfpgj")
    assert entropy_bits("") == 0


def test_entropy_counts_each_class_and_unknown_characters():
    assert entropy_bits("a-") == pytest.approx(2 * 4.954, abs=0.01)  # 26 + 5
    assert entropy_bits("a`") == pytest.approx(2 * 4.755, abs=0.01)  # 26 + 1


def test_generated_passwords_are_strong_readable_and_unique():
    passwords = [generate_password() for _ in range(5000)]
    assert len(set(passwords)) == len(passwords)
    for password in passwords:
        assert entropy_bits(password) >= credentials.MIN_ENTROPY_BITS
        assert not AMBIGUOUS & set(password)
        assert re.fullmatch(r"[a-z2-9]{4}-[a-z2-9]{4}-[a-z2-9]{4}", password)


def test_generated_passwords_pass_the_fake_coders_validator():
    fake = pytest.importorskip("tests.fakes.coder")
    for _ in range(2000):
        password = generate_password()
        assert fake.password_problem(password) is None
        assert fake.password_entropy(password) == pytest.approx(entropy_bits(password))


def test_our_entropy_agrees_with_the_fake_coder_on_awkward_inputs():
    fake = pytest.importorskip("tests.fakes.coder")
    samples = [
        "abcabcabc",
        "zyxwvu",
        "9876543210",
        "aaab12345",
        "Passw0rd!",
        "qwe-asd-zxc",
        "abcdefghijklmnopqrstuvwxyz",
        "mnbvcxz",
        "é€`x",
        "a a a",
    ]
    for sample in samples:
        assert entropy_bits(sample) == pytest.approx(fake.password_entropy(sample)), sample


def test_generated_usernames_are_valid_short_prefixed_and_unambiguous(settings):
    settings.CODER_USERNAME_PREFIX = "cs"
    names = [generate_username() for _ in range(2000)]
    assert len(set(names)) > 1990
    for name in names:
        assert CODER_NAME_RE.match(name) and len(name) <= 32
        assert name.startswith("cs-")
        assert not AMBIGUOUS & set(name.removeprefix("cs-"))


def test_username_prefix_is_sanitised_and_bounded(settings):
    settings.CODER_USERNAME_PREFIX = "  Lab_Room--7! " + "x" * 40
    name = generate_username()
    assert is_valid_username(name)
    assert len(name) <= 32 and name.startswith("lab-room-7-")


def test_empty_prefix_still_gives_valid_usernames(settings):
    settings.CODER_USERNAME_PREFIX = ""
    assert all(is_valid_username(generate_username()) for _ in range(200))


def test_username_validity_follows_coders_rule():
    assert is_valid_username("cs-abc234")
    for bad in ("-cs", "cs-", "cs--a", "cs_a", "cs.a", "new", "Create", "a" * 33, ""):
        assert not is_valid_username(bad), bad


def test_email_marker_identifies_our_users(settings):
    settings.CODER_EMAIL_DOMAIN = "lab.invalid"
    settings.DEPLOYMENT_ID = "k3fq7"
    assert credentials.email_for("cs-abc234") == "cs-abc234.k3fq7@lab.invalid"
    assert credentials.is_ours("cs-abc234", "CS-ABC234.K3FQ7@lab.invalid")
    assert not credentials.is_ours("cs-abc234", "cs-abc234.k3fq7@example.edu")
    assert not credentials.is_ours("cs-abc234", "cs-abc234@lab.invalid")  # from before the marker
    assert not credentials.is_ours("cs-abc234", "cs-abc234.other@lab.invalid")
    assert not credentials.is_ours("cs-abc234", "someone@lab.invalid")
    assert credentials.marker_username("CS-ABC234.k3fq7@Lab.Invalid") == "cs-abc234"
    assert not credentials.is_our_email(None)
    for email in (
        "cs-abc234@lab.invalid",  # no marker
        "cs-abc234.other@lab.invalid",  # another deployment's
        "jsmith.k3fq7@lab.invalid",  # not our username prefix
        "cs-abc234.k3fq7@lab.invalid.example.com",
        "cs-abc234.k3fq7@sub.lab.invalid",
        "cs_abc.k3fq7@lab.invalid",  # not a username Coder accepts
    ):
        assert not credentials.is_our_email(email), email


def test_deployment_id_is_derived_from_the_secret_key_when_unset(settings):
    settings.DEPLOYMENT_ID = ""
    derived = credentials.deployment_id()
    assert len(derived) == credentials.DEPLOYMENT_ID_LENGTH and derived.isalnum()
    assert credentials.deployment_id() == derived  # stable
    settings.SECRET_KEY = "another deployment's key"
    assert credentials.deployment_id() != derived
