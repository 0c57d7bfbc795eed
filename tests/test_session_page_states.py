"""The session page fits the session's state: scheduled, open, closed, being deleted, all gone."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from registrations.admin import page_state
from registrations.models import AccountStatus, DeletionReason
from tests.conftest import make_account, make_session

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(client, instructor, twilio_settings):
    client.force_login(instructor)
    return client


def page(client, session) -> str:
    url = reverse("admin:registrations_session_page", args=[session.pk])
    return client.get(url).content.decode()


def test_a_scheduled_session_shows_the_join_card_and_when_it_opens(alice, classroom):
    later = timezone.now() + timedelta(days=1)
    session = make_session(classroom, opens_at=later, closes_at=later + timedelta(minutes=30),
                           expires_at=later + timedelta(hours=3))
    content = page(alice, session)
    assert 'id="join-phrase"' in content and 'id="join-opens"' in content
    assert "Not open yet." in content and "Open enrollment now" in content
    assert 'id="count-seats-left"' in content


def test_an_open_session_says_what_students_get_and_what_happens_at_expiry(
    alice, open_session, settings
):
    settings.CODER_URL = "https://coder.example.edu"
    content = page(alice, open_session)
    assert "Present the join card" in content and 'id="join-next"' in content
    assert "https://coder.example.edu" in content
    assert 'id="what-students-get"' in content
    assert "every student gets a warning SMS" in content
    assert "Coder account and its workspaces are deleted" in content


def test_a_closed_session_has_no_join_card_and_offers_to_reopen(alice, classroom):
    now = timezone.now()
    session = make_session(classroom, opens_at=now - timedelta(hours=1),
                           closes_at=now - timedelta(minutes=1))
    content = page(alice, session)
    assert 'id="join-phrase"' not in content and "Present the join card" not in content
    assert "Open enrollment again" in content and "seats left" not in content


def test_an_ended_session_shows_deletion_progress_not_the_join_card(alice, open_session):
    now = timezone.now()
    for i in range(3):
        make_account(open_session, None, coder_username=f"cs-gone{i}",
                     status=AccountStatus.DELETED, deleted_at=now,
                     deletion_requested_at=now - timedelta(minutes=2))
    for i in range(2):
        make_account(open_session, f"+1415555020{i}", coder_username=f"cs-going{i}",
                     status=AccountStatus.DELETING_WORKSPACES,
                     deletion_requested_at=now - timedelta(minutes=2),
                     deletion_reason=DeletionReason.ENDED)
    open_session.ended_at = now
    open_session.expires_at = open_session.closes_at = now
    open_session.opens_at = now - timedelta(hours=1)
    open_session.save()

    content = page(alice, open_session)

    assert 'id="join-phrase"' not in content and "Present the join card" not in content
    assert "seats left" not in content and "End now" not in content
    assert "Ended early" in content
    assert '<strong id="count-deleted">3</strong>' in content
    assert '<strong id="count-remaining">2</strong>' in content
    assert 'id="deletion-eta">About <strong>' in content


def test_an_expired_session_whose_accounts_are_all_gone_shows_a_summary(alice, classroom):
    now = timezone.now()
    session = make_session(classroom, opens_at=now - timedelta(hours=4),
                           closes_at=now - timedelta(hours=3), expires_at=now - timedelta(hours=1))
    make_account(session, None, coder_username="cs-gone1", status=AccountStatus.DELETED,
                 deleted_at=now, coder_last_seen_at=now - timedelta(hours=2))
    make_account(session, None, coder_username="cs-gone2", status=AccountStatus.DELETED,
                 deleted_at=now)

    content = page(alice, session)

    assert "Expired</strong> at" in content and 'id="summary"' in content
    assert '<strong id="summary-joined">2</strong>' in content
    assert '<strong id="summary-logged-in">1</strong>' in content
    assert "All 2 accounts and their workspaces were deleted" in content
    assert 'id="deletion-progress"' not in content and 'id="join-phrase"' not in content


def test_the_roster_tells_the_page_its_state_so_it_reloads_when_it_changes(alice, open_session):
    url = reverse("admin:registrations_session_roster", args=[open_session.pk])
    assert 'id="live-state" data-state="open"' in alice.get(url).content.decode()


def test_the_estimate_uses_the_measured_pace_once_there_is_one(settings):
    settings.CLEANUP_CONCURRENCY = 8
    now = timezone.now()
    assert page_state.estimate_minutes(0, 10, now, now) == 0
    # Nothing measured: 8 calls at once, about 240 a minute, plus the fixed two minutes.
    assert page_state.estimate_minutes(500, 0, None, now) == 2 + 3
    # 10 deleted in 5 minutes: 2 a minute, so 20 more take 10 minutes (plus two).
    assert page_state.estimate_minutes(20, 10, now - timedelta(minutes=5), now) == 12
