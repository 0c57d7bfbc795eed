"""Requests on Coder's shared routes are paced to stay inside its rate limit (rate_budget).

The fake Coder enforces the real limit (go-chi/httprate's sliding window, keyed by client and
URL path as coderd/httpmw/ratelimit.go does); the client and the fake share one fake clock, and
the client's sleeps move it on, so a minute of pacing takes no time.
"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.utils import timezone

from registrations import coder, provisioning
from registrations.coder import CoderClient
from registrations.models import Account, AccountStatus, CoderRouteWindow
from registrations.rate_budget import RouteBudget, usable_share, wait_seconds

LIMIT = 20


class Clock:
    """Seconds since the epoch, moved on only by the sleeps of the code under test."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(fake_coder) -> Clock:
    clock = Clock()
    fake_coder.clock = clock
    fake_coder.rate_limit_per_minute = LIMIT
    return clock


def paced_client(fake_coder, clock: Clock, limit: int = LIMIT) -> CoderClient:
    return CoderClient(
        fake_coder.url,
        fake_coder.token,
        budget=RouteBudget(limit, clock=clock),
        sleep=clock.sleep,
        max_sleep=120,
    )


def refused(fake_coder) -> int:
    return Counter(answer.status for answer in fake_coder.answers)[429]


def create(client: CoderClient, n: int, first: int = 0) -> None:
    org = client.resolve_organization_id(None)
    for i in range(first, first + n):
        client.create_user(f"student-{i}", f"student-{i}@lab.invalid", "k7pw-m3rt-q9zx-a1", org)


def test_sliding_window_arithmetic_is_httprates():
    usable = 100
    assert wait_seconds(0, 0, 0.0, usable) == 0
    assert wait_seconds(0, 99, 10.0, usable) == 0
    # This minute is full: wait for the next one.
    assert wait_seconds(0, 100, 10.0, usable) == pytest.approx(50.05)
    # 90 last minute, 10 now: at 30 s the estimate is 45 + 10, so one more fits at once.
    assert wait_seconds(90, 10, 30.0, usable) == 0
    # 100 last minute, 50 now, 0 s in: the previous minute must shrink to 49 first.
    assert wait_seconds(100, 50, 0.0, usable) == pytest.approx(60 * (1 - 49 / 100))
    assert usable_share(512) == 496


def test_a_burst_over_the_limit_is_paced_and_never_refused(db, fake_coder, clock):
    client = paced_client(fake_coder, clock)

    create(client, 3 * LIMIT)

    assert refused(fake_coder) == 0
    created = [a for a in fake_coder.answers if (a.method, a.path) == ("POST", "/api/v2/users")]
    assert [a.status for a in created] == [201] * (3 * LIMIT)
    # Coder's limit, in its own sliding window: never more than LIMIT in any 60 s.
    times = [a.at for a in created]
    assert all(later - earlier >= 60 for earlier, later in zip(times, times[LIMIT:], strict=False))
    assert len(fake_coder.live_users("lab.invalid")) == 3 * LIMIT


def test_routes_naming_a_user_have_their_own_budget(db, fake_coder, clock):
    client = paced_client(fake_coder, clock)
    create(client, 2)
    users = fake_coder.live_users("lab.invalid")
    started = clock()

    for _ in range(LIMIT // 2):
        for user in users:
            client.get_user(user["id"])

    assert clock() == started  # nothing to wait for
    assert refused(fake_coder) == 0
    assert not CoderRouteWindow.objects.filter(route__startswith="/users/").exists()


def test_workers_share_one_budget(db, fake_coder, clock):
    """Two clients (two worker processes) together stay under the one limit."""
    first, second = paced_client(fake_coder, clock), paced_client(fake_coder, clock)

    for i in range(LIMIT):
        create(first if i % 2 else second, 1, first=i)

    assert refused(fake_coder) == 0
    windows = CoderRouteWindow.objects.filter(route="/users")
    assert sum(windows.values_list("count", flat=True)) == LIMIT


def test_a_429_pauses_the_route_for_everyone(db, fake_coder, clock):
    """Coder refused (someone else spent the budget): the route waits, then goes on, no herd."""
    client, other = paced_client(fake_coder, clock), paced_client(fake_coder, clock)
    fake_coder.fail_next(1, 429, method="POST", path_prefix="/api/v2/users")
    started = clock()

    create(client, 1)
    create(other, 1, first=1)

    created = [a for a in fake_coder.answers if (a.method, a.path) == ("POST", "/api/v2/users")]
    assert [a.status for a in created] == [429, 201, 201]
    # Retry-After (60 s) is honoured, and the other worker saw the window full too.
    assert created[1].at - started >= 60
    assert created[2].at >= created[1].at


def test_coders_own_count_wins_when_someone_else_shares_the_token(db, fake_coder, clock):
    """Another client with our token spent most of /users: Coder's headers tell us."""
    other = CoderClient(fake_coder.url, fake_coder.token)
    for _ in range(LIMIT - 3):
        other.list_users()
    client = paced_client(fake_coder, clock)

    for i in range(5):
        client.list_users(f"student-{i}")

    assert refused(fake_coder) == 0


def test_a_wait_longer_than_a_task_may_sleep_is_handed_to_the_retry(
    fake_coder, coder_account, open_session, settings, run_tasks
):
    """Provisioning meets a used-up /users budget: the account is retried later, Coder unasked."""
    settings.CODER_RATE_LIMIT = LIMIT
    coder.reset_clients()
    now = timezone.now().timestamp()
    CoderRouteWindow.objects.create(route="/users", window=int(now // 60), count=LIMIT)
    account = Account.objects.create(
        session=open_session, phone="+14155550177", expires_at=open_session.expires_at
    )
    before = len(fake_coder.requests("POST", "/api/v2/users"))

    provisioning.provision(account.pk)

    account.refresh_from_db()
    assert account.status == AccountStatus.REQUESTED
    assert account.next_attempt_at > timezone.now() + timedelta(seconds=1)
    assert "rate limit" in account.last_error
    assert len(fake_coder.requests("POST", "/api/v2/users")) == before
