"""The benchmarks of the whole system against their targets, on SQLite + ORM broker and on
PostgreSQL + Redis.

Each starts a fresh deployment (gunicorn and qcluster subprocesses; fake Coder at 50 ms with
Coder's real API rate limit of 512 requests a minute per client and path, fake Twilio at 100 ms,
both in this process), measures, checks that nothing was lost, and tears it down. Prints a
table of each target beside its figure (✔/✘) and writes everything to bench/results/.

    webhook  median web CPU per webhook (one at a time), 100 students at once from 32
             senders (p99, workers running), 300 fired at once (req/s, workers stopped)
    burst    300 students text at once: time to the last credentials, every one logs in
    serve    1000 students text at once: all served, user creation paced under the limit
    expiry   classes of 300 and 1000 expire on the app's own schedule: when each student's
             access ended (suspension seen by Coder), when nothing was left, Coder's refusals
    queries  queries per webhook path, 10 vs 1000 sessions + 100,000 accounts
    cleanup  (only when named) 1000 expired accounts, `manage.py cleanup` run by hand

    bench/run                           # all but cleanup, both backends
    bench/run --quick                   # smaller sizes, for a smoke run
    bench/run burst --backend postgres  # one benchmark, one backend
    bench/run expiry --no-rate-limit    # a Coder without its API rate limit
    bench/run serve --quick --coder-rate-limit 60   # a small class against a tight limit
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import requests

from bench.coder_log import access_ended, refusals
from bench.table import GIVE_UP_SECONDS, render_table
from tests.e2e.backend import Backend
from tests.e2e.harness import (
    EMAIL_DOMAIN,
    REPO,
    Stack,
    credentials_sent,
    python_bin,
    student_phone,
    twilio_params,
)
from tests.e2e.processes import group_cpu_ns, group_cpu_seconds
from tests.e2e.scenario import deployment, phone_columns_holding, unserved
from tests.fakes.coder import FakeCoder
from tests.fakes.twilio import FakeTwilio
from tests.student import credentials_from_sms, log_in

RESULTS = REPO / "bench" / "results"
BENCHMARKS = ("webhook", "burst", "serve", "expiry", "queries", "cleanup")
# cleanup runs `manage.py cleanup` by hand; expiry measures the same work on the app's schedule.
DEFAULT_BENCHMARKS = ("webhook", "burst", "serve", "expiry", "queries")
BACKENDS = ("sqlite", "postgres")
TEMPLATE = "python"
CODER_LATENCY = 0.05
TWILIO_LATENCY = 0.1
# coderd/coderd.go: APIRateLimit defaults to 512 requests a minute (per client and path).
CODER_RATE_LIMIT = 512
# Ample time for the app to start the accounts' clock; the expiry is measured from expires_at.
EXPIRY_LEAD_SECONDS = 20.0
# Classes bigger than the app's default cap of 500 per session (the serve benchmark texts 1000
# into one); --set SESSION_MAX_CAPACITY=... still wins.
BENCH_SETTINGS = {"SESSION_MAX_CAPACITY": "5000"}


@dataclass
class Sizes:
    webhooks: int = 300
    class_webhooks: int = 100
    senders: int = 32
    cpu_samples: int = 100
    students: int = 300
    served: int = 1000
    classes: tuple[int, ...] = (300, 1000)
    cleanup_accounts: int = 1000
    sessions: tuple[int, int] = (10, 1000)
    accounts: int = 100_000


QUICK = Sizes(
    webhooks=100,
    class_webhooks=50,
    cpu_samples=30,
    students=50,
    served=100,
    classes=(50, 100),
    cleanup_accounts=100,
    sessions=(10, 100),
    accounts=10_000,
)


@dataclass
class Config:
    sizes: Sizes
    pg_url: str
    redis_url: str
    web_workers: int
    web_threads: int
    clusters: int
    q_workers: int
    logs: Path
    settings: dict[str, str] = field(default_factory=dict)
    rate_limit: int | None = CODER_RATE_LIMIT

    def backend(self, kind: str, name: str) -> Backend:
        cluster = f"bench-{name}-{os.getpid()}"
        if kind == "sqlite":
            return Backend(f"sqlite:///{self.logs / name}.sqlite3", "", cluster)
        return Backend(f"{self.pg_url.rstrip('/')}/bench_classroom", self.redis_url, cluster)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (p99 of 300 values is the 297th smallest)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


@contextlib.contextmanager
def deployed(
    config: Config,
    kind: str,
    name: str,
    *,
    web: bool = True,
    workers: bool = True,
    **coder_options: Any,
) -> Iterator[Stack]:
    """A fresh deployment: gunicorn, the configured qclusters, slow and rate-limited fakes."""
    coder = FakeCoder(
        latency=CODER_LATENCY, rate_limit_per_minute=config.rate_limit, **coder_options
    )
    coder.add_template(TEMPLATE)
    twilio = FakeTwilio(latency=TWILIO_LATENCY)
    workdir = config.logs / f"{kind}-{name}"
    backend = config.backend(kind, name)
    with deployment(
        workdir,
        coder=coder,
        twilio=twilio,
        backend=backend,
        settings={**BENCH_SETTINGS, **config.settings},
    ) as stack:
        stack.prepare()
        if web:
            stack.start_web(
                workers=config.web_workers, threads=config.web_threads, access_log=False
            )
            warm_up(stack)
        if workers:
            start_workers(config, stack)
        yield stack


def start_workers(config: Config, stack: Stack) -> None:
    for _ in range(config.clusters):
        stack.start_cluster(workers=config.q_workers)


def stop_workers(stack: Stack) -> None:
    clusters = [s for s in stack.services if s.name.startswith("qcluster")]
    for service in clusters:
        service.terminate()  # all at once: each takes seconds to wind down
    for service in clusters:
        stack.stop(service)


def warm_up(stack: Stack) -> None:
    """Let every gunicorn worker import its views and open its database connection."""
    for i in range(20):
        requests.get(stack.base_url + "/healthz", timeout=10)
        stack.post_sms("warm up", student_phone(9900 + i))


def create_open_session(stack: Stack, phrase: str, *options: str) -> int:
    return stack.create_session(phrase, "--capacity", "5000", "--enroll-minutes", "60", *options)


def latency_summary(samples: list[dict[str, Any]]) -> dict[str, Any]:
    latencies = [s["latency"] for s in samples]
    span = max(s["started"] + s["latency"] for s in samples) - min(s["started"] for s in samples)
    return {
        "requests": len(samples),
        "errors": sum(s["status"] != 200 for s in samples),
        "req_per_s": round(len(samples) / span, 1),
        "p50_ms": ms(statistics.median(latencies)),
        "p99_ms": ms(percentile(latencies, 99)),
        "max_ms": ms(max(latencies)),
    }


def web_service(stack: Stack) -> Any:
    return next(s for s in stack.services if s.name.startswith("web"))


# -- webhook ------------------------------------------------------------------------------------


def bench_webhook(config: Config, kind: str) -> dict[str, Any]:
    """A class at once from Twilio's senders while workers run; then, workers stopped, the CPU
    of one webhook at a time and N fired at once. Every webhook recorded, none lost."""
    sizes = config.sizes
    phrase = "bench webhook"
    with deployed(config, kind, "webhook") as stack:
        session_id = create_open_session(stack, phrase, "--template", TEMPLATE)
        senders = stack.burst(phrase, sizes.class_webhooks, concurrency=sizes.senders)
        # Workers provision the class meanwhile, as they would; then they stop for the rest.
        class_phones = [student_phone(i) for i in range(sizes.class_webhooks)]
        class_served = wait_until(
            lambda: credentials_sent(stack.twilio).keys() >= set(class_phones),
            deadline=time.time() + 300,
        )
        stop_workers(stack)
        first = sizes.class_webhooks
        cpu_samples = cpu_per_webhook(stack, phrase, first, sizes.cpu_samples)
        first += sizes.cpu_samples
        floor_samples = cpu_per_request(stack, FLOOR_PATH, sizes.cpu_samples)
        pid = web_service(stack).pid
        cpu = group_cpu_seconds(pid)
        at_once = stack.burst(phrase, sizes.webhooks, first=first)
        cpu = group_cpu_seconds(pid) - cpu
        sent = first + sizes.webhooks
        accounts = stack.db.count("registrations_account", f"session_id = {session_id}")
    return {
        "senders": {"senders": sizes.senders, **latency_summary(senders)},
        "class_served": class_served,
        "at_once": latency_summary(at_once),
        "cpu_ms_median": round(statistics.median(cpu_samples), 2),
        "cpu_ms_p90": round(percentile(cpu_samples, 90), 2),
        "floor_cpu_ms_median": round(statistics.median(floor_samples), 2),
        # The mean over a burst, from clock ticks: includes the cost of queueing under load.
        "cpu_ms_mean_at_once": round(cpu / sizes.webhooks * 1000, 2),
        "lost": sent - accounts,
    }


def cpu_per_webhook(stack: Stack, phrase: str, first: int, count: int) -> list[float]:
    """CPU ms the web processes spent on each of `count` new students, texting one at a time."""
    texts = (partial(stack.post_sms, phrase, student_phone(i)) for i in range(first, first + count))
    return _cpu_per_call(stack, texts)


# Answered 404 by Django's URL resolver: gunicorn and Django's handler and middleware, no view.
FLOOR_PATH = "/twilio/no-such-path/"


def cpu_per_request(stack: Stack, path: str, count: int) -> list[float]:
    """CPU ms the web processes spent on each of `count` POSTs of a Twilio-sized form to `path`:
    with FLOOR_PATH, what any request costs this deployment before a view runs."""
    form = twilio_params("floor", student_phone(0), None, account_sid=stack.twilio.account_sid)
    url = stack.base_url + path
    posts = (partial(requests.post, url, data=form, timeout=15) for _ in range(count))
    return _cpu_per_call(stack, posts, expect=404)


def _cpu_per_call(
    stack: Stack, calls: Iterable[Callable[[], requests.Response]], expect: int = 200
) -> list[float]:
    pid = web_service(stack).pid
    samples = []
    for call in calls:
        before = group_cpu_ns(pid)
        response = call()
        if response.status_code != expect:
            raise AssertionError(f"answered {response.status_code}, not {expect}")
        time.sleep(0.02)  # let the worker thread finish with the connection after answering
        samples.append((group_cpu_ns(pid) - before) / 1e6)
    return samples


# -- burst and serve ----------------------------------------------------------------------------


def bench_burst(config: Config, kind: str) -> dict[str, Any]:
    """A class texts at once; time until the last credentials reach Twilio; all log in."""
    return class_at_once(config, kind, "burst", config.sizes.students)


def bench_serve(config: Config, kind: str) -> dict[str, Any]:
    """A big class texts at once: every student served, creates paced under Coder's limit."""
    return class_at_once(config, kind, "serve", config.sizes.served)


