"""A generated walk of every admin URL that takes an object, opened by an instructor for
another instructor's objects: always refused (302 to the index, 403, 404 or 405), never data,
and nothing changes, whether by GET or by a forged POST."""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.utils import timezone
from django_q.models import OrmQ, Schedule, Task

from registrations.models import (
    Account,
    AccountStatus,
    Classroom,
    Heartbeat,
    InboundMessage,
    OptOut,
    OutboundMessage,
    Session,
    UsageStat,
)
from tests.conftest import make_account, make_instructor, make_session

pytestmark = pytest.mark.django_db

SECRETS = ("Bob Secret Class", "bob secret phrase", "cs-bobsecret", "+14155550177", "bob body")
REFUSED = (302, 403, 404, 405)
FORGED_POST = {
    "confirm": "yes",
    "post": "yes",
    "action": "close",
    "minutes": "60",
    "phones": "+14155550166",
    "phone": "+14155550166",
    "body": "forged",
    "name": "forged",
    "phrase": "forged phrase",
    "kind": "credentials",
    "text": "{email} {password}",
}


def object_routes() -> list[tuple[str, str]]:
    """Every (model label, route) of the admin that addresses one object."""
    routes = []
    for model, model_admin in admin.site._registry.items():
        for pattern in model_admin.get_urls():
            route = str(pattern.pattern)
            if "<path:object_id>" in route:
                routes.append((model._meta.label, route))
    return sorted(set(routes))


ROUTES = object_routes()


def bobs_world() -> dict[str, object]:
    """An object of every registered model that the instructor Alice must not reach."""
    bob = make_instructor("bob")
    classroom = Classroom.objects.create(name="Bob Secret Class", owner=bob)
    session = make_session(classroom, "bob secret phrase")
    account = make_account(
        session, "+14155550177", coder_username="cs-bobsecret", status=AccountStatus.ACTIVE
    )
    now = timezone.now()
    Task.objects.create(
        id="t1", name="t1", func="math.floor", started=now, stopped=now, success=True
    )
    Task.objects.create(
        id="t2", name="t2", func="math.floor", started=now, stopped=now, success=False
    )
    return {
        "registrations.Classroom": classroom,
        "registrations.Session": session,
        "registrations.Account": account,
        "registrations.InboundMessage": InboundMessage.objects.create(
            message_sid="SMbob",
            phone="+14155550177",
            body="bob body",
            outcome="provisioned",
            session=session,
            account=account,
        ),
        "registrations.OutboundMessage": OutboundMessage.objects.create(
            phone="+14155550177", kind="test", body="bob body", session=session, account=account
        ),
        "registrations.OptOut": OptOut.objects.create(phone="+14155550177"),
        "registrations.UsageStat": UsageStat.objects.create(
            day=now.date(), session=session, metric="enrolled"
        ),
        "registrations.Heartbeat": Heartbeat.objects.create(name="worker", beat_at=now),
        "auth.User": bob,
        "auth.Group": Group.objects.get(name="Instructors"),
        "django_q.Schedule": Schedule.objects.create(name="bob", func="math.floor"),
        "django_q.Success": Task.objects.get(id="t1"),
        "django_q.Failure": Task.objects.get(id="t2"),
        "django_q.OrmQ": OrmQ.objects.create(key="default", payload="x", lock=now),
    }


def snapshot() -> dict[str, object]:
    """Everything a forged request could change."""
    return {
        "sessions": list(Session.objects.values()),
        "classrooms": list(Classroom.objects.values()),
        "accounts": list(Account.objects.values()),
        "outbound": OutboundMessage.objects.count(),
        "optouts": OptOut.objects.count(),
        "users": list(User.objects.values("pk", "username", "is_staff", "is_superuser")),
        "schedules": Schedule.objects.count(),
        "log": LogEntry.objects.count(),
    }


def test_every_registered_model_is_walked():
    walked = {label for label, _ in ROUTES}
    assert walked == {model._meta.label for model in admin.site._registry}


@pytest.fixture
def walk(client, instructor, broker):
    world = bobs_world()
    client.force_login(instructor)
    return client, world


@pytest.mark.parametrize(("label", "route"), ROUTES, ids=[f"{m}:{r}" for m, r in ROUTES])
def test_get_of_another_instructors_object_is_refused(walk, label, route):
    client, world = walk
    response = client.get(url_for(label, route, world))
    assert response.status_code in REFUSED
    assert_no_secrets(client, response)


@pytest.mark.parametrize(("label", "route"), ROUTES, ids=[f"{m}:{r}" for m, r in ROUTES])
def test_forged_post_to_another_instructors_object_changes_nothing(walk, label, route):
    client, world = walk
    before = snapshot()
    response = client.post(url_for(label, route, world), FORGED_POST)
    assert response.status_code in REFUSED
    assert_no_secrets(client, response)
    assert snapshot() == before


@pytest.mark.parametrize("label", sorted({label for label, _ in ROUTES}))
def test_view_on_site_shortcut_for_another_instructors_object_is_refused(walk, label):
    client, world = walk
    obj = world[label]
    content_type = ContentType.objects.get_for_model(obj)
    response = client.get(f"/admin/r/{content_type.pk}/{obj.pk}/")
    assert response.status_code in REFUSED
    assert_no_secrets(client, response)


def url_for(label: str, route: str, world: dict[str, object]) -> str:
    obj = world[label]
    path = re.sub(r"<path:object_id>", str(obj.pk), route)
    return f"/admin/{obj._meta.app_label}/{obj._meta.model_name}/{path}"


def assert_no_secrets(client, response) -> None:
    pages = [response]
    if response.status_code == 302:
        # Follow one redirect: it must land on a page that names none of Bob's things either.
        pages.append(client.get(response.url))
    for page in pages:
        content = page.content.decode(errors="replace")
        for secret in SECRETS:
            assert secret not in content


def test_control_the_instructor_reaches_her_own_objects(walk, open_session):
    client, _ = walk
    account = make_account(open_session, coder_username="cs-alice1")
    assert client.get(f"/admin/registrations/session/{open_session.pk}/page/").status_code == 200
    assert client.get(f"/admin/registrations/account/{account.pk}/change/").status_code == 200
