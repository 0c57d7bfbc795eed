"""A first-time instructor is guided from nothing to a session; small things of the admin."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.urls import reverse

from registrations.models import Classroom
from tests.conftest import make_instructor

pytestmark = pytest.mark.django_db

SESSION_ADD = "/admin/registrations/session/add/"
CLASSROOM_ADD = "/admin/registrations/classroom/add/"


@pytest.fixture
def alice(client, instructor):
    client.force_login(instructor)
    return client


def test_without_a_classroom_the_index_offers_to_create_it_first(alice):
    content = alice.get("/admin/").content.decode()
    assert 'id="first-steps"' in content
    assert f'href="{CLASSROOM_ADD}?then=session" id="create-classroom"' in content


def test_create_a_session_leads_through_the_classroom_and_back(alice, instructor):
    response = alice.get(SESSION_ADD, follow=True)
    assert response.redirect_chain == [(f"{CLASSROOM_ADD}?then=session", 302)]
    assert "First create your classroom" in [str(m) for m in response.context["messages"]][0]

    created = alice.post(f"{CLASSROOM_ADD}?then=session", {"name": "CS 101"}, follow=True)

    classroom = Classroom.objects.get(owner=instructor)
    assert created.redirect_chain == [(f"{SESSION_ADD}?classroom={classroom.pk}", 302)]
    assert created.context["adminform"].form.initial["classroom"] == str(classroom.pk)
    messages = [str(m) for m in created.context["messages"]]
    assert "Created the classroom “CS 101”. Now create its first session." in messages


def test_with_a_classroom_the_index_offers_a_session(alice, classroom):
    content = alice.get("/admin/").content.decode()
    assert 'id="first-steps"' not in content
    assert f'<a href="{SESSION_ADD}">Create a session</a>' in content
    assert alice.get(SESSION_ADD).status_code == 200


def test_co_instructors_are_other_instructors_only(alice, instructor, classroom):
    bob = make_instructor("bob")
    User.objects.create_superuser("root", "root@example.test", "pw")
    User.objects.create_user("staffer", "s@example.test", "pw", is_staff=True)  # no group
    change = reverse("admin:registrations_classroom_change", args=[classroom.pk])
    for url in (CLASSROOM_ADD, change):
        field = alice.get(url).context["adminform"].form.fields["co_instructors"]
        assert [user.username for user in field.queryset] == [bob.username]


def test_a_superuser_may_pick_any_instructor_but_the_owner(client, superuser, classroom):
    make_instructor("bob")
    client.force_login(superuser)
    url = reverse("admin:registrations_classroom_change", args=[classroom.pk])
    field = client.get(url).context["adminform"].form.fields["co_instructors"]
    assert [user.username for user in field.queryset] == ["bob"]


def test_the_header_names_the_product_and_view_site_opens_the_dashboard(alice, client):
    content = alice.get("/admin/").content.decode()
    dashboard = reverse("admin:registrations_session_dashboard")
    assert "Django administration" not in content
    assert '<a href="/admin/">Classroom SMS</a>' in content
    assert f'<a href="{dashboard}">View site</a>' in content
    assert alice.get("/").url == dashboard
    assert alice.get(dashboard).status_code == 200
