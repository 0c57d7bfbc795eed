"""A worker that stops beating has what it held handed on at once; a slow live one keeps it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from registrations import beat, credentials, jobs, liveness, maintenance, provisioning
from registrations.models import Account, AccountStatus, DeletionReason, Heartbeat
from tests.conftest import STUDENT_PHONE, queued_tasks
from tests.student import logs_in

DOMAIN = "lab.invalid"
DEAD = "worker/host-a/101/deadbeef"
ALIVE = "worker/host-b/202/cafef00d"
PROVISION = "registrations.tasks.provision_account"
ADVANCE = "registrations.tasks.advance_deletion"


@pytest.fixture
def services(fake_coder, fake_twilio, settings):
    settings.CODER_EMAIL_DOMAIN = DOMAIN
    settings.WORKER_DEAD_AFTER_SECONDS = 15
    return fake_coder, fake_twilio


def beating(name: str, seconds_ago: float) -> None:
    Heartbeat.objects.create(name=name, beat_at=timezone.now() - timedelta(seconds=seconds_ago))


def killed_after_the_create(session, fake_coder, holder: str) -> Account:
    """What a kill right after Coder's 201 leaves: a user, and a row held in provisioning."""
    email = credentials.email_for("cs-k7pw3m")
    fake_coder.add_user("cs-k7pw3m", "Lost-With-The-Worker-42", email=email)
    return Account.objects.create(
        session=session, phone=STUDENT_PHONE, expires_at=session.expires_at,
        status=AccountStatus.PROVISIONING, coder_username="cs-k7pw3m", attempts=1,
        claimed_by=holder,
    )


def test_a_dead_workers_attempt_is_handed_on_at_once_and_served_once(
    open_session, services, run_tasks
):
    fake_coder, fake_twilio = services
    beating(DEAD, seconds_ago=20)
    account = killed_after_the_create(open_session, fake_coder, DEAD)

    report = run_tasks(maintenance.sweep)  # seconds after the kill: no lease has run out

    account.refresh_from_db()
    assert report["claims_released"] == 1
    assert (account.status, account.claimed_by, account.interruptions) == ("active", "", 1)
    assert [u["username"] for u in fake_coder.live_users(DOMAIN)] == ["cs-k7pw3m"]
    [message] = fake_twilio.messages
    assert logs_in(fake_coder.url, message["body"])
    assert not Heartbeat.objects.filter(name=DEAD).exists()  # buried


def test_a_slow_worker_that_still_beats_keeps_its_rows(
    open_session, services, broker, django_capture_on_commit_callbacks
):
    fake_coder, _ = services
    beating(ALIVE, seconds_ago=2)
    account = killed_after_the_create(open_session, fake_coder, ALIVE)

    with django_capture_on_commit_callbacks(execute=True):
        report = maintenance.sweep()

    account.refresh_from_db()
    assert report["claims_released"] == 0 and queued_tasks(broker) == []
    assert (account.status, account.claimed_by) == (AccountStatus.PROVISIONING, ALIVE)


def test_a_claim_by_a_worker_without_any_heartbeat_is_handed_on(
    open_session, services, run_tasks
):
    fake_coder, fake_twilio = services
    account = killed_after_the_create(open_session, fake_coder, "worker/buried/7/0000")

    run_tasks(maintenance.sweep)

    account.refresh_from_db()
    assert account.status == AccountStatus.ACTIVE and len(fake_twilio.messages) == 1


def test_an_interrupted_credentials_sms_is_sent_again_as_the_first_one(
    open_session, services, run_tasks
):
    fake_coder, fake_twilio = services
    account = Account.objects.create(
        session=open_session, phone=STUDENT_PHONE, expires_at=open_session.expires_at
    )
    provisioning.provision(account.pk)
    fake_twilio.clear()
    # As if the worker died while Twilio had the SMS: active, never texted, leased, held.
    Account.objects.filter(pk=account.pk).update(
        credentials_sent_at=None, claimed_by=DEAD,
        next_attempt_at=timezone.now() + timedelta(minutes=3),
    )
    beating(DEAD, seconds_ago=16)

    run_tasks(maintenance.sweep)

    account.refresh_from_db()
    assert account.credentials_sent_at is not None and account.claimed_by == ""
    [message] = fake_twilio.messages
    assert message["body"].startswith("Your Coder account is ready")
    assert logs_in(fake_coder.url, message["body"])


def test_a_dead_workers_deletion_step_is_due_at_once(
    open_session, coder_account, broker, django_capture_on_commit_callbacks
):
    account = coder_account(
        open_session, status=AccountStatus.SUSPENDING, claimed_by=DEAD,
        deletion_requested_at=timezone.now(), deletion_reason=DeletionReason.EXPIRED,
        next_attempt_at=timezone.now() + timedelta(seconds=150),  # the lease of the step
    )
    beating(DEAD, seconds_ago=30)

    with django_capture_on_commit_callbacks(execute=True):
        maintenance.sweep()

    # Handed on at once, and run by the sweep's own deletion pass.
    assert queued_tasks(broker) == []
    account.refresh_from_db()
    assert account.claimed_by == ""
    assert account.status == AccountStatus.DELETING_WORKSPACES and account.suspended_at