def class_at_once(config: Config, kind: str, name: str, n: int) -> dict[str, Any]:
    phrase = f"bench {name}"
    phones = [student_phone(i) for i in range(n)]
    with deployed(config, kind, name) as stack:
        create_open_session(stack, phrase, "--template", TEMPLATE)
        mark = len(stack.coder.answers)
        samples = stack.burst(phrase, n, timeout=GIVE_UP_SECONDS)
        texted = {s["phone"]: s["at"] for s in samples}
        first_text = min(texted.values())
        # Wait for every student the webhook took: each hears back, credentials or failure.
        answered = [s["phone"] for s in samples if s["status"] == 200]
        heard = wait_until(
            lambda: not unserved(stack.twilio, answered), deadline=first_text + GIVE_UP_SECONDS
        )
        arrived = first_credentials_at(stack.twilio)
        coder = refusals(stack.coder.answers[mark:])
        sent = credentials_sent(stack.twilio)
        logins = count_logins(stack.coder, [sent[p][-1] for p in phones if p in sent])
        statuses = stack.account_statuses()
    waits = [arrived[p] - texted[p] for p in phones if p in arrived]
    return {
        "students": n,
        "webhook": latency_summary(samples),
        "done_seconds": round(max(arrived.values()) - first_text, 1) if heard and arrived else None,
        "gave_up_after_s": None if heard else GIVE_UP_SECONDS,
        "without_credentials": sum(p not in arrived for p in phones),
        "p50_s": round(statistics.median(waits), 2) if waits else None,
        "p99_s": round(percentile(waits, 99), 2) if waits else None,
        "duplicates": sum(len(sent[p]) - 1 for p in phones if p in sent),
        "logins_ok": logins,
        "accounts": statuses,
        **coder,
        "lost": n - logins,
    }


