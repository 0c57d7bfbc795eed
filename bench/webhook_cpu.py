"""CPU time and queries per webhook, path by path, and where the time goes.

Each backend runs in a process of its own (settings are per process) with the deployment's
production settings (DEBUG off, INFO logging to a file, persistent connections). Signed
webhooks go through Django's WSGI handler, the application gunicorn runs, so the figures are
the app's server-side cost without the HTTP server's parsing; `bench/run webhook` measures
whole gunicorn processes (`web CPU per webhook`). Queries are counted as
tests/test_webhook_queries.py counts them, with 10 sessions and again with 1000 sessions and
100,000 accounts; CPU is the median of `time.process_time()` around each request.

    python -m bench.webhook_cpu                    # SQLite + ORM broker, PostgreSQL + Redis
    python -m bench.webhook_cpu --backend sqlite --requests 100 --accounts 10000
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

REPO = Path(__file__).resolve().parent.parent
PUBLIC_BASE_URL = "https://sms.bench.test"
TOKEN = "bench-webhook-cpu-token"
ACCOUNT_SID = "AC" + "7" * 32
PHRASE = "bench lab 0"
PATHS = (
    "new student",
    "repeat MessageSid",
    "enrolled phone again",
    "wrong phrase",
    "HELP",
    "STOP",
    "START",
    "RESEND",
    "DONE",
    "throttled",
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--requests", type=int, default=300, help="webhooks timed per path")
    parser.add_argument("--sessions", type=int, nargs=2, default=(10, 1000))
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument(
        "--pg-url", default=os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
    )
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument(
        "--server",
        action="store_true",
        help="measure gunicorn instead: its process group's CPU time per webhook, by path",
    )
    parser.add_argument("--batches", type=int, default=5, help="--server: batches per path")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        json.dump(child(args), sys.stdout)
        return 0
    results = {}
    for kind in ("sqlite", "postgres") if args.backend == "all" else (args.backend,):
        if args.server:
            results[kind] = run_server(kind, args)
            print(render_server(kind, results[kind]), flush=True)
        else:
            results[kind] = run_backend(kind, args)
            print(render(kind, results[kind], args.profile_top), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def run_backend(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run the measurements in a fresh process against a fresh database of `kind`."""
    workdir, cluster, backend = fresh_backend(kind, "webhook-cpu", args)
    env = child_env(
        backend,
        cluster,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="0",
        PUBLIC_BASE_URL=PUBLIC_BASE_URL,
        TWILIO_ACCOUNT_SID=ACCOUNT_SID,
        TWILIO_AUTH_TOKEN=TOKEN,
    )
    argv = [sys.executable, "-m", "bench.webhook_cpu", "--child", kind]
    argv += ["--requests", str(args.requests), "--accounts", str(args.accounts)]
    argv += ["--sessions", *map(str, args.sessions), "--profile-top", str(args.profile_top)]
    log = workdir / "app.log"
    try:
        with open(log, "wb") as stderr:
            done = subprocess.run(argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=stderr)
        if done.returncode != 0:
            raise SystemExit(f"{kind} run failed:\n" + log.read_text()[-4000:])
        return dict(json.loads(done.stdout))
    finally:
        backend.destroy()


def fresh_backend(kind: str, name: str, args: argparse.Namespace) -> tuple[Path, str, Any]:
    """A work folder, a cluster name and a created database (and broker) of `kind`."""
    from tests.e2e.backend import Backend

    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    cluster = f"bench-{name}-{os.getpid()}"
    if kind == "sqlite":
        backend = Backend(f"sqlite:///{workdir / 'db.sqlite3'}", "", cluster)
    else:
        database = f"bench_{name.replace('-', '_')}"
        backend = Backend(f"{args.pg_url.rstrip('/')}/{database}", args.redis_url, cluster)
    backend.create()
    return workdir, cluster, backend


def child_env(backend: Any, cluster: str, **settings: str) -> dict[str, str]:
    """The environment of a measuring child process: production-like settings, no .env file."""
    return {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR")},
        "PYTHONPATH": str(REPO),
        "DJANGO_SETTINGS_MODULE": "classroom_sms.settings",
        "ENV_FILE": "",
        "SECRET_KEY": "bench-child",
        "DEBUG": "0",
        "DATABASE_URL": backend.database_url,
        "REDIS_URL": backend.redis_url,
        "Q_CLUSTER_NAME": cluster,
        "TWILIO_FROM_NUMBER": "+15005550006",
        "LOG_LEVEL": "INFO",
        **settings,
    }


