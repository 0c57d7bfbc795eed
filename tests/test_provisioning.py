"""Provisioning: the Coder user is created (or adopted) once, and working credentials are texted."""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_q.models import Task

from registrations import coder, credentials, provisioning
from registrations.models import Account, AccountStatus, OutboundKind, OutboundMessage
from tests.conftest import STUDENT_PHONE, make_session
from tests.fakes.coder import DEFAULT_ORG_ID
from tests.student import credentials_from_sms, log_in, logs_in

DOMAIN = "lab.invalid"


@pytest.fixture
def services(fake_coder, fake_twilio, settings):
    settings.CODER_EMAIL_DOMAIN = DOMAIN
    settings.CODER_USERNAME_PREFIX = "cs"
    return fake_coder, fake_twilio


@pytest.fixture
def account(open_session, services) -> Account:
    return Account.objects.create(
        session=open_session, phone=STUDENT_PHONE, expires_at=open_session.expires_at
    )


def sms(fake_twilio, index: int = -1) -> str:
    return fake_twilio.messages_to(STUDENT_PHONE)[index]["body"]


def texted(fake_twilio, index: int = -1) -> tuple[str, str]:
    """The (email, password) the student copies from the SMS."""
    return credentials_from_sms(sms(fake_twilio, index))


def our_users(fake_coder) -> list[str]:
    return [u["username"] for u in fake_coder.live_users(DOMAIN)]


def user_posts(fake_coder) -> list:
    return fake_coder.requests("POST", "/api/v2/users")


def test_texting_the_phrase_ends_with_working_credentials_by_sms(
    open_session, send_sms, services, sync_tasks, django_capture_on_commit_callbacks
):
    fake_coder, fake_twilio = services
    with django_capture_on_commit_callbacks(execute=True):
        assert send_sms("python lab 3").status_code == 200
    account = Account.objects.get()
    assert account.status == AccountStatus.ACTIVE
    assert account.credentials_sent_at is not None and account.coder_user_id
    [message] = fake_twilio.messages
    assert message["to"] == STUDENT_PHONE
    email, _ = texted(fake_twilio)
    assert email == credentials.email_for(account.coder_username) == account.coder_email
    assert logs_in(fake_coder.url, message["body"])
    assert our_users(fake_coder) == [account.coder_username]


def test_coder_receives_exactly_this_create_user_body(account, services):
    fake_coder, fake_twilio = services
    provisioning.provision(account.pk)
    account.refresh_from_db()
    _, password = texted(fake_twilio)
    [create] = [r for r in user_posts(fake_coder) if r.path == "/api/v2/users"]
    assert create.body == {
        "username": account.coder_username,
        "email": credentials.email_for(account.coder_username),
        "password": password,
        "login_type": "password",
        "name": "",
        "user_status": "active",
        "organization_ids": [DEFAULT_ORG_ID],
    }
    assert fake_coder.users_by_username()[account.coder_username]["status"] == "active"


def test_credentials_sms_is_stored_masked_and_the_password_nowhere(account, services, caplog):
    fake_coder, fake_twilio = services
    caplog.set_level(logging.DEBUG)
    provisioning.provision(account.pk)
    _, password = texted(fake_twilio)
    stored = OutboundMessage.objects.get(kind=OutboundKind.CREDENTIALS)
    assert "••••••" in stored.body and password not in stored.body
    account.refresh_from_db()
    assert password not in str(Account.objects.filter(pk=account.pk).values().get())
    assert password not in caplog.text
    assert STUDENT_PHONE not in caplog.text


def test_task_arguments_and_results_hold_no_password(open_session, services, run_tasks, send_sms):
    _, fake_twilio = services
    run_tasks(send_sms, "python lab 3")
    _, password = texted(fake_twilio)
    for task in Task.objects.all():
        assert password not in repr(task.args) + repr(task.kwargs) + repr(task.result)


def test_a_duplicate_task_creates_one_user_and_sends_one_sms(account, services):
    fake_coder, fake_twilio = services
    provisioning.provision(account.pk)
    provisioning.provision(account.pk)
    assert len(user_posts(fake_coder)) == 1
    assert len(fake_twilio.messages) == 1