def wait_until(probe: Callable[[], object], *, deadline: float, interval: float = 0.5) -> bool:
    """Poll until `probe` is truthy (True) or the wall clock passes `deadline` (False)."""
    while not probe():
        if time.time() > deadline:
            return False
        time.sleep(interval)
    return True


def first_credentials_at(twilio: FakeTwilio) -> dict[str, float]:
    """Epoch second the first credentials SMS of each phone was accepted (read as a student
    reads it, in whatever language the session texts)."""
    arrived: dict[str, float] = {}
    for message in twilio.messages:
        if message["to"] in arrived:
            continue
        try:
            credentials_from_sms(message["body"])
        except AssertionError:
            continue  # not a credentials SMS
        arrived[message["to"]] = message["date_created"].timestamp()
    return arrived


def count_logins(coder: FakeCoder, credentials: list[tuple[str, str]]) -> int:
    """How many of these (email, password) log in to Coder, as students would.

    Students log in from their own machines, each under its own per-IP limits; this process
    logs them all in from one address, so Coder's rate limits are lifted meanwhile (after the
    app's figures and Coder's refusals were taken).
    """
    limit, coder.rate_limit_per_minute = coder.rate_limit_per_minute, None
    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = pool.map(lambda pair: log_in(coder.url, *pair).status_code, credentials)
            return sum(status == 201 for status in answers)
    finally:
        coder.rate_limit_per_minute = limit