def test_a_death_re_sends_what_was_queued_moments_ago_as_its_prefetch_is_lost(
    open_session, services, broker, django_capture_on_commit_callbacks
):
    # Enqueued a second ago: normally left alone, since its task is surely still queued.
    account = Account.objects.create(
        session=open_session, phone=STUDENT_PHONE, expires_at=open_session.expires_at
    )
    with django_capture_on_commit_callbacks(execute=True):
        maintenance.sweep()
    assert queued_tasks(broker) == []

    beating(DEAD, seconds_ago=20)
    with django_capture_on_commit_callbacks(execute=True):
        report = maintenance.sweep()

    assert report["provisioning"] == 1
    assert [(t["func"], t["args"]) for t in queued_tasks(broker)] == [(PROVISION, (account.pk,))]


def test_an_attempt_handed_on_while_its_worker_only_stalled_never_texts_twice(
    open_session, services, run_tasks, monkeypatch
):
    fake_coder, fake_twilio = services
    account = Account.objects.create(
        session=open_session, phone=STUDENT_PHONE, expires_at=open_session.expires_at
    )
    monkeypatch.setattr(jobs, "_owner", ALIVE)
    ensure_workspace = provisioning._ensure_workspace

    def stall_and_be_taken_over(held: Account) -> str:
        # Mid-attempt, this worker is seen dead, and another worker claims the handed-on row.
        Account.objects.filter(pk=held.pk).update(claimed_by="worker/other/3/abcd")
        return ensure_workspace(held)

    monkeypatch.setattr(provisioning, "_ensure_workspace", stall_and_be_taken_over)
    provisioning.provision(account.pk)

    account.refresh_from_db()
    assert account.status == AccountStatus.PROVISIONING  # left to the worker that holds it
    assert fake_twilio.messages == []


def test_attempts_that_keep_killing_their_worker_fail_the_account(
    open_session, services, run_tasks, settings
):
    fake_coder, fake_twilio = services
    settings.PROVISION_MAX_INTERRUPTIONS = 3
    account = killed_after_the_create(open_session, fake_coder, DEAD)
    Account.objects.filter(pk=account.pk).update(interruptions=2)
    beating(DEAD, seconds_ago=20)

    run_tasks(maintenance.sweep)

    account.refresh_from_db()
    assert account.status == AccountStatus.FAILED
    assert account.last_error == "Gave up: 3 attempts were interrupted."
    assert [m["body"][:30] for m in fake_twilio.messages] == ["Sorry, we could not set up you"]


def test_a_beat_stamps_and_a_buried_worker_takes_a_new_name(db, monkeypatch, settings):
    settings.WORKER_SWEEP_SECONDS = 0
    owner = liveness.register()
    monkeypatch.setattr(jobs, "_owner", owner)
    beat.beat(timezone.now())
    assert Heartbeat.objects.get(name=owner).beat_at > timezone.now() - timedelta(seconds=1)

    liveness.forget(owner)  # buried by another worker while this one stalled
    beat.beat(timezone.now())

    assert jobs.current_owner() not in ("", owner)
    assert Heartbeat.objects.filter(name=jobs.current_owner()).exists()


def test_one_worker_sweeps_per_interval(db, settings, monkeypatch):
    settings.WORKER_SWEEP_SECONDS = 10
    sweeps: list[int | None] = []
    monkeypatch.setattr(maintenance, "sweep", lambda now, batch=None, **_: sweeps.append(batch))
    monkeypatch.setattr(jobs, "_owner", liveness.register())
    now = timezone.now()

    beats = [now, now + timedelta(seconds=3), now + timedelta(seconds=11)]
    # The first worker to beat after a start sweeps at once; then once per interval.
    sweepers = [beat.beat(when) for when in beats]

    assert [bool(sweeper) for sweeper in sweepers] == [True, False, True]
    for sweeper in filter(None, sweepers):
        sweeper.join()
    assert sweeps == [beat.sweep_batch()] * 2
    assert beat.sweep_batch() == 27  # CLEANUP_BATCH_SIZE (80) per 30 s


def test_a_stale_heartbeat_makes_every_beat_sweep(db, settings, monkeypatch):
    settings.WORKER_SWEEP_SECONDS = 0
    sweeps: list[object] = []
    monkeypatch.setattr(maintenance, "sweep", lambda now, batch=None, **_: sweeps.append(now))
    monkeypatch.setattr(jobs, "_owner", liveness.register())
    assert beat.beat(timezone.now()) is None
    beating(DEAD, seconds_ago=16)
    sweeper = beat.beat(timezone.now())
    assert sweeper is not None
    sweeper.join()
    assert len(sweeps) == 1


def test_only_a_qcluster_worker_process_starts_a_beat_thread(db, monkeypatch):
    from django_q.signals import post_spawn

    post_spawn.send(sender="django_q", proc_name="Worker-1")  # pytest is no worker's child
    assert beat._thread is None and jobs.current_owner() == ""
    assert not Heartbeat.objects.filter(name__startswith=liveness.PREFIX).exists()


def test_a_slow_sweep_neither_holds_up_the_beats_nor_runs_twice(db, settings, monkeypatch):
    import threading

    settings.WORKER_SWEEP_SECONDS = 1
    release = threading.Event()
    monkeypatch.setattr(maintenance, "sweep", lambda now, batch=None, **_: release.wait(5))
    owner = liveness.register()
    monkeypatch.setattr(jobs, "_owner", owner)
    now = timezone.now()
    sweeper = beat.beat(now)

    later = now + timedelta(seconds=2)
    assert beat.beat(later) is None  # its turn again, but the first sweep is still running
    assert Heartbeat.objects.get(name=owner).beat_at == later
    release.set()
    sweeper.join()