def test_existing_user_with_our_marker_is_adopted_on_409(account, services):
    fake_coder, fake_twilio = services
    email = credentials.email_for("cs-abc234")
    fake_coder.add_user("cs-abc234", "Old-Password-Nobody-Knows-42", email=email)
    Account.objects.filter(pk=account.pk).update(coder_username="cs-abc234")
    provisioning.provision(account.pk)
    account.refresh_from_db()
    assert (account.status, account.coder_username) == (AccountStatus.ACTIVE, "cs-abc234")
    assert our_users(fake_coder) == ["cs-abc234"]
    calls = [(r.method, r.path) for r in fake_coder.requests() if r.path != "/api/v2/organizations"]
    assert calls == [
        ("POST", "/api/v2/users"),
        ("GET", "/api/v2/users/cs-abc234"),
        ("PUT", f"/api/v2/users/{account.coder_user_id}/password"),
    ]
    assert texted(fake_twilio)[0] == credentials.email_for("cs-abc234")
    assert logs_in(fake_coder.url, sms(fake_twilio))


def test_taken_username_without_our_marker_is_never_touched(account, services):
    fake_coder, fake_twilio = services
    fake_coder.add_user("cs-abc234", "Their-Own-Password-42", email="teacher@example.edu")
    Account.objects.filter(pk=account.pk).update(coder_username="cs-abc234")
    provisioning.provision(account.pk)
    account.refresh_from_db()
    assert account.status == AccountStatus.ACTIVE and account.coder_username != "cs-abc234"
    assert log_in(fake_coder.url, "teacher@example.edu", "Their-Own-Password-42").status_code == 201
    assert not fake_coder.requests("PUT", "/api/v2/users/")
    assert logs_in(fake_coder.url, sms(fake_twilio))


def test_a_5xx_blip_is_retried_inline(account, services):
    fake_coder, fake_twilio = services
    fake_coder.fail_next(1, 500, method="POST", path_prefix="/api/v2/users")
    provisioning.provision(account.pk)
    account.refresh_from_db()
    assert (account.status, account.attempts) == (AccountStatus.ACTIVE, 1)
    assert len(user_posts(fake_coder)) == 2
    assert logs_in(fake_coder.url, sms(fake_twilio))


def test_lasting_5xx_goes_back_to_requested_and_the_sweep_finishes_it(account, services, run_tasks):
    fake_coder, fake_twilio = services
    fake_coder.fail_next(2, 503, method="POST", path_prefix="/api/v2/users")
    provisioning.provision(account.pk)
    account.refresh_from_db()
    assert (account.status, account.attempts) == (AccountStatus.REQUESTED, 1)
    assert "503" in account.last_error
    assert account.next_attempt_at > timezone.now() + timedelta(seconds=25)
    assert fake_twilio.messages == []
    assert provisioning.redrive_stale(timezone.now()) == 0  # backoff not over yet

    assert run_tasks(provisioning.redrive_stale, account.next_attempt_at) == 1
    account.refresh_from_db()
    assert (account.status, account.attempts, account.last_error) == ("active", 2, "")
    assert logs_in(fake_coder.url, sms(fake_twilio))


def test_timed_out_create_is_adopted_on_retry_without_a_second_user(
    account, services, run_tasks, settings
):
    fake_coder, fake_twilio = services
    settings.CODER_TIMEOUT = 0.3
    coder.get_client().resolve_organization_id(None)  # cached before Coder turns slow
    fake_coder.latency = 0.6
    provisioning.provision(account.pk)
    account.refresh_from_db()
    assert account.status == AccountStatus.REQUESTED and "timed out" in account.last_error
    assert account.coder_username  # chosen and saved before Coder was called

    fake_coder.latency = 0
    deadline = time.monotonic() + 5
    while not our_users(fake_coder) and time.monotonic() < deadline:
        time.sleep(0.05)  # the slow server finishes the first create after we gave up
    run_tasks(provisioning.redrive_stale, account.next_attempt_at)
    account.refresh_from_db()
    assert account.status == AccountStatus.ACTIVE
    assert our_users(fake_coder) == [account.coder_username]
    assert logs_in(fake_coder.url, sms(fake_twilio))


