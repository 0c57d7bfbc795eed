"""Work done inside the app's own environment (its settings and database) for the benchmarks:
seed expired (or soon expiring) accounts for the cleanup and expiry benchmarks, and count the
queries a webhook makes.

    python -m bench.probe seed-expired USERS.json
    python -m bench.probe seed-expiring USERS.json --expires-at 1767225600.0
    python -m bench.probe queries --sessions 10 --more-sessions 990 --accounts 100000

Run by bench/run with the deployment's environment; prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import django

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402
from twilio.request_validator import RequestValidator  # noqa: E402

from registrations.models import Account, AccountStatus, Classroom, Session  # noqa: E402
from registrations.phrases import normalize_phrase  # noqa: E402
from tests.e2e.harness import student_phone, twilio_params  # noqa: E402

SEED_BATCH = 5000
WEBHOOK_KINDS = ("new student", "same MessageSid again", "enrolled phone again", "unknown phrase")


def classroom() -> Classroom:
    owner, _ = User.objects.get_or_create(username="bench-owner", defaults={"is_staff": True})
    return Classroom.objects.get_or_create(owner=owner, name="Bench")[0]


def add_sessions(
    count: int, first: int, *, expired: bool = False, expires_at: datetime | None = None
) -> list[Session]:
    """Bulk-create sessions `bench lab {first}..`: open now, long expired, or closed and
    expiring at `expires_at`."""
    now = timezone.now()
    opens = now - timedelta(hours=3 if expired or expires_at else 0, minutes=1)
    closes = now - timedelta(hours=2) if expired or expires_at else now + timedelta(hours=1)
    expires = now - timedelta(minutes=1) if expired else now + timedelta(hours=3)
    if expires_at is not None:
        expires = expires_at
    room = classroom()
    sessions = []
    for i in range(first, first + count):
        phrase = f"bench lab {i}"
        sessions.append(
            Session(
                classroom=room,
                phrase=phrase,
                phrase_normalized=normalize_phrase(phrase),
                opens_at=opens,
                closes_at=closes,
                expires_at=expires,
                capacity=1000,
                warn_minutes=0,
            )
        )
    return Session.objects.bulk_create(sessions, batch_size=SEED_BATCH)


def add_accounts(sessions: list[Session], count: int, usernames: list[tuple[str, str]]) -> None:
    """Bulk-create `count` active accounts spread over the sessions."""
    now = timezone.now()
    batch: list[Account] = []
    for n in range(count):
        session = sessions[n % len(sessions)]
        username, user_id = usernames[n] if usernames else (f"seed{n}", str(uuid.uuid4()))
        batch.append(
            Account(
                session=session,
                phone=student_phone(n // len(sessions)),
                status=AccountStatus.ACTIVE,
                coder_username=username,
                coder_user_id=user_id,
                expires_at=session.expires_at,
                provisioned_at=now,
                credentials_sent_at=now,
            )
        )
        if len(batch) >= SEED_BATCH:
            Account.objects.bulk_create(batch)
            batch = []
    Account.objects.bulk_create(batch)


def seed_expired(users_file: str) -> dict[str, Any]:
    """One long-expired session whose accounts own the given Coder users."""
    users = [tuple(pair) for pair in json.loads(Path(users_file).read_text())]
    session = add_sessions(1, 0, expired=True)[0]
    add_accounts([session], len(users), users)
    return {"session": session.pk, "accounts": len(users)}


def seed_expiring(users_file: str, expires_at: float) -> dict[str, Any]:
    """One closed session expiring at `expires_at` (epoch seconds) whose active accounts own
    the given Coder users: the app's own scheduler then expires them."""
    users = [tuple(pair) for pair in json.loads(Path(users_file).read_text())]
    when = datetime.fromtimestamp(expires_at, tz=UTC)
    session = add_sessions(1, 0, expires_at=when)[0]
    add_accounts([session], len(users), users)
    return {"session": session.pk, "accounts": len(users), "expires_at": when.isoformat()}