# -- expiry -------------------------------------------------------------------------------------


def seed_coder_users(coder: FakeCoder, n: int) -> list[tuple[str, str]]:
    """n users of ours, each with one running workspace, as provisioning would leave them."""
    template_id = coder.add_template("bench-seed")["id"]
    latency, coder.latency = coder.latency, 0.0
    session = requests.Session()
    session.headers["Coder-Session-Token"] = coder.token
    users = []
    try:
        for i in range(n):
            name = f"bench-{i}"
            user = coder.add_user(name, email=f"{name}@{EMAIL_DOMAIN}")
            response = session.post(
                f"{coder.url}/api/v2/users/{name}/workspaces",
                json={"name": "lab", "template_id": template_id},
                timeout=10,
            )
            response.raise_for_status()
            users.append((name, user["id"]))
    finally:
        coder.latency = latency
    return users


def bench_expiry(config: Config, kind: str) -> dict[str, Any]:
    """Classes whose active accounts expire on the app's own schedule, one class per size."""
    classes = {str(n): expire_class(config, kind, n) for n in config.sizes.classes}
    return {"classes": classes, "lost": sum(c["lost"] for c in classes.values())}


def expire_class(config: Config, kind: str, n: int) -> dict[str, Any]:
    """n active accounts, one workspace each, expiring shortly with the workers up; from the
    session's expires_at: when each student's access ended (Coder answered their suspension),
    and when Coder held nothing of theirs and the database no phone number."""
    # Delete builds take a few seconds, as on a real Coder (not a number of polls).
    with deployed(
        config, kind, f"expiry-{n}", web=False, build_polls=None, build_seconds=3
    ) as stack:
        users = seed_coder_users(stack.coder, n)
        users_file = stack.workdir / "users.json"
        users_file.write_text(json.dumps(users))
        mark = len(stack.coder.answers)
        expires_at = time.time() + EXPIRY_LEAD_SECONDS
        probe(stack, "seed-expiring", str(users_file), "--expires-at", f"{expires_at:.3f}")
        seeded_late = max(0.0, time.time() - expires_at)
        timeline = watch_expiry(stack, n, expires_at)
        answers = stack.coder.answers[mark:]
        users_left, workspaces_left = stack.coder.live_counts(EMAIL_DOMAIN)
        phones = phone_columns_holding(stack, [student_phone(i) for i in range(n)])
        statuses = stack.account_statuses()
    return {
        "accounts": n,
        "seeded_late_s": round(seeded_late, 1),
        **access_summary(access_ended(answers, users), users, expires_at, timeline),
        **timeline,
        "users_left": users_left,
        "workspaces_left": workspaces_left,
        "phones_left": sum(phones.values()),
        "accounts_by_status": statuses,
        "coder_requests": len(answers),
        **refusals(answers),
        "lost": 0,  # nothing to lose here: what is left is reported, and fails the targets
    }