def test_a_create_that_happened_behind_a_gateway_error_is_adopted_at_once(account, services):
    fake_coder, fake_twilio = services
    # Coder creates the user, but the answer that comes back is a 502: the inline retry meets
    # 409 for our own user and adopts it, with a password Coder does not already have.
    fake_coder.fail_next(1, 502, method="POST", path_prefix="/api/v2/users", after=True)

    provisioning.provision(account.pk)

    account.refresh_from_db()
    assert (account.status, account.attempts, account.last_error) == ("active", 1, "")
    assert our_users(fake_coder) == [account.coder_username]
    email, password = texted(fake_twilio)
    assert email == account.coder_email and logs_in(fake_coder.url, sms(fake_twilio))
    (adoption,) = fake_coder.requests("PUT", "/api/v2/users/")
    assert adoption.body == {"password": password}


def test_failure_after_the_create_is_recovered_without_a_second_user(
    open_session, services, run_tasks
):
    fake_coder, fake_twilio = services
    fake_coder.add_template("python-lab")
    session = make_session(open_session.classroom, "python lab 4", coder_template="python-lab")
    account = Account.objects.create(
        session=session, phone=STUDENT_PHONE, expires_at=session.expires_at
    )
    # The user is created, then the workspace step fails at Coder (twice: inline and retry).
    fake_coder.fail_next(2, 502, method="POST", path_prefix="/api/v2/users/")
    provisioning.provision(account.pk)
    account.refresh_from_db()
    assert account.status == AccountStatus.REQUESTED
    assert our_users(fake_coder) == [account.coder_username]
    assert fake_twilio.messages == []

    run_tasks(provisioning.redrive_stale, account.next_attempt_at)
    account.refresh_from_db()
    assert account.status == AccountStatus.ACTIVE
    assert our_users(fake_coder) == [account.coder_username]
    assert [w["name"] for w in fake_coder.workspaces_of(account.coder_username)] == ["python-lab"]
    assert logs_in(fake_coder.url, sms(fake_twilio))
    # Taken over by its id: no second create for Coder to refuse with 409.
    assert [a.status for a in fake_coder.answers if a.path == "/api/v2/users"] == [201]


def test_worker_killed_mid_provisioning_is_recovered_by_the_sweep(account, services, run_tasks):
    fake_coder, fake_twilio = services
    # What a kill right after Coder's 201 leaves behind: a user, and a row stuck in provisioning.
    email = credentials.email_for("cs-k7pw3m")
    fake_coder.add_user("cs-k7pw3m", "Lost-With-The-Worker-42", email=email)
    Account.objects.filter(pk=account.pk).update(
        status=AccountStatus.PROVISIONING,
        coder_username="cs-k7pw3m",
        attempts=1,
        status_changed_at=timezone.now() - timedelta(minutes=5),
    )
    assert run_tasks(provisioning.redrive_stale, timezone.now()) == 1
    account.refresh_from_db()
    assert account.status == AccountStatus.ACTIVE
    assert our_users(fake_coder) == ["cs-k7pw3m"]
    assert logs_in(fake_coder.url, sms(fake_twilio))


def test_twilio_failure_after_the_create_sends_a_new_password_later(account, services, run_tasks):
    fake_coder, fake_twilio = services
    fake_twilio.fail_next(1, 500)
    provisioning.provision(account.pk)
    account.refresh_from_db()
    assert account.status == AccountStatus.ACTIVE and account.credentials_sent_at is None
    assert "a new password will follow" in account.last_error
    lost_body = fake_twilio.requests_log[0][2]["Body"]
    lost_email, lost_password = credentials_from_sms(lost_body)

    # The backoff is over (moved into the past rather than waited for).
    Account.objects.filter(pk=account.pk).update(next_attempt_at=timezone.now())
    assert run_tasks(provisioning.redrive_stale, timezone.now()) == 1
    account.refresh_from_db()
    assert account.credentials_sent_at is not None and account.next_attempt_at is None
    email, password = texted(fake_twilio)
    assert password != lost_password and email == lost_email
    assert logs_in(fake_coder.url, sms(fake_twilio))
    assert log_in(fake_coder.url, lost_email, lost_password).status_code == 401
    assert our_users(fake_coder) == [account.coder_username]


