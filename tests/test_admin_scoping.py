"""Instructor isolation: A sees and acts on nothing of B's, whatever URL or POST A forges."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import LogEntry
from django.urls import reverse

from registrations.models import Account, AccountStatus, Classroom, InboundMessage, Session
from tests.conftest import make_account, make_session

pytestmark = pytest.mark.django_db

BOB_PHONE = "+14155550177"


@pytest.fixture
def bobs(other_instructor, broker):
    """Bob's classroom, session and account, with names that must never reach Alice."""
    classroom = Classroom.objects.create(name="Bob Secret Class", owner=other_instructor)
    session = make_session(classroom, "bob secret phrase")
    account = make_account(
        session, BOB_PHONE, coder_username="cs-bobsecret", status=AccountStatus.ACTIVE
    )
    failed = make_account(session, "+14155550178", status=AccountStatus.FAILED)
    InboundMessage.objects.create(
        message_sid="SMbob",
        phone=BOB_PHONE,
        body="bob secret phrase",
        outcome="provisioned",
        session=session,
        account=account,
    )
    return {"classroom": classroom, "session": session, "account": account, "failed": failed}


@pytest.fixture
def alice(client, instructor):
    client.force_login(instructor)
    return client


def assert_no_bob_data(response) -> None:
    content = response.content.decode()
    for secret in ("Bob Secret Class", "bob secret phrase", "cs-bobsecret", BOB_PHONE):
        assert secret not in content


def assert_bob_untouched(bobs) -> None:
    session = Session.objects.get(pk=bobs["session"].pk)
    assert session.ended_at is None
    assert session.closes_at == bobs["session"].closes_at
    assert session.expires_at == bobs["session"].expires_at
    account = Account.objects.get(pk=bobs["account"].pk)
    assert account.status == AccountStatus.ACTIVE
    assert account.deletion_requested_at is None
    assert account.resend_count == 0
    assert Account.objects.get(pk=bobs["failed"].pk).status == AccountStatus.FAILED
    assert Account.objects.filter(session=session).count() == 2
    assert not LogEntry.objects.exists()


@pytest.mark.parametrize(
    "url_name", ["classroom", "session", "account", "inboundmessage", "outboundmessage"]
)
def test_changelists_show_only_own_rows(alice, bobs, open_session, url_name):
    make_account(open_session, coder_username="cs-alice1")
    response = alice.get(reverse(f"admin:registrations_{url_name}_changelist"))
    assert response.status_code == 200
    assert_no_bob_data(response)
    assert all(obj not in response.context["cl"].result_list for obj in bobs.values())


@pytest.mark.parametrize("key", ["classroom", "session", "account"])
@pytest.mark.parametrize("view", ["change", "delete", "history"])
def test_typed_urls_of_bobs_objects_reveal_nothing(alice, bobs, key, view):
    obj = bobs[key]
    response = alice.get(
        reverse(f"admin:registrations_{obj._meta.model_name}_{view}", args=[obj.pk])
    )
    # 302: "doesn't exist. Perhaps it was deleted?"; 403: Alice may not delete accounts at all.
    assert response.status_code in (302, 403)
    assert_no_bob_data(alice.get(response.url) if response.status_code == 302 else response)


def test_forged_change_and_delete_posts_change_nothing(alice, bobs):
    session = bobs["session"]
    alice.post(
        reverse("admin:registrations_session_change", args=[session.pk]),
        {"phrase": "hijacked", "classroom": bobs["classroom"].pk},
    )
    alice.post(reverse("admin:registrations_session_delete", args=[session.pk]), {"post": "yes"})
    alice.post(
        reverse("admin:registrations_classroom_delete", args=[bobs["classroom"].pk]),
        {"post": "yes"},
    )
    assert Session.objects.get(pk=session.pk).phrase == "bob secret phrase"
    assert Classroom.objects.filter(pk=bobs["classroom"].pk).exists()
    assert_bob_untouched(bobs)


