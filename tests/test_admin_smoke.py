"""Every admin changelist, add and change page loads, as a superuser and as an instructor."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone

from registrations.models import (
    Heartbeat,
    InboundMessage,
    OptOut,
    OutboundMessage,
    UsageStat,
)
from tests.conftest import make_account, make_session

pytestmark = pytest.mark.django_db

MODELS = sorted(admin.site._registry, key=lambda model: model._meta.label)
OURS = {"registrations"}


@pytest.fixture
def world(open_session, superuser):
    """One row of every model registered in the admin, the instructor's where it matters."""
    from django.contrib.auth.models import Group
    from django_q.models import OrmQ, Schedule, Task

    account = make_account(open_session, coder_username="cs-abcdef", status="active")
    InboundMessage.objects.create(
        message_sid="SM1",
        phone=account.phone,
        body="python lab 3",
        outcome="provisioned",
        session=open_session,
        account=account,
    )
    OutboundMessage.objects.create(
        phone=account.phone,
        kind="credentials",
        body="Password: ••••",
        account=account,
        session=open_session,
    )
    OptOut.objects.create(phone="+14155550199")
    UsageStat.objects.create(day=timezone.now().date(), session=open_session, metric="enrolled")
    Heartbeat.objects.create(name="worker", beat_at=timezone.now())
    now = timezone.now()
    for success in (True, False):
        Task.objects.create(
            id=f"task{success}",
            name=f"task-{success}",
            func="math.floor",
            started=now,
            stopped=now,
            success=success,
        )
    OrmQ.objects.create(key="default", payload="x", lock=now)
    Schedule.objects.get_or_create(name="smoke", defaults={"func": "math.floor"})
    Group.objects.get_or_create(name="Instructors")
    return open_session


def admin_url(model, view: str, *args) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def object_of(model):
    return model._default_manager.order_by("pk").first()


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m._meta.label)
def test_superuser_loads_every_page(client, superuser, world, model):
    client.force_login(superuser)
    assert client.get(admin_url(model, "changelist")).status_code == 200
    if admin.site._registry[model].has_add_permission(_request(superuser)):
        assert client.get(admin_url(model, "add")).status_code == 200
    obj = object_of(model)
    assert obj is not None, f"no {model._meta.label} row to open"
    assert client.get(admin_url(model, "change", obj.pk)).status_code == 200


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m._meta.label)
def test_instructor_loads_own_pages_and_is_refused_the_rest(client, instructor, world, model):
    client.force_login(instructor)
    changelist = client.get(admin_url(model, "changelist"))
    change = client.get(admin_url(model, "change", object_of(model).pk))
    if model._meta.app_label in OURS and instructor.has_perm(
        f"{model._meta.app_label}.view_{model._meta.model_name}"
    ):
        assert changelist.status_code == 200
        assert change.status_code == 200
    else:
        assert changelist.status_code == 403
        assert change.status_code in (302, 403)


def test_instructor_loads_add_pages_they_may_use(client, instructor, world):
    client.force_login(instructor)
    assert client.get(reverse("admin:registrations_classroom_add")).status_code == 200
    assert client.get(reverse("admin:registrations_session_add")).status_code == 200
    assert client.get(reverse("admin:registrations_account_add")).status_code == 403


@pytest.mark.parametrize("user", ["superuser", "instructor"])
def test_session_page_dashboard_and_index_load(client, world, user, request):
    client.force_login(request.getfixturevalue(user))
    for url in (
        reverse("admin:index"),
        reverse("admin:registrations_session_dashboard"),
        reverse("admin:registrations_session_page", args=[world.pk]),
        reverse("admin:registrations_session_roster", args=[world.pk]),
        reverse("admin:registrations_session_end", args=[world.pk]),
        reverse("admin:registrations_session_invite", args=[world.pk]),
        reverse("admin:registrations_session_test_message", args=[world.pk]),
    ):
        assert client.get(url).status_code == 200, url


def _request(user):
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = user
    return request


HOSTILE = "<script>alert(1)</script>"


def test_user_supplied_text_is_escaped_on_every_page(client, instructor, classroom):
    classroom.name = f"CS {HOSTILE}"
    classroom.save()
    session = make_session(classroom, f"lab {HOSTILE}")
    account = make_account(
        session, coder_username="cs-abcdef", status="failed", last_error=f"Coder said {HOSTILE}"
    )
    InboundMessage.objects.create(
        message_sid="SMx",
        phone=account.phone,
        body=HOSTILE,
        outcome="provisioned",
        session=session,
        account=account,
    )
    client.force_login(instructor)
    for url in (
        reverse("admin:index"),
        reverse("admin:registrations_session_page", args=[session.pk]),
        reverse("admin:registrations_session_end", args=[session.pk]),
        reverse("admin:registrations_session_dashboard"),
        reverse("admin:registrations_session_changelist"),
        reverse("admin:registrations_account_changelist"),
        reverse("admin:registrations_account_revoke", args=[account.pk]),
        reverse("admin:registrations_inboundmessage_changelist"),
    ):
        content = client.get(url).content.decode()
        assert HOSTILE not in content, url
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content, url


def test_dashboard_charts_enrollments_over_time_per_session(client, instructor, classroom):
    opened = timezone.now() - timedelta(minutes=20)
    busy = make_session(classroom, "python lab 1", opens_at=opened)
    quiet = make_session(
        classroom,
        "python lab 2",
        opens_at=opened - timedelta(days=1),
        closes_at=opened - timedelta(days=1) + timedelta(minutes=30),
    )
    make_session(
        classroom,
        "nobody came",
        opens_at=opened - timedelta(days=2),
        closes_at=opened - timedelta(days=2) + timedelta(minutes=30),
    )
    for minute, phone in ((1, "+14155550101"), (4, "+14155550102"), (9, "+14155550103")):
        account = make_account(busy, phone)
        account.created_at = opened + timedelta(minutes=minute)
        account.save()
    late = make_account(quiet, "+14155550104")
    late.created_at = quiet.opens_at + timedelta(minutes=2)
    late.save()
    client.force_login(instructor)
    response = client.get(reverse("admin:registrations_session_dashboard"))
    chart = response.context["chart"]
    assert [(s.session, s.total) for s in chart.series] == [(busy, 3), (quiet, 1)]
    assert [t.label for t in chart.x_ticks] == [
        "0 min",
        "2 min",
        "4 min",
        "6 min",
        "8 min",
        "10 min",
    ]
    content = response.content.decode()
    assert content.count("<polyline") == 2 and "nobody came" not in content
