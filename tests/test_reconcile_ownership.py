"""Reconcile deletes only what this deployment created: deployments sharing one Coder, real
people at the same domain and users from before the marker are never touched; a run that would
delete an unusual number of users is refused unless forced."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from registrations import credentials, maintenance, provisioning, tasks
from registrations.models import Account, AccountStatus
from tests.conftest import STUDENT_PHONE
from tests.student import log_in

pytestmark = pytest.mark.django_db

OTHER_PHONE = "+14155550166"


def add_ours(fake_coder, username: str) -> dict:
    """A Coder user created by the deployment currently configured (its marker in the email)."""
    return fake_coder.add_user(username, email=credentials.email_for(username))


def live(fake_coder) -> set[str]:
    return set(fake_coder.users_by_username())


def writes_about(fake_coder, user: dict) -> list[str]:
    """Requests that change or name the user (by id or by name)."""
    return [
        f"{r.method} {r.path}"
        for r in fake_coder.requests_log
        if user["id"] in r.path or r.path.endswith("/" + user["username"])
    ]


def test_two_deployments_on_one_coder_never_touch_each_others_users(
    open_session, coder_account, fake_coder, settings
):
    settings.DEPLOYMENT_ID = "prod"
    prod_orphan = add_ours(fake_coder, "cs-prod-orphan")
    # Production's live student: its row lives in production's database, not in staging's.
    prod_live = add_ours(fake_coder, "cs-prod-live")
    settings.DEPLOYMENT_ID = "stage"
    stage_live = coder_account(open_session, "cs-stage-live", workspaces=0)
    stage_orphan = add_ours(fake_coder, "cs-stage-orphan")
    fake_coder.clear_log()

    assert maintenance.reconcile()["deleted"] == 1  # staging's hourly run

    assert live(fake_coder) >= {"cs-prod-orphan", "cs-prod-live", "cs-stage-live"}
    assert "cs-stage-orphan" not in live(fake_coder)
    assert writes_about(fake_coder, prod_live) == writes_about(fake_coder, prod_orphan) == []

    # Now production's run, with production's database: one row, for its live student.
    Account.objects.all().delete()
    Account.objects.create(
        session=open_session, phone=OTHER_PHONE, status=AccountStatus.ACTIVE,
        coder_username="cs-prod-live", coder_user_id=prod_live["id"],
        coder_email=prod_live["email"], expires_at=open_session.expires_at,
    )  # fmt: skip
    settings.DEPLOYMENT_ID = "prod"
    fake_coder.clear_log()

    assert maintenance.reconcile()["deleted"] == 1

    assert live(fake_coder) >= {"cs-prod-live", "cs-stage-live"}
    assert "cs-prod-orphan" not in live(fake_coder)
    stage_user = fake_coder.users_by_username()["cs-stage-live"]
    assert stage_user["id"] == stage_live.coder_user_id and stage_user["status"] == "active"
    assert writes_about(fake_coder, stage_user) == writes_about(fake_coder, stage_orphan) == []


def test_real_people_at_our_domain_are_never_touched(db, fake_coder, settings):
    # An operator set the university's real domain.
    settings.CODER_EMAIL_DOMAIN = "example.edu"
    settings.DEPLOYMENT_ID = "prod"
    for username, email in [
        ("jsmith", "jsmith@example.edu"),
        ("cs-abc234", "cs-abc234@example.edu"),  # looks like one of ours, but has no marker
        ("cs-k7pw3m", "cs-k7pw3m.stage@example.edu"),  # another deployment's student
        ("prof", "prof.prod@example.edu"),  # our marker, not our username prefix
    ]:
        fake_coder.add_user(username, email=email)
    fake_coder.clear_log()

    report = maintenance.reconcile()

    assert (report["found"], report["deleted"]) == (0, 0)
    assert {r.method for r in fake_coder.requests_log} == {"GET"}
    assert len(live(fake_coder)) == 5  # the four and Coder's owner


def test_a_user_from_before_the_marker_is_deleted_only_when_our_row_recorded_it(
    open_session, coder_account, fake_coder, settings
):
    # Created before this deployment marked its emails: plain <username>@<domain>.
    settings.DEPLOYMENT_ID = "prod"
    domain = settings.CODER_EMAIL_DOMAIN
    live_user = fake_coder.add_user("cs-old-live", email=f"cs-old-live@{domain}")
    gone_user = fake_coder.add_user("cs-old-gone", email=f"cs-old-gone@{domain}")
    stranger = fake_coder.add_user("cs-old-other", email=f"cs-old-other@{domain}")
    for user, status, phone in [
        (live_user, AccountStatus.ACTIVE, STUDENT_PHONE),
        (gone_user, AccountStatus.DELETED, None),
    ]:
        Account.objects.create(
            session=open_session, phone=phone, status=status, coder_username=user["username"],
            coder_user_id=user["id"], coder_email=user["email"],
            expires_at=open_session.expires_at,
        )  # fmt: skip
    fake_coder.clear_log()

    report = maintenance.reconcile()

    assert (report["found"], report["deleted"]) == (2, 1)
    assert "cs-old-gone" not in live(fake_coder)
    assert {"cs-old-live", "cs-old-other"} <= live(fake_coder)
    assert writes_about(fake_coder, live_user) == writes_about(fake_coder, stranger) == []


def test_a_username_held_by_another_deployment_is_never_adopted(
    open_session, fake_coder, fake_twilio, settings
):
    # Provisioning meets a 409 for a name another deployment's student holds: adopting it would
    # reset that student's password.
    settings.DEPLOYMENT_ID = "stage"
    add_ours(fake_coder, "cs-abc234")
    settings.DEPLOYMENT_ID = "prod"
    account = Account.objects.create(
        session=open_session, phone=STUDENT_PHONE, coder_username="cs-abc234",
        expires_at=open_session.expires_at,
    )  # fmt: skip

    provisioning.provision(account.pk)

    account.refresh_from_db()
    assert account.status == AccountStatus.ACTIVE and account.coder_username != "cs-abc234"
    assert account.coder_email == credentials.email_for(account.coder_username)
    stage_email = "cs-abc234.stage@" + settings.CODER_EMAIL_DOMAIN
    assert log_in(fake_coder.url, stage_email, "Seeded-Password-1234").status_code == 201


@pytest.fixture
def mass_orphans(db, fake_coder, settings):
    """21 users of ours and no row at all: what a wrong database or DEPLOYMENT_ID looks like."""
    settings.DEPLOYMENT_ID = "prod"
    users = [add_ours(fake_coder, f"cs-student{n}") for n in range(21)]
    fake_coder.clear_log()
    return users


def test_a_run_deleting_most_of_our_users_is_refused_and_names_them(mass_orphans, fake_coder):
    with pytest.raises(maintenance.ReconcileRefused) as refused:
        maintenance.reconcile()

    message = str(refused.value)
    assert "Refusing to delete 21 of the 21 Coder users of deployment prod" in message
    assert "--force" in message
    assert all(user["username"] in message for user in mass_orphans)
    assert "@" not in message  # usernames, never emails
    assert {r.method for r in fake_coder.requests_log} == {"GET"}


def test_the_hourly_task_never_forces(mass_orphans, fake_coder):
    with pytest.raises(maintenance.ReconcileRefused):
        tasks.reconcile()

    assert len(live(fake_coder)) == 22


def test_the_command_refuses_with_the_list_and_force_proceeds(mass_orphans, fake_coder):
    with pytest.raises(CommandError, match="Would have deleted: cs-student"):
        call_command("reconcile", stdout=StringIO(), stderr=StringIO())
    assert len(live(fake_coder)) == 22

    out = StringIO()
    call_command("reconcile", "--force", stdout=out, stderr=StringIO())

    assert "Deleted: 21\n" in out.getvalue()
    assert not [name for name in live(fake_coder) if name.startswith("cs-student")]


def test_many_orphans_among_many_live_users_are_not_unusual(mass_orphans, open_session, fake_coder):
    # 21 orphans of 51 users (41 %): over the count, under the share.
    for n in range(30):
        user = add_ours(fake_coder, f"cs-live{n}")
        Account.objects.create(
            session=open_session, phone=f"+1415555{n:04d}", status=AccountStatus.ACTIVE,
            coder_username=user["username"], coder_user_id=user["id"],
            coder_email=user["email"], expires_at=open_session.expires_at,
        )  # fmt: skip

    assert maintenance.reconcile()["deleted"] == 21


def test_dry_run_says_a_real_run_would_be_refused(mass_orphans, fake_coder):
    out = StringIO()

    call_command("reconcile", "--dry-run", stdout=out)

    assert "Orphans (no live account) that would be deleted: 21" in out.getvalue()
    assert "refuse to delete this many without --force" in out.getvalue()
    assert {r.method for r in fake_coder.requests_log} == {"GET"}


def test_a_malformed_deployment_id_stops_the_app_at_start():
    from tests.test_settings import load_settings

    # It goes into every login email: a dot or "@" there would break the marker.
    assert "DEPLOYMENT_ID must be" in load_settings(SECRET_KEY="x", DEPLOYMENT_ID="prod@x")
    assert "engine" in load_settings(SECRET_KEY="x", DEPLOYMENT_ID="Prod2")