@pytest.mark.parametrize(
    ("changelist", "action", "key"),
    [
        ("account", "revoke_accounts", "account"),
        ("account", "resend_credentials", "account"),
        ("account", "retry_provisioning", "failed"),
        ("account", "orphan_workspaces", "account"),
        ("session", "end_sessions", "session"),
        ("session", "delete_selected", "session"),
        ("classroom", "delete_selected", "classroom"),
    ],
)
def test_forged_action_posts_on_bobs_objects_do_nothing(alice, bobs, changelist, action, key):
    response = alice.post(
        reverse(f"admin:registrations_{changelist}_changelist"),
        {"action": action, "_selected_action": [bobs[key].pk], "confirm": "yes", "post": "yes"},
        follow=True,
    )
    assert response.status_code == 200
    assert_no_bob_data(response)
    assert_bob_untouched(bobs)


def test_orphan_action_is_offered_to_superusers_only(client, instructor, superuser):
    url = reverse("admin:registrations_account_changelist")
    client.force_login(instructor)
    choices = dict(client.get(url).context["action_form"].fields["action"].choices)
    assert "revoke_accounts" in choices
    assert "orphan_workspaces" not in choices
    client.force_login(superuser)
    choices = dict(client.get(url).context["action_form"].fields["action"].choices)
    assert "orphan_workspaces" in choices


@pytest.mark.parametrize(
    "url_name",
    [
        "session_page",
        "session_roster",
        "session_end",
        "session_invite",
        "session_test_message",
        "account_revoke",
    ],
)
def test_custom_pages_of_bobs_objects_are_not_found(alice, bobs, url_name):
    obj = bobs["account"] if url_name.startswith("account") else bobs["session"]
    response = alice.get(reverse(f"admin:registrations_{url_name}", args=[obj.pk]))
    assert response.status_code == 404
    assert_no_bob_data(response)


@pytest.mark.parametrize(
    ("url_name", "key", "data"),
    [
        ("session_enrollment", "session", {"action": "close"}),
        ("session_extend", "session", {"minutes": "60"}),
        ("session_end", "session", {"confirm": "yes"}),
        ("session_invite", "session", {"phones": "+14155550166"}),
        ("session_test_message", "session", {"phone": "+14155550166", "body": "hi"}),
        ("account_revoke", "account", {"confirm": "yes"}),
        ("account_resend", "account", {}),
        ("account_retry", "failed", {}),
    ],
)
def test_forged_posts_to_custom_views_are_refused(alice, bobs, url_name, key, data):
    response = alice.post(reverse(f"admin:registrations_{url_name}", args=[bobs[key].pk]), data)
    assert response.status_code == 404
    assert_bob_untouched(bobs)


def test_co_instructor_runs_sessions_but_cannot_edit_the_classroom(alice, instructor, bobs):
    bobs["classroom"].co_instructors.add(instructor)
    session = bobs["session"]
    assert (
        alice.get(reverse("admin:registrations_session_page", args=[session.pk])).status_code == 200
    )
    alice.post(reverse("admin:registrations_session_extend", args=[session.pk]), {"minutes": "15"})
    assert Session.objects.get(pk=session.pk).expires_at > session.expires_at
    classroom_url = reverse("admin:registrations_classroom_change", args=[bobs["classroom"].pk])
    response = alice.post(classroom_url, {"name": "renamed"})
    assert response.status_code == 403
    assert Classroom.objects.get(pk=bobs["classroom"].pk).name == "Bob Secret Class"


def test_session_form_offers_only_own_classrooms(alice, classroom, bobs):
    response = alice.get(reverse("admin:registrations_session_add"))
    choices = list(response.context["adminform"].form.fields["classroom"].queryset)
    assert choices == [classroom]


def test_session_cannot_be_created_in_bobs_classroom(alice, bobs):
    response = alice.post(
        reverse("admin:registrations_session_add"),
        {
            "classroom": bobs["classroom"].pk,
            "phrase": "sneaky lab",
            "opens_at_0": "2030-01-01",
            "opens_at_1": "10:00",
            "closes_at_0": "2030-01-01",
            "closes_at_1": "10:30",
            "expires_at_0": "2030-01-01",
            "expires_at_1": "13:00",
            "time_zone": "UTC",
            "warn_minutes": "10",
            "capacity": "10",
        },
    )
    assert response.status_code == 200
    assert "Select a valid choice" in str(response.context["adminform"].form.errors["classroom"])
    assert not Session.objects.filter(phrase="sneaky lab").exists()


