"""Worker CPU and queries per provisioned student, and where the time goes.

Provisions students one after another inside one process, the task body a worker runs
(`provisioning.provision`: the Coder user, the workspace, the credentials SMS), against the
fake Coder and fake Twilio (real HTTP servers on 127.0.0.1, without latency). CPU is the
worker thread's own (`time.thread_time()`), so the fakes' threads in the same process are not
counted; queries are counted as Django counts them, BEGIN and COMMIT included.

    python -m bench.provision_cpu                     # SQLite, then PostgreSQL
    python -m bench.provision_cpu --backend postgres --students 200 --profile-top 30
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
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TEMPLATE = "python"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--students", type=int, default=150, help="students timed")
    parser.add_argument(
        "--pg-url", default=os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432")
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
    )
    parser.add_argument("--profile-top", type=int, default=0, help="also print cProfile's top N")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        json.dump(child(args), sys.stdout)
        return 0
    for kind in ("sqlite", "postgres") if args.backend == "all" else (args.backend,):
        result = run_backend(kind, args)
        print(render(kind, result), flush=True)
    return 0


def run_backend(kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """Measure in a fresh process against a fresh database of `kind` and fresh fakes."""
    from bench.webhook_cpu import child_env, fresh_backend
    from tests.fakes.coder import FakeCoder
    from tests.fakes.twilio import FakeTwilio

    workdir, cluster, backend = fresh_backend(kind, "provision-cpu", args)
    with FakeCoder() as coder, FakeTwilio() as twilio:
        coder.add_template(TEMPLATE)
        env = child_env(
            backend,
            cluster,
            CODER_URL=coder.url,
            CODER_SESSION_TOKEN=coder.token,
            TWILIO_API_BASE_URL=twilio.url,
            TWILIO_ACCOUNT_SID=twilio.account_sid,
            TWILIO_AUTH_TOKEN=twilio.auth_token,
            PUBLIC_BASE_URL="https://sms.bench.test",
        )
        argv = [sys.executable, "-m", "bench.provision_cpu", "--child", kind]
        argv += ["--students", str(args.students), "--profile-top", str(args.profile_top)]
        log = workdir / "app.log"
        try:
            with open(log, "wb") as stderr:
                done = subprocess.run(
                    argv, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=stderr
                )
            if done.returncode != 0:
                raise SystemExit(f"{kind} run failed:\n" + log.read_text()[-4000:])
            result = dict(json.loads(done.stdout))
        finally:
            backend.destroy()
        result["credentials_sms"] = len(twilio.messages)
    return result


def child(args: argparse.Namespace) -> dict[str, Any]:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from bench.probe import add_sessions
    from registrations import provisioning
    from registrations.models import Account, AccountStatus

    call_command("migrate", verbosity=0)
    from registrations import warmup

    warmup.worker()  # as a worker does when it starts (post_spawn)
    session = add_sessions(1, 0)[0]
    session.coder_template = TEMPLATE
    session.capacity = 100_000
    session.save()
    n = args.students
    accounts = Account.objects.bulk_create(
        Account(session=session, phone=f"+1415{3_000_000 + i:07d}", expires_at=session.expires_at)
        for i in range(2 * n + 1)
    )
    ids = [a.pk for a in accounts]
    # The first warms the caches (organization, template, connections) and is counted apart.
    first_profile = cProfile.Profile(time.thread_time)
    with CaptureQueriesContext(connection) as first:
        started = time.thread_time()
        first_profile.enable()
        provisioning.provision(ids[0])
        first_profile.disable()
        first_cpu = time.thread_time() - started
    queries, cpu = [], []
    for pk in ids[1 : n + 1]:
        with CaptureQueriesContext(connection) as captured:
            started = time.thread_time()
            provisioning.provision(pk)
            cpu.append(time.thread_time() - started)
        queries.append(len(captured))
    statements = [q["sql"].split()[0] for q in captured.captured_queries]
    profile = cProfile.Profile(time.thread_time)
    profile.enable()
    for pk in ids[n + 1 :]:
        provisioning.provision(pk)
    profile.disable()
    out = io.StringIO()
    stats = pstats.Stats(profile, stream=out)
    if args.profile_top:
        print("The first student (cold caches):", file=out)
        pstats.Stats(first_profile, stream=out).sort_stats("cumulative").print_stats(
            args.profile_top
        )
        print("The next students:", file=out)
        stats.sort_stats("cumulative").print_stats(args.profile_top)
        stats.sort_stats("tottime").print_stats(args.profile_top)
    active = Account.objects.filter(status=AccountStatus.ACTIVE).count()
    return {
        "backend": args.child,
        "students": n,
        "active": active,
        "first_queries": len(first),
        "first_cpu_ms": round(first_cpu * 1000, 1),
        "queries_median": statistics.median(queries),
        "statements": statements,
        "cpu_ms_median": round(statistics.median(cpu) * 1000, 2),
        "cpu_ms_p90": round(sorted(cpu)[int(len(cpu) * 0.9)] * 1000, 2),
        "profile": out.getvalue(),
    }


def render(kind: str, result: dict[str, Any]) -> str:
    lines = [
        f"== provisioning on {kind}: {result['students']} students, "
        f"{result['active']} active, {result['credentials_sms']} SMS",
        f"queries per student: {result['queries_median']} (first: {result['first_queries']})",
        f"worker CPU for the first student (cold caches): {result['first_cpu_ms']} ms",
        f"  {' '.join(result['statements'])}",
        f"worker CPU per student: median {result['cpu_ms_median']} ms, "
        f"p90 {result['cpu_ms_p90']} ms",
    ]
    if result["profile"]:
        lines.append(result["profile"])
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
