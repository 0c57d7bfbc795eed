"""The four benchmarks of the whole system, on SQLite + ORM broker and on PostgreSQL + Redis.

Each starts a fresh deployment (gunicorn and qcluster subprocesses, fake Coder at 50 ms and fake
Twilio at 100 ms in this process), measures, checks that nothing was lost, and tears it down.
Prints a table against the targets and writes everything to bench/results/bench-<time>.json.

    bench/run                          # all four, both backends
    bench/run --quick                  # smaller sizes, for a smoke run
    bench/run burst --backend postgres # one benchmark, one backend
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from tests.e2e.backend import Backend
from tests.e2e.harness import (
    EMAIL_DOMAIN,
    REPO,
    Stack,
    credentials_sent,
    python_bin,
    student_phone,
    wait_for,
)
from tests.e2e.processes import group_cpu_seconds
from tests.e2e.scenario import deployment, phone_columns_holding
from tests.fakes.coder import FakeCoder
from tests.fakes.twilio import FakeTwilio
from tests.student import log_in

RESULTS = REPO / "bench" / "results"
BENCHMARKS = ("webhook", "burst", "cleanup", "queries")
BACKENDS = ("sqlite", "postgres")
TEMPLATE = "python"
CODER_LATENCY = 0.05
TWILIO_LATENCY = 0.1


@dataclass
class Sizes:
    webhooks: int = 300
    webhook_rate: float = 300.0
    students: int = 300
    burst_seconds: float = 10.0
    cleanup_accounts: int = 1000
    sessions: tuple[int, int] = (10, 1000)
    accounts: int = 100_000


QUICK = Sizes(
    webhooks=100,
    webhook_rate=300.0,
    students=100,
    burst_seconds=5.0,
    cleanup_accounts=200,
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
    """A fresh deployment: 2 gunicorn processes, the configured qclusters, slow fakes."""
    coder = FakeCoder(latency=CODER_LATENCY, **coder_options)
    coder.add_template(TEMPLATE)
    twilio = FakeTwilio(latency=TWILIO_LATENCY)
    workdir = config.logs / f"{kind}-{name}"
    backend = config.backend(kind, name)
    with deployment(
        workdir, coder=coder, twilio=twilio, backend=backend, settings=config.settings
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


def bench_webhook(config: Config, kind: str) -> dict[str, Any]:
    """N signed webhooks all at once, then N at a steady N/s; every one recorded, none lost."""
    n = config.sizes.webhooks
    with deployed(config, kind, "webhook", workers=False) as stack:
        web = next(s for s in stack.services if s.name.startswith("web"))
        session_id = create_open_session(stack, "bench webhook")
        cpu = group_cpu_seconds(web.pid)
        at_once = stack.burst("bench webhook", n)
        paced = stack.burst("bench webhook", n, first=n, rate=config.sizes.webhook_rate)
        cpu = group_cpu_seconds(web.pid) - cpu
        steps, sent = rate_steps(stack, "bench webhook", first=2 * n)
        accounts = stack.db.count("registrations_account", f"session_id = {session_id}")
    return {
        "at_once": latency_summary(at_once),
        "paced": {"rate": config.sizes.webhook_rate, **latency_summary(paced)},
        "steps": steps,
        "max_rate_p99_under_50ms": max(
            (step["rate"] for step in steps if step["p99_ms"] < 50), default=0
        ),
        # CPU the web processes spent per webhook: steadier than latency on a shared machine.
        "web_cpu_ms_per_request": round(cpu / (2 * n) * 1000, 2),
        "lost": 2 * n + sent - accounts,
        "workers_running": False,
    }


STEP_RATES = (25, 50, 75, 100, 150, 200, 300)


def rate_steps(stack: Stack, phrase: str, first: int) -> tuple[list[dict[str, Any]], int]:
    """Webhooks at rising steady rates (3 s each) until p99 passes 50 ms; return the steps."""
    steps, sent = [], 0
    for rate in STEP_RATES:
        count = rate * 3
        samples = stack.burst(phrase, count, first=first + sent, rate=rate)
        sent += count
        steps.append({"rate": rate, **latency_summary(samples)})
        if steps[-1]["p99_ms"] >= 50:
            break
    return steps, sent


def bench_burst(config: Config, kind: str) -> dict[str, Any]:
    """Students text within a few seconds; time until the last credentials reach Twilio."""
    n, seconds = config.sizes.students, config.sizes.burst_seconds
    with deployed(config, kind, "burst") as stack:
        create_open_session(stack, "bench burst", "--template", TEMPLATE)
        phones = [student_phone(i) for i in range(n)]
        samples = stack.burst("bench burst", n, rate=n / seconds)
        texted = {s["phone"]: s["at"] for s in samples}
        wait_for(
            lambda: credentials_sent(stack.twilio).keys() >= set(phones),
            timeout=600,
            interval=0.2,
            what="credentials for every student",
        )
        arrived = first_credentials_at(stack.twilio)
        waits = [arrived[p] - texted[p] for p in phones]
        sent = credentials_sent(stack.twilio)
        logins = sum(log_in(stack.coder.url, *sent[p][-1]).status_code == 201 for p in phones)
        statuses = stack.account_statuses()
    return {
        "students": n,
        "texting_seconds": seconds,
        "webhook": latency_summary(samples),
        "done_seconds": round(max(arrived.values()) - min(texted.values()), 1),
        "p50_s": round(statistics.median(waits), 2),
        "p99_s": round(percentile(waits, 99), 2),
        "duplicates": sum(len(sent[p]) - 1 for p in phones),
        "logins_ok": logins,
        "accounts": statuses,
        "lost": n - logins,
    }


def first_credentials_at(twilio: FakeTwilio) -> dict[str, float]:
    """Epoch second the first credentials SMS of each phone was accepted."""
    arrived: dict[str, float] = {}
    for message in twilio.messages:
        if "Pass" in message["body"] and message["to"] not in arrived:
            arrived[message["to"]] = message["date_created"].timestamp()
    return arrived


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


def bench_cleanup(config: Config, kind: str) -> dict[str, Any]:
    """N expired accounts with a workspace each; time until Coder has nothing of ours."""
    n = config.sizes.cleanup_accounts
    # Delete builds take a few seconds, as on a real Coder (not a number of polls).
    with deployed(
        config, kind, "cleanup", web=False, workers=False, build_polls=None, build_seconds=3
    ) as stack:
        users = seed_coder_users(stack.coder, n)
        users_file = stack.workdir / "users.json"
        users_file.write_text(json.dumps(users))
        probe(stack, "seed-expired", str(users_file))
        start_workers(config, stack)
        requests_before = len(stack.coder.requests_log)
        started = time.monotonic()
        stack.manage("cleanup")
        wait_for(
            lambda: not stack.coder.live_users(EMAIL_DOMAIN),
            timeout=1800,
            interval=0.5,
            what="Coder to have no user of ours",
        )
        done = time.monotonic() - started
        wait_for(
            lambda: stack.account_statuses() == {"deleted": n},
            timeout=120,
            what="every account marked deleted",
        )
        workspaces = sum(len(stack.coder.workspaces_of(name)) for name, _ in users)
        phones = phone_columns_holding(stack, [student_phone(i) for i in range(n)])
        coder_requests = len(stack.coder.requests_log) - requests_before
    return {
        "accounts": n,
        "done_seconds": round(done, 1),
        "coder_requests": coder_requests,
        "coder_requests_per_account": round(coder_requests / n, 1),
        "workspaces_left": workspaces,
        "phones_left": phones.get("registrations_account.phone", 0),
        "lost": workspaces,
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
    return json.loads(result.stdout)


RUNNERS: dict[str, Callable[[Config, str], dict[str, Any]]] = {
    "webhook": bench_webhook,
    "burst": bench_burst,
    "cleanup": bench_cleanup,
    "queries": bench_queries,
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


def _cell(results: dict[str, Any], bench: str, render: Callable[[dict[str, Any]], str]) -> str:
    result = results.get(bench)
    if result is None:
        return "-"
    if "error" in result:
        return "FAILED: " + result["error"].splitlines()[-1][:40]
    return render(result)


def _queries(result: dict[str, Any]) -> str:
    pairs = [f"{v['queries']}/{result['large'][k]['queries']}" for k, v in result["small"].items()]
    return " ".join(pairs) + (" same" if result["identical"] else " DIFFERENT")


def table_rows(sizes: Sizes) -> list[tuple[str, str, str, Callable[[dict[str, Any]], str]]]:
    """(benchmark, figure, target, how to render it from that benchmark's result)."""
    n, rate = sizes.webhooks, f"{sizes.webhook_rate:.0f}/s"
    small, large = sizes.sessions
    return [
        ("webhook", f"{n} at once: req/s", ">= 300 (pg)", lambda r: f"{r['at_once']['req_per_s']}"),
        ("webhook", f"{n} at once: p50 / p99 ms", "", lambda r: _p(r["at_once"], "ms")),
        ("webhook", f"at {rate}: p50 / p99 ms", "p99 < 50 (pg)", lambda r: _p(r["paced"], "ms")),
        ("webhook", "web CPU per webhook ms", "", lambda r: f"{r['web_cpu_ms_per_request']}"),
        (
            "webhook",
            "highest steady rate with p99 < 50 ms",
            ">= 300/s (pg)",
            lambda r: f"{r['max_rate_p99_under_50ms']}/s",
        ),
        (
            "burst",
            f"{sizes.students} in {sizes.burst_seconds:.0f} s: last SMS after s",
            "< 60 / < 20 (pg)",
            lambda r: f"{r['done_seconds']}",
        ),
        ("burst", "per student p50 / p99 s", "", lambda r: f"{r['p50_s']} / {r['p99_s']}"),
        ("burst", "webhook p50 / p99 ms meanwhile", "", lambda r: _p(r["webhook"], "ms")),
        (
            "cleanup",
            f"{sizes.cleanup_accounts} accounts: Coder empty after s",
            "< 120",
            lambda r: f"{r['done_seconds']}",
        ),
        (
            "cleanup",
            "Coder requests per account",
            "",
            lambda r: f"{r['coder_requests_per_account']}",
        ),
        (
            "queries",
            f"per webhook, {small} vs {large} sessions*",
            "identical",
            _queries,
        ),
    ]


def _p(summary: dict[str, Any], unit: str) -> str:
    return f"{summary['p50_' + unit]} / {summary['p99_' + unit]}"


def errors_cell(results: dict[str, Any]) -> str:
    failed = sum("error" in r for r in results.values())
    lost = sum(r.get("lost", 0) for r in results.values() if "error" not in r)
    errors = sum(
        r[key]["errors"]
        for r in results.values()
        for key in ("at_once", "paced", "webhook")
        if key in r
    )
    return f"{errors} errors, {lost} lost" + (f", {failed} FAILED" if failed else "")


def render_table(report: dict[str, Any], sizes: Sizes) -> str:
    backends = list(report["results"])
    header = ["benchmark", "figure", "target", *[report["labels"][b] for b in backends]]
    rows = [header]
    for bench, figure, target, render in table_rows(sizes):
        rows.append(
            [bench, figure, target, *[_cell(report["results"][b], bench, render) for b in backends]]
        )
    rows.append(
        ["all", "errors / lost", "0", *[errors_cell(report["results"][b]) for b in backends]]
    )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(
        "* queries per webhook (new student, same MessageSid, enrolled phone again, unknown "
        f"phrase) with {small_large(sizes)}"
    )
    return "\n".join(lines)


def small_large(sizes: Sizes) -> str:
    small, large = sizes.sessions
    return f"{small} sessions vs {large} sessions + {sizes.accounts:,} accounts"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "benchmarks", nargs="*", help=f"any of {', '.join(BENCHMARKS)} (default: all)"
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
    parser.add_argument("--clusters", type=int, default=2, help="qcluster processes")
    parser.add_argument("--q-workers", type=int, default=2, help="worker processes per qcluster")
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
    )
    backends = BACKENDS if args.backend == "all" else (args.backend,)
    benchmarks = args.benchmarks or list(BENCHMARKS)
    report: dict[str, Any] = {
        "started": stamp,
        "command": "bench/run " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "config": {
            "sizes": config.sizes.__dict__,
            "web": f"{config.web_workers} gunicorn processes x {config.web_threads} threads",
            "workers": f"{config.clusters} qcluster x {config.q_workers} workers",
            "coder_latency_s": CODER_LATENCY,
            "twilio_latency_s": TWILIO_LATENCY,
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
    print(
        f"\nMachine: {report['machine']['cores']} cores, {report['machine']['cpu']}; "
        f"{report['config']['web']}; {report['config']['workers']}."
    )
    print(f"Results: {out.relative_to(REPO)}  (logs: {logs.relative_to(REPO)})")
    failed = any("error" in r for b in report["results"].values() for r in b.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
