"""Each admin action does what it says, says it with counts, and leaves an admin-log entry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.urls import reverse
from django.utils import timezone

from registrations.models import (
    Account,
    AccountSource,
    AccountStatus,
    DeletionReason,
    OptOut,
    OutboundMessage,
    Session,
    SessionState,
)
from tests.conftest import make_account, make_session, queued_tasks

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(client, instructor, broker):
    client.force_login(instructor)
    return client


def shown(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


def log_messages(obj) -> list[str]:
    entries = LogEntry.objects.filter(
        object_id=str(obj.pk), action_flag=CHANGE, content_type__model=obj._meta.model_name
    )
    return [entry.get_change_message() for entry in entries]


def changelist_action(client, model: str, action: str, objs, **extra):
    return client.post(
        reverse(f"admin:registrations_{model}_changelist"),
        {"action": action, "_selected_action": [obj.pk for obj in objs], **extra},
        follow=True,
    )


def page(session: Session) -> str:
    return reverse("admin:registrations_session_page", args=[session.pk])


def test_revoke_action_asks_for_confirmation_first(alice, open_session):
    account = make_account(open_session, coder_username="cs-abcdef", status="active")
    response = changelist_action(alice, "account", "revoke_accounts", [account])
    assert response.templates[0].name == "registrations/confirm_revoke.html"
    assert "cs-abcdef" in response.content.decode()
    account.refresh_from_db()
    assert account.status == AccountStatus.ACTIVE and account.deletion_requested_at is None


def test_revoke_action_starts_deletion_and_counts_what_it_skipped(alice, open_session):
    live = make_account(open_session, coder_username="cs-abcdef", status="active")
    going = make_account(
        open_session,
        "+14155550124",
        coder_username="cs-ghjkmn",
        status=AccountStatus.DELETING_USER,
        deletion_requested_at=timezone.now(),
    )
    response = changelist_action(alice, "account", "revoke_accounts", [live, going], confirm="yes")
    assert shown(response) == [
        "Revoked 1 account: being deleted from Coder now. 1 account already being deleted or gone."
    ]
    live.refresh_from_db()
    assert live.status == AccountStatus.SUSPENDING
    assert live.deletion_reason == DeletionReason.REVOKED
    assert log_messages(live) == ["Revoked: deletion from Coder started."]
    assert log_messages(going) == []


def test_revoke_from_the_roster_confirms_then_returns_to_the_session_page(
    alice, open_session, django_capture_on_commit_callbacks, broker
):
    account = make_account(open_session, coder_username="cs-abcdef", status="active")
    url = reverse("admin:registrations_account_revoke", args=[account.pk])
    confirm = alice.get(url, {"next": page(open_session)})
    assert "Yes, revoke 1 account" in confirm.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post(url, {"confirm": "yes", "next": page(open_session)})
    assert response.status_code == 302 and response.url == page(open_session)
    account.refresh_from_db()
    assert account.status == AccountStatus.SUSPENDING
    assert [(t["func"], t["args"]) for t in queued_tasks(broker)] == [
        ("registrations.tasks.advance_deletion", (account.pk,))
    ]


def test_revoke_ignores_a_next_url_off_this_site(alice, open_session):
    account = make_account(open_session, coder_username="cs-abcdef", status="active")
    url = reverse("admin:registrations_account_revoke", args=[account.pk])
    response = alice.post(url, {"confirm": "yes", "next": "https://evil.example/"})
    assert response.url == reverse("admin:registrations_account_change", args=[account.pk])


def test_resend_action_confirms_then_queues_new_credentials_for_active_accounts_only(
    alice, open_session
):
    active = make_account(open_session, coder_username="cs-abcdef", status="active")
    failed = make_account(open_session, "+14155550124", status=AccountStatus.FAILED)
    confirm = changelist_action(alice, "account", "resend_credentials", [active, failed])
    assert confirm.templates[0].name == "registrations/confirm_resend.html"
    page = confirm.content.decode()
    assert "The old password stops working at once" in page and "cs-abcdef" in page
    assert Account.objects.get(pk=active.pk).resend_count == 0
    response = changelist_action(
        alice, "account", "resend_credentials", [active, failed], confirm="yes"
    )
    assert shown(response) == [
        "Sending 1 student a new password by SMS (cs-abcdef (+•••••••••23)): their old "
        "passwords stop working. 1 account skipped (not active): account #"
        f"{failed.pk} (+•••••••••24)."
    ]
    active.refresh_from_db()
    assert active.resend_count == 1 and active.next_attempt_at is not None
    assert log_messages(active) == ["Resent credentials with a new password."]
    assert log_messages(failed) == []


def test_retry_action_requeues_failed_accounts(
    alice, open_session, django_capture_on_commit_callbacks, broker
):
    failed = make_account(
        open_session, status=AccountStatus.FAILED, attempts=5, last_error="Coder said no"
    )
    active = make_account(open_session, "+14155550124", coder_username="cs-abcdef", status="active")
    with django_capture_on_commit_callbacks(execute=True):
        response = changelist_action(alice, "account", "retry_provisioning", [failed, active])
    assert shown(response) == [
        "Retrying provisioning of 1 account. 1 account skipped (not failed)."
    ]
    failed.refresh_from_db()
    assert (failed.status, failed.attempts, failed.last_error) == (AccountStatus.REQUESTED, 0, "")
    assert [(t["func"], t["args"]) for t in queued_tasks(broker)] == [
        ("registrations.tasks.provision_account", (failed.pk,))
    ]
    assert log_messages(failed) == ["Retried failed provisioning."]


def test_resend_and_retry_buttons_of_the_roster(alice, open_session):
    active = make_account(open_session, coder_username="cs-abcdef", status="active")
    failed = make_account(open_session, "+14155550124", status=AccountStatus.FAILED)
    url = reverse("admin:registrations_account_resend", args=[active.pk])
    # Resend asks first, naming the student; an unconfirmed POST changes nothing either.
    confirm = alice.get(url, {"next": page(open_session)}).content.decode()
    assert "Yes, send cs-abcdef a new password" in confirm and "+•••••••••23" in confirm
    assert "The old password stops working at once" in confirm
    alice.post(url, {"next": page(open_session)})
    assert Account.objects.get(pk=active.pk).resend_count == 0
    resend = alice.post(url, {"confirm": "yes", "next": page(open_session)}, follow=True)
    assert shown(resend) == [
        "Sending cs-abcdef (+•••••••••23) a new password by SMS: their old password stops "
        "working as soon as Coder has the new one."
    ]
    assert resend.redirect_chain[-1][0] == page(open_session)
    assert Account.objects.get(pk=active.pk).resend_count == 1
    retry = alice.post(
        reverse("admin:registrations_account_retry", args=[failed.pk]),
        {"next": page(open_session)},
        follow=True,
    )
    assert shown(retry) == ["Retrying provisioning of 1 account."]
    assert retry.redirect_chain[-1][0] == page(open_session)
    assert (
        alice.get(reverse("admin:registrations_account_retry", args=[failed.pk])).status_code
        == 405
    )


def test_orphan_action_sends_orphan_delete_builds(
    client, superuser, open_session, coder_account, fake_coder, broker
):
    account = coder_account(
        open_session,
        "cs-stuck",
        status=AccountStatus.DELETING_WORKSPACES,
        workspace_delete_failures=3,
    )
    client.force_login(superuser)
    response = changelist_action(client, "account", "orphan_workspaces", [account])
    assert shown(response) == ["Orphaning the workspaces of 1 account."]
    builds = [r.body for r in fake_coder.requests("POST", "/api/v2/workspaces/")]
    assert builds and all(b["transition"] == "delete" and b["orphan"] is True for b in builds)
    assert log_messages(account) == ["Orphaned its stuck workspaces."]


def test_end_sessions_action_confirms_then_ends_and_counts(alice, classroom, open_session):
    make_account(open_session, coder_username="cs-abcdef", status="active")
    make_account(open_session, "+14155550124", coder_username="cs-ghjkmn", status="active")
    ended = make_session(classroom, "old lab", ended_at=timezone.now())
    confirm = changelist_action(alice, "session", "end_sessions", [open_session, ended])
    assert "Yes, end now and delete 2 accounts" in confirm.content.decode()
    assert Session.objects.get(pk=open_session.pk).ended_at is None
    response = changelist_action(
        alice, "session", "end_sessions", [open_session, ended], confirm="yes"
    )
    assert shown(response) == [
        "Ended 1 session: 2 accounts being deleted from Coder. 1 session had already ended."
    ]
    open_session.refresh_from_db()
    assert open_session.state == SessionState.ENDED
    assert set(open_session.accounts.values_list("deletion_reason", flat=True)) == {"ended"}
    assert log_messages(open_session) == ["Ended the session now: 2 accounts to delete."]


@pytest.mark.parametrize("confirm", ["", "yes"])
def test_end_sessions_on_select_all_of_an_empty_filtered_list_says_so(
    alice, open_session, confirm
):
    url = reverse("admin:registrations_session_changelist") + "?q=no-such-session"
    data = {"action": "end_sessions", "select_across": "1", "index": "0", "confirm": confirm}
    response = alice.post(url, {**data, "_selected_action": [open_session.pk]})
    assert response.status_code == 302
    assert shown(alice.get(response.url)) == ["No sessions match: none were ended."]
    assert Session.objects.get(pk=open_session.pk).ended_at is None


def test_end_now_page_names_the_accounts_to_delete_then_ends(alice, open_session):
    make_account(open_session, coder_username="cs-abcdef", status="active")
    make_account(open_session, "+14155550124", coder_username="cs-ghjkmn", status="active")
    url = reverse("admin:registrations_session_end", args=[open_session.pk])
    content = alice.get(url).content.decode()
    assert "2 accounts" in content and "cs-abcdef" in content and "cs-ghjkmn" in content
    response = alice.post(url, {"confirm": "yes"}, follow=True)
    assert shown(response) == [f"Ended “{open_session}”: 2 accounts being deleted from Coder."]
    assert Session.objects.get(pk=open_session.pk).ended_at is not None
    assert Account.objects.filter(deletion_reason="ended").count() == 2


def test_end_now_without_confirmation_changes_nothing(alice, open_session):
    alice.post(reverse("admin:registrations_session_end", args=[open_session.pk]))
    assert Session.objects.get(pk=open_session.pk).ended_at is None


def test_extend_moves_session_and_account_expiry(alice, open_session):
    account = make_account(open_session, coder_username="cs-abcdef", status="active")
    url = reverse("admin:registrations_session_extend", args=[open_session.pk])
    response = alice.post(url, {"minutes": "45"}, follow=True)
    [text] = shown(response)
    assert text.startswith(f"Extended “{open_session}” by 45 minutes: accounts now expire at ")
    assert Session.objects.get(pk=open_session.pk).expires_at == (
        open_session.expires_at + timedelta(minutes=45)
    )
    assert Account.objects.get(pk=account.pk).expires_at == (
        open_session.expires_at + timedelta(minutes=45)
    )
    assert log_messages(open_session) == [text]


@pytest.mark.parametrize("minutes", ["0", "-5", "abc", "100000"])
def test_extend_refuses_a_bad_number_of_minutes(alice, open_session, minutes):
    url = reverse("admin:registrations_session_extend", args=[open_session.pk])
    response = alice.post(url, {"minutes": minutes}, follow=True)
    assert shown(response) == ["Extend by 1 to 10080 minutes (a whole number)."]
    assert Session.objects.get(pk=open_session.pk).expires_at == open_session.expires_at


def test_extend_refuses_an_ended_session(alice, classroom):
    session = make_session(classroom, ended_at=timezone.now())
    url = reverse("admin:registrations_session_extend", args=[session.pk])
    response = alice.post(url, {"minutes": "30"}, follow=True)
    assert shown(response) == [f"“{session}” has ended; it cannot be extended."]


def test_close_then_reopen_enrollment_now(alice, open_session):
    url = reverse("admin:registrations_session_enrollment", args=[open_session.pk])
    closed = alice.post(url, {"action": "close"}, follow=True)
    assert shown(closed) == [f"Enrollment in “{open_session}” is closed."]
    assert Session.objects.get(pk=open_session.pk).state == SessionState.CLOSED
    reopened = alice.post(url, {"action": "open"}, follow=True)
    [text] = shown(reopened)
    assert text.startswith(f"Enrollment in “{open_session}” is open until ")
    session = Session.objects.get(pk=open_session.pk)
    assert session.state == SessionState.OPEN
    assert session.closes_at - timezone.now() > timedelta(minutes=29)
    assert log_messages(open_session) == [text, f"Enrollment in “{open_session}” is closed."]


def test_open_now_starts_a_scheduled_session(alice, classroom):
    later = timezone.now() + timedelta(hours=1)
    session = make_session(classroom, opens_at=later, closes_at=later + timedelta(minutes=30))
    url = reverse("admin:registrations_session_enrollment", args=[session.pk])
    alice.post(url, {"action": "open"})
    assert Session.objects.get(pk=session.pk).state == SessionState.OPEN


def test_reopening_into_a_clash_names_the_other_session(alice, classroom):
    now = timezone.now()
    closed = make_session(
        classroom,
        "python lab 3",
        opens_at=now - timedelta(hours=1),
        closes_at=now - timedelta(minutes=1),
    )
    other = make_session(classroom, "Python Lab 3!", opens_at=now - timedelta(seconds=30))
    url = reverse("admin:registrations_session_enrollment", args=[closed.pk])
    response = alice.post(url, {"action": "open"}, follow=True)
    [text] = shown(response)
    assert f"session #{other.pk}" in text
    assert Session.objects.get(pk=closed.pk).state == SessionState.CLOSED


def test_invite_enrolls_each_readable_number_once(
    alice, open_session, django_capture_on_commit_callbacks, broker
):
    url = reverse("admin:registrations_session_invite", args=[open_session.pk])
    assert alice.get(url).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post(
            url,
            {"phones": "(415) 555-0101\n+14155550102, not a number\n+14155550101\n\n"},
            follow=True,
        )
    assert shown(response) == [
        f"Invited 2 phone numbers to “{open_session}”: 2 new accounts being created; "
        "1 entry not a phone number (#3)."
    ]
    accounts = Account.objects.filter(session=open_session).order_by("phone")
    assert [(a.phone, a.source, a.status) for a in accounts] == [
        ("+14155550101", AccountSource.INVITE, AccountStatus.REQUESTED),
        ("+14155550102", AccountSource.INVITE, AccountStatus.REQUESTED),
    ]
    assert sorted(t["args"][0] for t in queued_tasks(broker)) == sorted(a.pk for a in accounts)
    [entry] = log_messages(open_session)
    assert "4155550101" not in entry and entry.startswith("Invited 2 phone numbers")


def test_invite_reports_repeats_and_a_full_session(alice, classroom):
    session = make_session(classroom, capacity=2)
    make_account(session, "+14155550101")
    url = reverse("admin:registrations_session_invite", args=[session.pk])
    response = alice.post(url, {"phones": "+14155550101\n+14155550102\n+14155550103"}, follow=True)
    assert shown(response) == [
        f"Invited 3 phone numbers to “{session}”: 1 new account being created; "
        "1 number already enrolled; 1 number turned away (the session is full)."
    ]
    assert Account.objects.filter(session=session).count() == 2


def test_invite_refuses_an_ended_session(alice, classroom):
    session = make_session(classroom, ended_at=timezone.now())
    url = reverse("admin:registrations_session_invite", args=[session.pk])
    response = alice.post(url, {"phones": "+14155550101"}, follow=True)
    assert shown(response) == [f"“{session}” has ended; nobody can be invited any more."]
    assert not Account.objects.exists()


def test_test_message_is_queued_and_logged_masked(
    alice, open_session, django_capture_on_commit_callbacks, broker
):
    url = reverse("admin:registrations_session_test_message", args=[open_session.pk])
    assert "Test message from classroom-sms" in alice.get(url).content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = alice.post(url, {"phone": "415 555 0166", "body": "Hello from lab"}, follow=True)
    assert shown(response)[0] == "Test message to +•••••••••66 queued (1 segment)."
    message = OutboundMessage.objects.get()
    assert (message.phone, message.kind, message.body, message.session) == (
        "+14155550166",
        "test",
        "Hello from lab",
        open_session,
    )
    assert [(t["func"], t["args"]) for t in queued_tasks(broker)] == [
        ("registrations.tasks.send_sms", (message.pk,))
    ]
    assert log_messages(open_session) == ["Test message to +•••••••••66 queued (1 segment)."]


def test_test_message_to_an_opted_out_phone_is_not_sent(alice, open_session):
    OptOut.objects.create(phone="+14155550166")
    url = reverse("admin:registrations_session_test_message", args=[open_session.pk])
    response = alice.post(url, {"phone": "+14155550166", "body": "Hello"}, follow=True)
    assert shown(response) == ["Not sent: +•••••••••66 has opted out (texted STOP)."]
    assert OutboundMessage.objects.get().status == "opted_out"


def test_test_message_rejects_an_invalid_number(alice, open_session):
    url = reverse("admin:registrations_session_test_message", args=[open_session.pk])
    response = alice.post(url, {"phone": "12", "body": "Hello"})
    assert response.context["form"].errors == {"phone": ["This is not a valid phone number."]}
    assert not OutboundMessage.objects.exists()


def test_changes_through_admin_forms_are_logged(alice, classroom):
    alice.post(reverse("admin:registrations_classroom_add"), {"name": "CS 102"})
    created = LogEntry.objects.get(action_flag=ADDITION)
    assert created.object_repr == "CS 102"
    assert created.user.username == "alice"
