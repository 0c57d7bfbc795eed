"""A signed request replayed after retention has deleted its message log still does nothing:
a keyed hash of every MessageSid is kept for MESSAGE_SID_RETENTION_DAYS."""

from __future__ import annotations

import importlib
from datetime import timedelta

import pytest
from django.apps import apps
from django.utils import timezone

from registrations import maintenance
from registrations.models import (
    Account,
    AccountStatus,
    InboundMessage,
    InboundOutcome,
    OutboundMessage,
    SeenMessage,
    seen_message_key,
)
from tests.conftest import make_account

pytestmark = pytest.mark.django_db

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
CAPTURED_SID = "SM" + "d" * 32


def age_everything(days: int) -> None:
    """Move every message and seen sid into the past, as if `days` had gone by."""
    then = timezone.now() - timedelta(days=days)
    InboundMessage.objects.update(received_at=then)
    SeenMessage.objects.update(first_seen=then.date())


def test_a_done_replayed_after_retention_deletes_nothing(open_session, send_sms, settings):
    # The student texted DONE once (nothing to delete then); someone captured the signed request.
    assert send_sms("DONE", sid=CAPTURED_SID).status_code == 200
    age_everything(days=settings.RETENTION_DAYS + 5)
    assert maintenance.apply_retention()["inbound"] == 1
    assert not InboundMessage.objects.exists()
    # Weeks later the same phone joins another class.
    account = make_account(open_session, status=AccountStatus.ACTIVE, coder_username="cs-k7pw3m")

    response = send_sms("DONE", sid=CAPTURED_SID)

    assert response.status_code == 200 and response.content.decode() == EMPTY_TWIML
    account.refresh_from_db()
    assert (account.status, account.deletion_requested_at) == (AccountStatus.ACTIVE, None)
    assert not InboundMessage.objects.exists()
    assert not OutboundMessage.objects.exists()


def test_a_new_message_is_recorded_as_before(open_session, send_sms, settings):
    send_sms("python lab 3", sid=CAPTURED_SID)

    assert InboundMessage.objects.get().outcome == InboundOutcome.PROVISIONED
    assert Account.objects.count() == 1
    # Its log row remembers the sid; retention leaves a keyed hash in its place.
    age_everything(days=settings.RETENTION_DAYS + 5)
    maintenance.apply_retention()
    [seen] = SeenMessage.objects.all()
    # A keyed hash: the sid itself is not stored, nor anything that identifies the sender.
    assert seen.key == seen_message_key(CAPTURED_SID) and CAPTURED_SID not in seen.key
    assert seen.first_seen == (timezone.now() - timedelta(days=settings.RETENTION_DAYS + 5)).date()


def test_seen_sids_outlive_the_message_log_then_go(open_session, send_sms, settings):
    settings.MESSAGE_SID_RETENTION_DAYS = 400
    send_sms("HELP", sid="SM" + "1" * 32)
    age_everything(days=399)
    send_sms("HELP", sid="SM" + "2" * 32)
    InboundMessage.objects.filter(message_sid="SM" + "2" * 32).update(
        received_at=timezone.now() - timedelta(days=401)
    )
    SeenMessage.objects.filter(key=seen_message_key("SM" + "2" * 32)).update(
        first_seen=(timezone.now() - timedelta(days=401)).date()
    )

    report = maintenance.apply_retention()

    assert (report["inbound"], report["message_sids"]) == (2, 1)
    assert list(SeenMessage.objects.values_list("key", flat=True)) == [
        seen_message_key("SM" + "1" * 32)
    ]


def test_the_migration_remembers_the_sids_already_logged(open_session):
    InboundMessage.objects.create(
        message_sid=CAPTURED_SID, phone=None, outcome=InboundOutcome.DONE,
        received_at=timezone.now() - timedelta(days=3),
    )  # fmt: skip
    migration = importlib.import_module("registrations.migrations.0007_seen_messages_opted_out")

    migration.remember_logged_sids(apps, None)

    seen = SeenMessage.objects.get()
    assert seen.key == seen_message_key(CAPTURED_SID)
    assert seen.first_seen == (timezone.now() - timedelta(days=3)).date()