def watch_expiry(stack: Stack, n: int, expires_at: float) -> dict[str, float | None]:
    """Seconds after expires_at when Coder had no workspace of ours, no user of ours, and the
    database no phone number of these students (None: not by the give-up time)."""
    phones = [student_phone(i) for i in range(n)]
    deadline = expires_at + GIVE_UP_SECONDS
    seen: dict[str, float | None] = dict.fromkeys(
        ("workspaces_gone_s", "users_gone_s", "phones_gone_s")
    )
    while time.time() <= deadline and seen["phones_gone_s"] is None:
        users, workspaces = stack.coder.live_counts(EMAIL_DOMAIN)
        now = time.time()
        for key, left in (("workspaces_gone_s", workspaces), ("users_gone_s", users)):
            if seen[key] is None and not left:
                seen[key] = round(now - expires_at, 1)
        # The database is read only once Coder is empty: polling it costs the app's CPU.
        if not users and not workspaces and not phone_columns_holding(stack, phones):
            seen["phones_gone_s"] = round(time.time() - expires_at, 1)
        time.sleep(1)
    known = [v for v in seen.values() if v is not None]
    done = max(known) if len(known) == len(seen) else None
    return {**seen, "nothing_left_s": done}


def access_summary(
    ended: dict[str, float],
    users: list[tuple[str, str]],
    expires_at: float,
    timeline: dict[str, float | None],
) -> dict[str, Any]:
    """p50/p99/max of the time from expiry to each student's access ending; a student whose
    access never ended counts as the give-up time."""
    took = [at - expires_at for at in ended.values()]
    waits = took + [GIVE_UP_SECONDS] * (len(users) - len(ended))
    workspaces_gone = timeline["workspaces_gone_s"]
    return {
        "access_p50_s": round(statistics.median(waits), 1),
        "access_p99_s": round(percentile(waits, 99), 1),
        "access_max_s": round(max(waits), 1),
        "access_not_ended": len(users) - len(ended),
        # A student cut off before the session's end is a bug as much as one cut off late.
        "access_ended_before_expiry": sum(t < 0 for t in took),
        # Suspended while workspace deletion was still going on (not queued behind it).
        "access_ended_before_workspaces_gone": sum(
            workspaces_gone is None or t < workspaces_gone for t in took
        ),
    }


# -- cleanup (by hand) and queries --------------------------------------------------------------


def bench_cleanup(config: Config, kind: str) -> dict[str, Any]:
    """N expired accounts with a workspace each; `manage.py cleanup`; time until Coder has
    nothing of ours."""
    n = config.sizes.cleanup_accounts
    with deployed(
        config, kind, "cleanup", web=False, workers=False, build_polls=None, build_seconds=3
    ) as stack:
        users = seed_coder_users(stack.coder, n)
        users_file = stack.workdir / "users.json"
        users_file.write_text(json.dumps(users))
        probe(stack, "seed-expired", str(users_file))
        start_workers(config, stack)
        mark = len(stack.coder.answers)
        started = time.time()
        stack.manage("cleanup")
        emptied = wait_until(
            lambda: stack.coder.live_counts(EMAIL_DOMAIN) == (0, 0),
            deadline=started + GIVE_UP_SECONDS,
        )
        done = time.time() - started
        answers = stack.coder.answers[mark:]
        users_left, workspaces_left = stack.coder.live_counts(EMAIL_DOMAIN)
        phones = phone_columns_holding(stack, [student_phone(i) for i in range(n)])
    return {
        "accounts": n,
        "done_seconds": round(done, 1) if emptied else None,
        "coder_requests": len(answers),
        "coder_requests_per_account": round(len(answers) / n, 1),
        **refusals(answers),
        "users_left": users_left,
        "workspaces_left": workspaces_left,
        "phones_left": phones.get("registrations_account.phone", 0),
        "lost": 0,
    }


def bench_queries(config: Config, kind: str) -> dict[str, Any]:
    """Queries per webhook with few sessions, then with many sessions and accounts."""
    small, large = config.sizes.sessions
    with deployed(config, kind, "queries", web=False, workers=False) as stack:
        return probe(
            stack,
            "queries",
            "--sessions",
            str(small),
            "--more-sessions",
            str(large - small),
            "--accounts",
            str(config.sizes.accounts),
        )


def probe(stack: Stack, *args: str) -> dict[str, Any]:
    """Run bench/probe.py in the deployment's environment and return its JSON."""
    result = subprocess.run(
        [python_bin(), "-m", "bench.probe", *args],
        cwd=REPO,
        env={**stack.env(), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=1800,
    )
    if result.returncode != 0:
        raise RuntimeError(f"bench.probe {args[0]} failed:\n{result.stdout}\n{result.stderr}")
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


RUNNERS: dict[str, Callable[[Config, str], dict[str, Any]]] = {
    "webhook": bench_webhook,
    "burst": bench_burst,
    "serve": bench_serve,
    "expiry": bench_expiry,
    "queries": bench_queries,
    "cleanup": bench_cleanup,
}


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory": memory,
        "python": platform.python_version(),
        "os": platform.platform(),
        "postgresql": _version(["psql", "--version"]),
        "redis": _version(["redis-server", "--version"]),
    }


