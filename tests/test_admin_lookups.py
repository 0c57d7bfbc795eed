"""URL filters: a changelist filters only through its own filters, never a guessed lookup."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.urls import reverse

from registrations.admin.scoping import FilterOnlyAdmin
from registrations.models import InboundMessage, OptOut, OutboundKind, OutboundMessage
from tests.conftest import STUDENT_PHONE, make_account

pytestmark = pytest.mark.django_db

# Each would narrow a list to the rows whose hidden values match, a guess at a time.
HOSTILE_LOOKUPS = (
    "phone__startswith=%2B1415",
    "phone__regex=^.1415",
    "phone__contains=555",
    "phone__iexact=" + STUDENT_PHONE.replace("+", "%2B"),
    "phone=" + STUDENT_PHONE.replace("+", "%2B"),
    "account__phone__startswith=%2B1",
    "session__classroom__owner__password__startswith=pbkdf2",
    "classroom__owner__password__startswith=pbkdf2",
    "owner__password__startswith=pbkdf2",
    "password__startswith=pbkdf2",
    "coder_email__startswith=a",
    "coder_user_id__startswith=a",
    "body__contains=python",
    "session__accounts__phone__startswith=%2B1",
    "accounts__phone__startswith=%2B1",
    "status__regex=.",
)

ADMINS = sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)


@pytest.fixture
def rows(open_session):
    account = make_account(open_session, coder_username="cs-alice1")
    InboundMessage.objects.create(
        message_sid="SM1",
        phone=STUDENT_PHONE,
        body="python lab 3",
        outcome="provisioned",
        session=open_session,
        account=account,
    )
    OutboundMessage.objects.create(
        phone=STUDENT_PHONE, kind=OutboundKind.TEST, body="hi", session=open_session
    )
    OptOut.objects.create(phone=STUDENT_PHONE)


def changelist(model) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def refused(response) -> bool:
    """400 (our admins), 403 (no access at all) or Django's "?e=1" for a field that isn't."""
    if response.status_code == 302:
        return "e=1" in response["Location"]
    return response.status_code in (400, 403)


@pytest.mark.parametrize("who", ["instructor", "superuser"])
@pytest.mark.parametrize(("model", "model_admin"), ADMINS, ids=[m._meta.label for m, _ in ADMINS])
def test_no_admin_filters_by_a_hostile_lookup(client, rows, request, who, model, model_admin):
    client.force_login(request.getfixturevalue(who))
    for lookup in HOSTILE_LOOKUPS:
        response = client.get(f"{changelist(model)}?{lookup}")
        assert refused(response), (lookup, response.status_code)


def test_every_registrations_admin_filters_only_through_its_own_filters():
    ours = [a for m, a in ADMINS if m._meta.app_label == "registrations"]
    assert ours and all(isinstance(a, FilterOnlyAdmin) for a in ours)


def test_phone_prefix_on_the_message_log_answers_400(client, rows, instructor):
    client.force_login(instructor)
    response = client.get(changelist(OutboundMessage) + "?phone__startswith=%2B1415")
    assert response.status_code == 400


@pytest.mark.parametrize("who", ["instructor", "superuser"])
@pytest.mark.parametrize(
    ("url_name", "query"),
    [
        ("account", "status__exact=failed"),
        ("account", "source__exact=invite"),
        ("account", "session__id__exact=1"),
        ("session", "state=open"),
        ("session", "classroom__id__exact=1"),
        ("session", "opens_at__year=2030"),
        ("outboundmessage", "kind__exact=test&status__exact=pending"),
        ("outboundmessage", "created_at__year=2030&created_at__month=1"),
        ("inboundmessage", "outcome__exact=provisioned&session__isnull=True"),
        ("classroom", "owner__id__exact=1"),
        ("usagestat", "metric__exact=x&day__year=2030"),
    ],
)
def test_the_admins_own_filters_still_work(client, rows, request, who, url_name, query):
    client.force_login(request.getfixturevalue(who))
    response = client.get(reverse(f"admin:registrations_{url_name}_changelist") + "?" + query)
    assert response.status_code in (200, 403)
    if who == "superuser":
        assert response.status_code == 200