def post(client: Client, body: str, phone: str, sid: str | None = None) -> tuple[str, int, float]:
    """Post one signed webhook; return (sid, queries, seconds)."""
    params = twilio_params(body, phone, sid, account_sid=settings.TWILIO_ACCOUNT_SID)
    url = settings.PUBLIC_BASE_URL + "/twilio/sms/"
    signature = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(url, params)
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        # Form-encoded, as Twilio posts it: the webhook refuses any other body (multipart, the
        # test client's default) before it is read (request_limits).
        response = client.post(
            "/twilio/sms/",
            urlencode(params),
            content_type="application/x-www-form-urlencoded",
            HTTP_X_TWILIO_SIGNATURE=signature,
        )
        elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"webhook answered {response.status_code}: {response.content[:200]!r}")
    return params["MessageSid"], len(queries), elapsed


def measure(client: Client, phrase: str, first_phone: int, rounds: int = 5) -> dict[str, Any]:
    """Queries and time of each kind of webhook, over a few rounds with fresh phones."""
    counts: dict[str, set[int]] = {kind: set() for kind in WEBHOOK_KINDS}
    times: dict[str, list[float]] = {kind: [] for kind in WEBHOOK_KINDS}
    for r in range(rounds):
        phone = student_phone(first_phone + r)
        sid, n, t = post(client, phrase, phone)
        record = [("new student", n, t)]
        record.append(("same MessageSid again", *post(client, phrase, phone, sid)[1:]))
        # The resend path needs an account that finished provisioning.
        Account.objects.filter(phone=phone).update(status=AccountStatus.ACTIVE)
        record.append(("enrolled phone again", *post(client, phrase, phone)[1:]))
        stranger = student_phone(first_phone + 500 + r)  # wrong-phrase replies go once per phone
        record.append(("unknown phrase", *post(client, "no such phrase", stranger)[1:]))
        for kind, n, t in record:
            counts[kind].add(n)
            times[kind].append(t)
    return {
        kind: {
            "queries": max(counts[kind]),
            "stable": len(counts[kind]) == 1,
            "median_ms": round(statistics.median(times[kind]) * 1000, 2),
        }
        for kind in WEBHOOK_KINDS
    }


def queries(sessions: int, more_sessions: int, accounts: int) -> dict[str, Any]:
    """Measure with `sessions` open sessions, then again after adding many more and accounts."""
    client = Client(SERVER_NAME="127.0.0.1")
    small = add_sessions(sessions, 0)
    before = measure(client, small[0].phrase, 5000)
    started = time.perf_counter()
    large = small + add_sessions(more_sessions, sessions)
    add_accounts(large, accounts, [])
    seeded = time.perf_counter() - started
    after = measure(client, large[-1].phrase, 6000)
    return {
        "sessions": [sessions, sessions + more_sessions],
        "accounts": [0, accounts],
        "seed_seconds": round(seeded, 1),
        "small": before,
        "large": after,
        "identical": all(before[k]["queries"] == after[k]["queries"] for k in WEBHOOK_KINDS),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    seed = commands.add_parser("seed-expired")
    seed.add_argument("users_file")
    expiring = commands.add_parser("seed-expiring")
    expiring.add_argument("users_file")
    expiring.add_argument("--expires-at", type=float, required=True, help="epoch seconds")
    count = commands.add_parser("queries")
    count.add_argument("--sessions", type=int, default=10)
    count.add_argument("--more-sessions", type=int, default=990)
    count.add_argument("--accounts", type=int, default=100_000)
    args = parser.parse_args(argv)
    if args.command == "seed-expired":
        result = seed_expired(args.users_file)
    elif args.command == "seed-expiring":
        result = seed_expiring(args.users_file, args.expires_at)
    else:
        result = queries(args.sessions, args.more_sessions, args.accounts)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