def _version(argv: list[str]) -> str:
    if not shutil.which(argv[0]):
        return ""
    return subprocess.run(argv, capture_output=True, text=True).stdout.strip()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "benchmarks",
        nargs="*",
        help=f"any of {', '.join(BENCHMARKS)} (default: {', '.join(DEFAULT_BENCHMARKS)})",
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--backend", choices=[*BACKENDS, "all"], default="all")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432"),
        help="PostgreSQL server; the database bench_classroom is created and dropped",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"),
        help="Redis database for the broker (only this run's keys are touched)",
    )
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn processes")
    parser.add_argument("--web-threads", type=int, default=4, help="threads per gunicorn process")
    parser.add_argument(
        "--clusters", type=int, default=1, help="qcluster processes (make run starts one)"
    )
    parser.add_argument(
        "--q-workers", type=int, default=16, help="worker processes per qcluster (Q_WORKERS)"
    )
    limits = parser.add_mutually_exclusive_group()
    limits.add_argument(
        "--no-rate-limit",
        action="store_true",
        help="a fake Coder without its API rate limit",
    )
    limits.add_argument(
        "--coder-rate-limit",
        type=int,
        default=CODER_RATE_LIMIT,
        metavar="N",
        help="the fake Coder's API limit per client and path, a minute (default: "
        f"{CODER_RATE_LIMIT}, coderd's; lower it to see a small class against the limit)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an app setting for every process (repeatable), e.g. CLEANUP_BATCH_SIZE=500",
    )
    args = parser.parse_args(argv)
    unknown = set(args.benchmarks) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark {', '.join(sorted(unknown))}; choose from {BENCHMARKS}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix=f"bench-{stamp}-", dir=RESULTS))
    config = Config(
        sizes=QUICK if args.quick else Sizes(),
        pg_url=args.pg_url,
        redis_url=args.redis_url,
        web_workers=args.web_workers,
        web_threads=args.web_threads,
        clusters=args.clusters,
        q_workers=args.q_workers,
        logs=logs,
        settings=dict(item.split("=", 1) for item in args.set),
        rate_limit=None if args.no_rate_limit else args.coder_rate_limit,
    )
    backends = BACKENDS if args.backend == "all" else (args.backend,)
    benchmarks = args.benchmarks or list(DEFAULT_BENCHMARKS)
    report: dict[str, Any] = {
        "started": stamp,
        "command": "bench/run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "config": {
            "sizes": config.sizes.__dict__,
            "web": f"{config.web_workers} gunicorn processes x {config.web_threads} threads",
            "workers": f"{config.clusters} qcluster x {config.q_workers} workers",
            "coder_latency_s": CODER_LATENCY,
            "coder_rate_limit_per_minute": config.rate_limit,
            "twilio_latency_s": TWILIO_LATENCY,
            "give_up_s": GIVE_UP_SECONDS,
            "settings": config.settings,
        },
        "labels": {"sqlite": "sqlite + orm broker", "postgres": "postgresql + redis"},
        "results": {},
        "logs": str(logs),
    }
    for kind in backends:
        results = report["results"].setdefault(kind, {})
        for bench in benchmarks:
            print(f"== {bench} on {report['labels'][kind]}", file=sys.stderr, flush=True)
            started = time.monotonic()
            try:
                results[bench] = RUNNERS[bench](config, kind)
            except Exception:
                results[bench] = {"error": traceback.format_exc()}
                print(results[bench]["error"], file=sys.stderr)
            results[bench]["seconds"] = round(time.monotonic() - started, 1)
            print(json.dumps(results[bench]), file=sys.stderr, flush=True)
    out = RESULTS / f"bench-{stamp}.json"
    out.write_text(json.dumps(report, indent=2))
    print(render_table(report, config.sizes))
    rate = f"Coder limit {config.rate_limit}/min" if config.rate_limit else "no Coder rate limit"
    print(
        f"\nMachine: {report['machine']['cores']} cores, {report['machine']['cpu']}; "
        f"{report['config']['web']}; {report['config']['workers']}; {rate}."
    )
    print(f"Results: {out.relative_to(REPO)}  (logs: {logs.relative_to(REPO)})")
    failed = any("error" in r for b in report["results"].values() for r in b.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