def test_list_filters_offer_only_related_own_objects(alice, open_session, bobs):
    other = make_session(open_session.classroom, "python lab 4")
    make_account(open_session, coder_username="cs-alice1")
    make_account(other, coder_username="cs-alice2")
    response = alice.get(reverse("admin:registrations_account_changelist"))
    session_filter = next(
        spec for spec in response.context["cl"].filter_specs if spec.field_path == "session"
    )
    assert {pk for pk, _ in session_filter.lookup_choices} == {open_session.pk, other.pk}


def test_filtering_by_bobs_session_in_the_url_shows_nothing(alice, bobs):
    url = reverse("admin:registrations_account_changelist")
    response = alice.get(url, {"session__id__exact": bobs["session"].pk})
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == []
    assert_no_bob_data(response)


def test_search_never_finds_bobs_accounts(alice, bobs):
    url = reverse("admin:registrations_account_changelist")
    for term in ("cs-bobsecret", BOB_PHONE):
        response = alice.get(url, {"q": term})
        assert list(response.context["cl"].result_list) == []


def test_search_by_full_phone_number_finds_own_account(alice, open_session):
    mine = make_account(open_session, "+14155550155", coder_username="cs-alice1")
    make_account(open_session, "+14155550156", coder_username="cs-alice2")
    response = alice.get(reverse("admin:registrations_account_changelist"), {"q": "(415) 555-0155"})
    assert list(response.context["cl"].result_list) == [mine]


def test_dashboard_counts_only_own_sessions(alice, open_session, bobs):
    make_account(open_session, coder_username="cs-alice1", status=AccountStatus.ACTIVE)
    response = alice.get(reverse("admin:registrations_session_dashboard"))
    assert response.context["live_accounts"] == 1
    assert response.context["open_sessions"] == [open_session]
    assert response.context["failed_account_count"] == 0
    assert_no_bob_data(response)


def test_superuser_sees_everyone(client, superuser, open_session, bobs):
    client.force_login(superuser)
    response = client.get(reverse("admin:registrations_session_changelist"))
    assert set(response.context["cl"].result_list) == {open_session, bobs["session"]}


def test_phone_numbers_are_masked_everywhere(alice, open_session):
    account = make_account(open_session, "+14155550155", coder_username="cs-alice1")
    for url in (
        reverse("admin:registrations_account_changelist"),
        reverse("admin:registrations_account_change", args=[account.pk]),
        reverse("admin:registrations_session_page", args=[open_session.pk]),
    ):
        content = alice.get(url).content.decode()
        assert "+14155550155" not in content
        assert "+•••••••••55" in content


def test_only_superusers_may_reveal_a_phone_and_the_reveal_is_logged(
    client, instructor, superuser, open_session
):
    account = make_account(open_session, "+14155550155", coder_username="cs-alice1")
    url = reverse("admin:registrations_account_reveal_phone", args=[account.pk])
    client.force_login(instructor)
    assert client.post(url, {"confirm": "yes"}).status_code == 403
    client.force_login(superuser)
    assert "+14155550155" not in client.get(url).content.decode()
    response = client.post(url, {"confirm": "yes"})
    assert "+14155550155" in response.content.decode()
    entry = LogEntry.objects.get()
    assert entry.user == superuser
    assert entry.get_change_message() == "Revealed the phone number."
    assert "0155" not in entry.change_message + entry.object_repr


def test_co_instructor_cannot_move_the_owners_session_into_her_classroom(alice, bobs, classroom):
    from tests.test_session_validation import form_data

    bobs["classroom"].co_instructors.add(classroom.owner)
    session = bobs["session"]
    url = reverse("admin:registrations_session_change", args=[session.pk])
    form = alice.get(url).context["adminform"].form
    assert "classroom" not in form.fields
    data = form_data(classroom, "bob secret phrase", start=session.opens_at)
    response = alice.post(url, data)
    assert response.status_code == 302
    assert Session.objects.get(pk=session.pk).classroom == bobs["classroom"]
