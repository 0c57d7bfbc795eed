"""Privacy: phone numbers are masked on every admin page unless a superuser reveals one (logged
without the number), and deleting an account purges its number from every row about it."""

from __future__ import annotations

import logging

import pytest
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

from registrations import deletion, maintenance
from registrations.models import (
    Account,
    AccountStatus,
    DeletionReason,
    InboundMessage,
    OptOut,
    OutboundMessage,
    OutboundStatus,
)
from tests.conftest import STUDENT_PHONE, make_account

pytestmark = pytest.mark.django_db

PHONE = "+14155550155"
# Every way the number could be written on a page.
FORMS = (PHONE, PHONE[1:], PHONE[2:], "(415) 555-0155", "415-555-0155", "415 555 0155",
         "+1 415-555-0155", "555-0155")


@pytest.fixture
def world(open_session, superuser):
    """An account with every kind of row that carries its phone number."""
    account = make_account(open_session, PHONE, status=AccountStatus.FAILED,
                           coder_username="cs-private", last_error="Coder said no")
    InboundMessage.objects.create(message_sid="SMprivate", phone=PHONE, body="python lab 3",
                                  outcome="provisioned", session=open_session, account=account)
    InboundMessage.objects.create(message_sid="SMstop", phone=PHONE, body="STOP",
                                  outcome="opt_out")
    OutboundMessage.objects.create(phone=PHONE, kind="credentials", body="Password: ••••••",
                                   account=account, session=open_session, status="failed",
                                   error_message="Invalid 'To' Phone Number: +•••••••••55")
    OptOut.objects.create(phone=PHONE)
    return open_session, account


def pages(session, account) -> list[str]:
    """Every admin page that lists or shows one of the rows above."""
    urls = [reverse("admin:index"), reverse("admin:registrations_session_dashboard")]
    for model in admin.site._registry:
        info = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        urls.append(reverse(f"{info}_changelist"))
        if model._meta.app_label != "registrations":
            continue
        for obj in model._default_manager.all():
            urls += [reverse(f"{info}_{view}", args=[obj.pk])
                     for view in ("change", "history", "delete")]
    urls.append(reverse("admin:registrations_account_changelist")
                + f"?session__id__exact={session.pk}")
    for name in ("page", "roster", "end", "invite", "test_message"):
        urls.append(reverse(f"admin:registrations_session_{name}", args=[session.pk]))
    for name in ("revoke", "reveal_phone"):
        urls.append(reverse(f"admin:registrations_account_{name}", args=[account.pk]))
    return urls


@pytest.mark.parametrize("who", ["superuser", "instructor"])
def test_no_admin_page_shows_a_full_phone_number(client, world, request, who):
    client.force_login(request.getfixturevalue(who))

    for url in pages(*world):
        response = client.get(url)
        assert response.status_code in (200, 302, 403), url
        content = response.content.decode()
        for form in FORMS:
            assert form not in content, f"{form} on {url}"


def test_the_masked_number_is_what_admins_see(client, superuser, world):
    client.force_login(superuser)

    for name in ("account", "inboundmessage", "outboundmessage", "optout"):
        content = client.get(reverse(f"admin:registrations_{name}_changelist")).content.decode()
        assert "+•••••••••55" in content, name


def test_a_reveal_shows_the_number_once_and_logs_without_it(client, superuser, world, caplog):
    _, account = world
    caplog.set_level(logging.DEBUG)
    client.force_login(superuser)
    url = reverse("admin:registrations_account_reveal_phone", args=[account.pk])

    response = client.post(url, {"confirm": "yes"})

    assert PHONE in response.content.decode()
    assert "revealed the phone number of account" in caplog.text
    for form in FORMS:
        assert form not in caplog.text
    assert PHONE not in client.get(url).content.decode()


def finish(account: Account, capture) -> Account:
    """Drive the deletion pipeline to its end (builds finish within one look here)."""
    for _ in range(6):
        account.refresh_from_db()
        if account.status == AccountStatus.DELETED:
            break
        Account.objects.filter(pk=account.pk).update(next_attempt_at=timezone.now())
        with capture(execute=True):
            deletion.advance(account.pk)
    account.refresh_from_db()
    return account


@pytest.mark.parametrize("reason", [DeletionReason.REVOKED, DeletionReason.EXPIRED])
def test_deletion_purges_the_number_from_every_row_of_the_account(
    open_session, coder_account, fake_coder, fake_twilio, sync_tasks,
    django_capture_on_commit_callbacks, reason,
):
    account = coder_account(open_session)
    fake_coder.build_polls = 0
    InboundMessage.objects.create(message_sid="SMjoin", phone=STUDENT_PHONE, body="python lab 3",
                                  outcome="provisioned", session=open_session, account=account)
    OutboundMessage.objects.create(phone=STUDENT_PHONE, kind="credentials", body="••••••",
                                   account=account, status=OutboundStatus.DELIVERED)
    # A warning still waiting to go out when the account is deleted keeps its number until sent.
    OutboundMessage.objects.create(phone=STUDENT_PHONE, kind="warning", body="Expires soon",
                                   account=account, status=OutboundStatus.RETRY)

    with django_capture_on_commit_callbacks(execute=True):
        deletion.request_deletion(account, reason)
    account = finish(account, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        OutboundMessage.objects.filter(status=OutboundStatus.RETRY).update(
            next_attempt_at=timezone.now())
        maintenance.sweep()

    assert (account.status, account.phone) == (AccountStatus.DELETED, None)
    assert list(InboundMessage.objects.filter(account=account).values_list("phone", flat=True)) \
        == [None]
    outbound = OutboundMessage.objects.filter(account=account)
    assert outbound.count() == (3 if reason == DeletionReason.REVOKED else 2)
    assert list(outbound.exclude(phone=None).values_list("kind", "status")) == []
    assert STUDENT_PHONE in [m["to"] for m in fake_twilio.messages]


def test_an_opt_out_outlives_the_account(open_session, coder_account, fake_coder,
                                         django_capture_on_commit_callbacks):
    # STOP must keep working after deletion: the opt-out is the one record that keeps the number.
    account = coder_account(open_session)
    fake_coder.build_polls = 0
    OptOut.objects.create(phone=STUDENT_PHONE)

    with django_capture_on_commit_callbacks(execute=True):
        deletion.request_deletion(account, DeletionReason.EXPIRED)
    finish(account, django_capture_on_commit_callbacks)

    assert OptOut.objects.filter(phone=STUDENT_PHONE).exists()