def child(args: argparse.Namespace) -> dict[str, Any]:
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    bench = Bench(args.requests)
    small, large = args.sessions
    sessions = seed_sessions(small, 0)
    few = bench.measure_all(first=100_000)
    seeded = time.perf_counter()
    seed_accounts(sessions + seed_sessions(large - small, small), args.accounts)
    seeded = time.perf_counter() - seeded
    many = bench.measure_all(first=500_000)
    profile = bench.profile(first=800_000, top=args.profile_top)
    return {
        "backend": args.child,
        "requests_per_path": args.requests,
        "sessions": [small, large],
        "accounts": [0, args.accounts],
        "seed_seconds": round(seeded, 1),
        "few": few,
        "many": many,
        "profile": profile,
    }


def seed_sessions(count: int, first: int) -> list[Any]:
    """Open sessions `bench lab {first}..` (the first of all is the one students text)."""
    from bench.probe import add_sessions
    from registrations.models import Session

    sessions = add_sessions(count, first)
    Session.objects.filter(phrase=PHRASE).update(capacity=100_000)
    return sessions


def seed_accounts(sessions: list[Any], count: int) -> None:
    from bench.probe import add_accounts

    add_accounts(sessions, count, [])


class Bench:
    """Signed webhooks through the WSGI application, timed one by one."""

    def __init__(self, requests: int) -> None:
        from django.core.wsgi import get_wsgi_application
        from twilio.request_validator import RequestValidator

        self.requests = requests
        self.app = get_wsgi_application()
        self.validator = RequestValidator(TOKEN)

    def environ(self, body: str, phone: str, sid: str) -> dict[str, Any]:
        from tests.e2e.harness import twilio_params

        params = twilio_params(body, phone, sid, account_sid=ACCOUNT_SID)
        payload = urlencode(params).encode()
        signature = self.validator.compute_signature(PUBLIC_BASE_URL + "/twilio/sms/", params)
        return {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/twilio/sms/",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": "application/x-www-form-urlencoded",
            "CONTENT_LENGTH": str(len(payload)),
            "HTTP_HOST": "127.0.0.1",
            "HTTP_X_TWILIO_SIGNATURE": signature,
            "wsgi.input": io.BytesIO(payload),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.version": (1, 0),
        }

    def post(self, environ: dict[str, Any]) -> float:
        """Run one request through the application; return its CPU seconds."""
        status: list[str] = []
        started = time.process_time()
        response = self.app(environ, lambda s, headers, exc_info=None: status.append(s))
        b"".join(response)
        response.close()  # type: ignore[attr-defined]  (request_finished: connections)
        spent = time.process_time() - started
        if not status[0].startswith("200"):
            raise SystemExit(f"webhook answered {status[0]}")
        return spent

    def workload(self, path: str, first: int, count: int) -> list[dict[str, Any]]:
        """Prepare, then return the environs of, `count` webhooks of one path.

        Each path texts from a block of phones of its own, but a repeat MessageSid re-sends
        the new students' webhooks and the enrolled phone is a new student texting again.
        """
        number = PATHS.index(path)
        base = first if number < 3 else first + number * 10_000
        tag = 0 if path == "repeat MessageSid" else number
        # Exchanges 2xx-9xx: valid US numbers, as Twilio sends them.
        phones = [f"+1415{2_000_000 + n:07d}" for n in range(base, base + count)]
        sids = [f"SM{tag:02d}{n:030d}" for n in range(base, base + count)]
        prepare: dict[str, Callable[[list[str]], None]] = {
            "enrolled phone again": activate,
            "RESEND": give_accounts,
            "DONE": give_accounts,
            "START": opt_out,
            "throttled": fill_windows,
        }
        if path in prepare:
            prepare[path](phones)
        body = {
            "new student": PHRASE,
            "repeat MessageSid": PHRASE,
            "enrolled phone again": PHRASE,
            "wrong phrase": "no such phrase",
            "throttled": PHRASE,
        }.get(path, path)
        return [self.environ(body, p, sid) for p, sid in zip(phones, sids, strict=True)]

    def measure_all(self, first: int) -> dict[str, Any]:
        return {path: self.measure(path, first) for path in PATHS}

    def measure(self, path: str, first: int) -> dict[str, Any]:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        counted, *timed = self.workload(path, first, self.requests + 1)
        with CaptureQueriesContext(connection) as captured:
            self.post(counted)
        queries = len(captured)  # now: the next request clears the log
        cpu = [self.post(environ) for environ in timed]
        return {
            "queries": queries,
            "cpu_ms_median": round(statistics.median(cpu) * 1000, 3),
            "cpu_ms_p90": round(sorted(cpu)[int(len(cpu) * 0.9)] * 1000, 3),
        }

    def profile(self, first: int, top: int) -> dict[str, Any]:
        """cProfile over every path in turn, `requests` // 5 webhooks each."""
        count = max(20, self.requests // 5)
        # Timed by CPU, not the wall clock: waiting for the database is not where CPU goes.
        profiler = cProfile.Profile(time.process_time)
        cpu, requests = 0.0, 0
        for path in PATHS:
            environs = self.workload(path, first, count)
            started = time.process_time()
            profiler.enable()
            for environ in environs:
                self.post(environ)
            profiler.disable()
            cpu += time.process_time() - started
            requests += len(environs)
        out = io.StringIO()
        stats = pstats.Stats(profiler, stream=out)
        stats.sort_stats("cumulative").print_stats(top)
        stats.sort_stats("tottime").print_stats(top)
        return {"requests": requests, "cpu_ms_per_request": cpu / requests * 1000,
                "where": where_it_goes(stats), "text": out.getvalue()}  # fmt: skip


# Where a webhook's CPU goes: (share name, file suffix, function) whose cumulative time is
# shown as a share of the whole request. The items nest (the form is parsed inside the
# signature check, the task is enqueued inside the commit), so they add up to more than the
# request; "outside the view" is what Django's handler and the middleware add around it.
WHERE = (
    ("the whole request (WSGI handler)", "django/core/handlers/wsgi.py", "__call__"),
    ("the view, behind the signature check", "registrations/twilio_auth.py", "wrapped"),
    ("- reading the form (request.POST)", "django/http/request.py", "_load_post_and_files"),
    ("- the signature's HMAC", "twilio/request_validator.py", "compute_signature"),
    ("- handle_inbound", "registrations/inbound.py", "handle_inbound"),
    ("  - reading the fields and numbers (inbound.parse)", "registrations/inbound.py", "parse"),
    ("  - entering the transaction (BEGIN)", "django/db/transaction.py", "__enter__"),
    ("  - the one read (read_sender)", "registrations/inbound.py", "read_sender"),
    ("  - enrolling (enrollment.enroll)", "registrations/enrollment.py", "enroll"),
    ("  - a new password (resend grant)", "registrations/provisioning.py", "_grant_resend"),
    ("  - DONE (deletion)", "deletion.py", "request_deletion_of_phone"),
    ("  - the log row (inbound._log)", "registrations/inbound.py", "_log"),
    ("  - leaving the transaction (commit)", "django/db/transaction.py", "__exit__"),
    ("    - enqueueing tasks (async_task)", "django_q/tasks.py", "async_task"),
    ("log lines (logging)", "logging/__init__.py", "_log"),
)


def where_it_goes(stats: pstats.Stats) -> dict[str, float]:
    """Share of the profiled CPU spent in each item of WHERE (cumulative, nested)."""
    found: dict[str, float] = {}
    table = stats.stats  # type: ignore[attr-defined]
    total = sum(tt for (_, _, _, tt, _) in table.values())
    for name, suffix, function in WHERE:
        found[name] = sum(
            cumulative
            for (filename, _, func), (_, _, _, cumulative, _) in table.items()
            if func == function and filename.endswith(suffix)
        )
    whole = found["the whole request (WSGI handler)"] or total
    return {name: round(100 * seconds / whole, 1) for name, seconds in found.items()}


def run_server(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """Per path, batches of webhooks to a real deployment (bench/run's: 2 gunicorn processes
    x 4 threads, no workers), one after another; CPU of gunicorn's process group per webhook.

    /proc counts CPU in clock ticks (10 ms), so each batch is `requests` webhooks and the
    figure is the median of the batches' means.
    """
    from bench.main import Config, Sizes, create_open_session, deployed
    from tests.e2e.backend import Backend
    from tests.e2e.processes import group_cpu_seconds

    class ServerConfig(Config):
        def backend(self, kind: str, name: str) -> Backend:
            # A database of our own: bench/run's may be in use.
            if kind == "sqlite":
                return Backend(f"sqlite:///{self.logs / name}.sqlite3", "", name)
            return Backend(f"{self.pg_url.rstrip('/')}/{name}", self.redis_url, name)

    logs = Path(tempfile.mkdtemp(prefix="webhook-cpu-server-"))
    capacity = {"SESSION_MAX_CAPACITY": "100000"}  # every batch enrolls more students
    config = ServerConfig(Sizes(), args.pg_url, args.redis_url, 2, 4, 0, 0, logs, capacity)
    per_path: dict[str, list[float]] = {path: [] for path in PATHS}
    with deployed(config, kind, f"bench_webhook_cpu_{os.getpid()}", workers=False) as stack:
        web = next(s for s in stack.services if s.name.startswith("web"))
        session = create_open_session(stack, PHRASE)
        execute = _executor(stack.backend.database_url)
        execute(f"UPDATE registrations_session SET capacity = 100000 WHERE id = {session}")
        for batch in range(args.batches):
            phones = _server_phones(batch, args.requests)
            for path in PATHS:
                texts = _server_texts(path, phones, execute, stack, args.requests)
                cpu = group_cpu_seconds(web.pid)
                for body, phone, sid in texts:
                    response = stack.post_sms(body, phone, sid)
                    if response.status_code != 200:
                        raise SystemExit(f"{path}: webhook answered {response.status_code}")
                per_path[path].append((group_cpu_seconds(web.pid) - cpu) / len(texts))
        # What the webhooks were: every path did what its name says (the fills excluded).
        outcomes = dict(
            stack.db.rows(
                "SELECT outcome, COUNT(*) FROM registrations_inboundmessage "
                "WHERE message_sid NOT LIKE 'SMfill%' GROUP BY outcome"
            )
        )
    return {
        "outcomes": outcomes,
        "backend": kind,
        "requests_per_batch": args.requests,
        "batches": args.batches,
        "paths": {
            path: {
                "cpu_ms_median": round(statistics.median(cpu) * 1000, 2),
                "cpu_ms_batches": [round(c * 1000, 2) for c in cpu],
            }
            for path, cpu in per_path.items()
        },
    }


def _server_phones(batch: int, count: int) -> dict[str, list[str]]:
    """A block of distinct phones per path and batch (US numbers with valid exchanges)."""

    def block(number: int) -> list[str]:
        first = 2_000_000 + (batch * len(PATHS) + number) * count
        return [f"+1415{n:07d}" for n in range(first, first + count)]

    return {path: block(number) for number, path in enumerate(PATHS)}


def _server_texts(
    path: str, phones: dict[str, list[str]], execute: Callable[[str], None], stack: Any, n: int
) -> list[tuple[str, str, str | None]]:
    """Prepare a path's batch (rows, earlier texts) and return its (body, phone, sid) texts."""
    new = phones["new student"]
    own = phones[path]
    if path == "repeat MessageSid":
        return [(PHRASE, phone, _sid("new student", phone)) for phone in new]
    if path == "enrolled phone again":
        execute(f"UPDATE registrations_account SET status = 'active' WHERE phone IN {_in(new)}")
        return [(PHRASE, phone, None) for phone in new]
    if path in ("RESEND", "DONE"):
        for phone in own:
            stack.post_sms(PHRASE, phone)
        execute(f"UPDATE registrations_account SET status = 'active' WHERE phone IN {_in(own)}")
    if path == "START":
        return [("START", phone, None) for phone in phones["STOP"]]
    if path == "throttled":
        now = "now()" if "postgres" in stack.backend.database_url else _SQLITE_NOW
        execute(
            "INSERT INTO registrations_inboundmessage "
            "(message_sid, phone, to_number, body, received_at, outcome) VALUES "
            + ", ".join(
                f"('SMfill{phone[1:]}x{k}', '{phone}', '', '', {now}, 'keyword')"
                for phone in own
                for k in range(10)  # INBOUND_THROTTLE_COUNT
            )
        )
    body = {"new student": PHRASE, "wrong phrase": "no such phrase", "throttled": PHRASE}
    # The new students' sids are known, so that the next path can deliver them again.
    known = path == "new student"
    return [(body.get(path, path), p, _sid(path, p) if known else None) for p in own[:n]]


_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"  # as Django stores it: naive UTC text


def _sid(path: str, phone: str) -> str:
    return "SM" + "".join(c for c in path + phone if c.isalnum())


def _in(phones: list[str]) -> str:
    return "(" + ", ".join(f"'{phone}'" for phone in phones) + ")"


def _executor(database_url: str) -> Callable[[str], None]:
    """Run one statement against the deployment's database, committed."""

    def execute(statement: str) -> None:
        if database_url.startswith("sqlite:"):
            import sqlite3

            conn = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=30)
            with conn:
                conn.execute(statement)
            conn.close()
            return
        import psycopg

        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(statement)

    return execute


def render_server(kind: str, result: dict[str, Any]) -> str:
    label = {"sqlite": "SQLite + ORM broker", "postgres": "PostgreSQL + Redis"}[kind]
    lines = [
        f"== {label}, gunicorn (2 processes x 4 threads): web CPU ms per webhook, median of "
        f"{result['batches']} batches of {result['requests_per_batch']}",
    ]
    for path, figures in result["paths"].items():
        batches = " ".join(f"{c:.2f}" for c in figures["cpu_ms_batches"])
        lines.append(f"{path:<22} {figures['cpu_ms_median']:>6.2f}   ({batches})")
    lines.append(f"outcomes logged: {result['outcomes']}")
    return "\n".join(lines)


def activate(phones: list[str]) -> None:
    from registrations.models import Account, AccountStatus

    Account.objects.filter(phone__in=phones).update(status=AccountStatus.ACTIVE)


def give_accounts(phones: list[str]) -> None:
    from django.utils import timezone

    from registrations.models import Account, AccountStatus, Session

    session = Session.objects.get(phrase=PHRASE)
    Account.objects.bulk_create(
        Account(
            session=session,
            phone=phone,
            status=AccountStatus.ACTIVE,
            coder_username=f"cpu{phone[-7:]}",
            coder_user_id=f"id{phone[-7:]}",
            expires_at=session.expires_at,
            credentials_sent_at=timezone.now(),
        )
        for phone in phones
    )


def opt_out(phones: list[str]) -> None:
    from registrations.models import OptOut

    OptOut.objects.bulk_create(OptOut(phone=phone) for phone in phones)


def fill_windows(phones: list[str]) -> None:
    from django.conf import settings

    from registrations.models import InboundMessage, InboundOutcome

    InboundMessage.objects.bulk_create(
        InboundMessage(
            message_sid=f"SMfill{phone[1:]}x{n}", phone=phone, outcome=InboundOutcome.KEYWORD
        )  # fmt: skip
        for phone in phones
        for n in range(settings.INBOUND_THROTTLE_COUNT)
    )


def render(kind: str, result: dict[str, Any], top: int) -> str:
    small, large = result["sessions"]
    label = {"sqlite": "SQLite + ORM broker", "postgres": "PostgreSQL + Redis"}[kind]
    lines = [
        f"== {label}: {result['requests_per_path']} webhooks per path; queries with {small} "
        f"sessions / {large} sessions + {result['accounts'][1]:,} accounts",
        f"{'path':<22} {'queries':>9} {'CPU ms p50':>11} {'p90':>6}   (many: p50, p90)",
    ]
    for path in PATHS:
        few, many = result["few"][path], result["many"][path]
        lines.append(
            f"{path:<22} {few['queries']:>4} / {many['queries']:<2} "
            f"{few['cpu_ms_median']:>9.2f} {few['cpu_ms_p90']:>6.2f}   "
            f"({many['cpu_ms_median']:.2f}, {many['cpu_ms_p90']:.2f})"
        )
    profile = result["profile"]
    lines.append(
        f"-- profile: {profile['requests']} webhooks (every path), "
        f"{profile['cpu_ms_per_request']:.2f} ms each under cProfile"
    )
    lines.append("where the CPU goes (% of the whole request, nested):")
    lines += [f"  {share:5.1f}%  {name}" for name, share in profile["where"].items()]
    lines.append(profile["text"])
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