def test_a_rejected_request_fails_at_once(account, services, run_tasks):
    fake_coder, fake_twilio = services
    fake_coder.fail_next(1, 400, method="POST", path_prefix="/api/v2/users")
    run_tasks(provisioning.provision, account.pk)
    account.refresh_from_db()
    assert (account.status, account.attempts) == (AccountStatus.FAILED, 1)
    assert "400" in account.last_error
    assert [m["body"] for m in fake_twilio.messages] == [
        "Sorry, we could not set up your Coder account. Your instructor has been told."
    ]


def test_retry_failed_gives_a_failed_account_another_go(account, services, run_tasks):
    fake_coder, fake_twilio = services
    fake_coder.fail_next(1, 400, method="POST", path_prefix="/api/v2/users")
    provisioning.provision(account.pk)
    account.refresh_from_db()
    assert run_tasks(provisioning.retry_failed, account)
    account.refresh_from_db()
    assert (account.status, account.attempts) == (AccountStatus.ACTIVE, 1)
    assert logs_in(fake_coder.url, sms(fake_twilio))
    assert not provisioning.retry_failed(account)


def test_account_whose_deletion_was_requested_is_not_provisioned(account, services):
    fake_coder, fake_twilio = services
    Account.objects.filter(pk=account.pk).update(deletion_requested_at=timezone.now())
    provisioning.provision(account.pk)
    account.refresh_from_db()
    assert account.status == AccountStatus.REQUESTED
    assert user_posts(fake_coder) == [] and fake_twilio.messages == []


def test_missing_template_still_gives_the_student_an_account(open_session, services):
    fake_coder, fake_twilio = services
    session = make_session(open_session.classroom, "python lab 5", coder_template="nope")
    account = Account.objects.create(
        session=session, phone=STUDENT_PHONE, expires_at=session.expires_at
    )
    provisioning.provision(account.pk)
    account.refresh_from_db()
    assert account.status == AccountStatus.ACTIVE
    assert "“nope” not found" in account.last_error
    assert logs_in(fake_coder.url, sms(fake_twilio))


def test_workspace_is_created_from_the_sessions_template(open_session, services):
    fake_coder, fake_twilio = services
    template = fake_coder.add_template("python-lab")
    session = make_session(open_session.classroom, "python lab 6", coder_template="python-lab")
    account = Account.objects.create(
        session=session, phone=STUDENT_PHONE, expires_at=session.expires_at
    )
    provisioning.provision(account.pk)
    account.refresh_from_db()
    # By id: the student may rename themselves as soon as they log in.
    [create] = fake_coder.requests("POST", f"/api/v2/users/{account.coder_user_id}/workspaces")
    assert create.body == {"name": "python-lab", "template_id": template["id"]}
    assert account.status == AccountStatus.ACTIVE and account.last_error == ""


def test_a_class_looks_its_template_up_once_not_once_per_student(open_session, services):
    """GET /templates is one rate-limit budget for the deployment: one look-up serves a class."""
    fake_coder, _ = services
    template = fake_coder.add_template("python-lab")
    session = make_session(open_session.classroom, "python lab 7", coder_template="python-lab")
    accounts = [
        Account.objects.create(session=session, phone=f"+1415555020{n}",
                               expires_at=session.expires_at)
        for n in range(3)
    ]  # fmt: skip

    for account in accounts:
        provisioning.provision(account.pk)

    assert len(fake_coder.requests("GET", "/api/v2/templates")) == 1
    creates = [r for r in fake_coder.requests("POST") if r.path.endswith("/workspaces")]
    assert [r.body["template_id"] for r in creates] == [template["id"]] * 3
