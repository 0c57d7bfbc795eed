"""The table bench/run prints: each target beside its figure on each backend, with ✔ or ✘.

A figure a benchmark gave up on (None) reads "> 900 s" and fails its target; a row without a
target (a figure shown for context) has no mark.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bench.main import Sizes

# A measurement still unfinished after this long is reported as "> 900 s", not waited for.
GIVE_UP_SECONDS = 900.0
PASS, FAIL = "✔", "✘"

# (text, passed): passed is None for a figure without a target on that backend.
Cell = tuple[str, bool | None]


@dataclass
class Row:
    bench: str
    figure: str
    target: str
    # Renders the figure from this benchmark's result on one backend ("sqlite", "postgres").
    render: Callable[[dict[str, Any], str], Cell]


def seconds(value: float | None) -> str:
    return f"> {GIVE_UP_SECONDS:.0f} s" if value is None else f"{value} s"


def at_most(value: float | None, limit: float) -> bool:
    return value is not None and value <= limit


def webhook_rows(sizes: Sizes) -> list[Row]:
    return [
        Row(
            "webhook",
            "web CPU per webhook, median (sequential)",
            "≤ 3 ms",
            lambda r, k: (f"{r['cpu_ms_median']} ms", r["cpu_ms_median"] <= 3),
        ),
        Row(
            "webhook",
            "  same for a 404 (gunicorn + Django, no view)",
            "",
            lambda r, k: (_floor(r), None),
        ),
        Row(
            "webhook",
            f"{sizes.class_webhooks} students at once from {sizes.senders} senders: p99",
            "≤ 150 ms (goal 60)",
            lambda r, k: (f"{r['senders']['p99_ms']} ms", r["senders"]["p99_ms"] <= 150),
        ),
        Row(
            "webhook",
            "  same: p50 / max, errors",
            "",
            lambda r, k: (f"{_p50_max(r['senders'])}, {r['senders']['errors']} errors", None),
        ),
        Row(
            "webhook",
            f"{sizes.webhooks} fired at once (workers stopped)",
            "≥ 250 req/s (pg)",
            lambda r, k: (
                f"{r['at_once']['req_per_s']} req/s",
                r["at_once"]["req_per_s"] >= 250 if k == "postgres" else None,
            ),
        ),
        Row(
            "webhook",
            "  same: p50 / max; mean web CPU",
            "",
            lambda r, k: (f"{_p50_max(r['at_once'])}; {r['cpu_ms_mean_at_once']} ms", None),
        ),
    ]


def _floor(result: dict[str, Any]) -> str:
    # Results written before the floor was measured lack it.
    floor = result.get("floor_cpu_ms_median")
    return "-" if floor is None else f"{floor} ms"


def _p50_max(summary: dict[str, Any]) -> str:
    return f"{summary['p50_ms']} / {summary['max_ms']} ms"


def class_rows(bench: str, n: int, target: str, limits: dict[str, float] | None) -> list[Row]:
    """Rows of a class texting at once (burst, serve): `limits` on the last credentials."""

    def done(r: dict[str, Any], kind: str) -> Cell:
        ok = at_most(r["done_seconds"], limits[kind]) if limits else r["done_seconds"] is not None
        return seconds(r["done_seconds"]), ok

    return [
        Row(bench, f"{n} text at once: last credentials after", target, done),
        Row(
            bench,
            "  students without credentials / logged in",
            f"0 / {n}",
            lambda r, k: (
                f"{r['without_credentials']} / {r['logins_ok']}",
                r["without_credentials"] == 0 and r["logins_ok"] == n,
            ),
        ),
        Row(
            bench,
            "  per student p50 / p99",
            "",
            lambda r, k: (f"{r['p50_s']} / {r['p99_s']} s", None),
        ),
        Row(bench, "  Coder: 429s / other 4xx", "0 / 0", refused),
    ]


def refused(r: dict[str, Any], kind: str) -> Cell:
    limited, other = r["rate_limited_429"], r["other_4xx"]
    return f"{limited} / {other}", limited == 0 and other == 0


def expiry_rows(sizes: Sizes) -> list[Row]:
    rows = []
    for n in sizes.classes:
        # Targets: a class of 300 gone within 3 minutes of expiry, one of 1000 within 6.
        limit = 180 if n <= 300 else 360
        of_class = class_picker(n)
        rows += [
            Row(
                "expiry",
                f"class of {n}: access ended p50 / p99 / max",
                "all ≤ 60 s",
                of_class(access),
            ),
            Row(
                "expiry",
                f"class of {n}: nothing left (users, workspaces, phones)",
                f"≤ {limit} s",
                of_class(nothing_left(limit)),
            ),
            Row(
                "expiry",
                "  suspended while workspaces were being deleted",
                "",
                of_class(suspended_early),
            ),
            Row(
                "expiry",
                f"class of {n}: Coder 429s / other 4xx",
                "0 / 0",
                of_class(refused_in_class),
            ),
        ]
    return rows


def class_picker(n: int) -> Callable[[Callable[[dict[str, Any]], Cell]], Callable[..., Cell]]:
    """Render one class's part of the expiry result."""

    def pick(render: Callable[[dict[str, Any]], Cell]) -> Callable[..., Cell]:
        return lambda result, kind: render(result["classes"][str(n)])

    return pick


def access(c: dict[str, Any]) -> Cell:
    # A student whose access never ended counts as the give-up time: shown as "> 900".
    figures = [c[f"access_{p}_s"] for p in ("p50", "p99", "max")]
    text = " / ".join(f"> {v:.0f}" if v >= GIVE_UP_SECONDS else f"{v}" for v in figures) + " s"
    if c["access_not_ended"]:
        text += f" ({c['access_not_ended']} never)"
    if c["access_ended_before_expiry"]:
        text += f" ({c['access_ended_before_expiry']} before expiry)"
    on_time = c["access_not_ended"] == 0 and c["access_ended_before_expiry"] == 0
    return text, on_time and c["access_max_s"] <= 60


def nothing_left(limit: float) -> Callable[[dict[str, Any]], Cell]:
    return lambda c: (seconds(c["nothing_left_s"]), at_most(c["nothing_left_s"], limit))


def suspended_early(c: dict[str, Any]) -> Cell:
    return f"{c['access_ended_before_workspaces_gone']} / {c['accounts']}", None


def refused_in_class(c: dict[str, Any]) -> Cell:
    return refused(c, "")


def queries_row(sizes: Sizes) -> Row:
    small, large = sizes.sessions

    def render(r: dict[str, Any], kind: str) -> Cell:
        counts = [f"{v['queries']}/{r['large'][k]['queries']}" for k, v in r["small"].items()]
        most = max(max(v["queries"], r["large"][k]["queries"]) for k, v in r["small"].items())
        same = "same" if r["identical"] else "DIFFERENT"
        return " ".join(counts) + f" {same}", r["identical"] and most <= 6

    return Row("queries", f"per webhook path, {small} vs {large} sessions*", "≤ 6, same", render)


def cleanup_rows(sizes: Sizes) -> list[Row]:
    n = sizes.cleanup_accounts
    return [
        Row(
            "cleanup",
            f"{n} expired, `manage.py cleanup`: Coder empty after",
            "",
            lambda r, k: (seconds(r["done_seconds"]), None),
        ),
        Row("cleanup", "  Coder: 429s / other 4xx", "0 / 0", refused),
    ]


def table_rows(sizes: Sizes) -> list[Row]:
    return [
        queries_row(sizes),
        *webhook_rows(sizes),
        *class_rows("burst", sizes.students, "≤ 12 s / ≤ 6 s (pg)", {"sqlite": 12, "postgres": 6}),
        *class_rows("serve", sizes.served, "all served (paced)", None),
        *expiry_rows(sizes),
        *cleanup_rows(sizes),
    ]


def cell(results: dict[str, Any], kind: str, row: Row) -> str:
    result = results.get(row.bench)
    if result is None:
        return "-"
    if "error" in result:
        last_line: str = result["error"].strip().splitlines()[-1]
        return "FAILED: " + last_line[:40]
    try:
        text, ok = row.render(result, kind)
    except (KeyError, TypeError) as exc:
        return f"? ({type(exc).__name__}: {exc})"
    return text if ok is None else f"{text} {PASS if ok else FAIL}"


def errors_cell(results: dict[str, Any]) -> str:
    failed = sum("error" in r for r in results.values())
    lost = sum(r.get("lost", 0) for r in results.values() if "error" not in r)
    errors = sum(
        r[key]["errors"]
        for r in results.values()
        for key in ("senders", "at_once", "webhook")
        if key in r
    )
    mark = PASS if not (failed or lost or errors) else FAIL
    return f"{errors} errors, {lost} lost" + (f", {failed} FAILED" if failed else "") + f" {mark}"


def render_table(report: dict[str, Any], sizes: Sizes) -> str:
    backends = list(report["results"])
    ran = {bench for kind in backends for bench in report["results"][kind]}
    header = ["benchmark", "figure", "target", *[report["labels"][b] for b in backends]]
    rows = [header]
    for row in table_rows(sizes):
        if row.bench in ran:
            rows.append(
                [row.bench, row.figure, row.target]
                + [cell(report["results"][b], b, row) for b in backends]
            )
    rows.append(
        ["all", "webhook errors / lost students", "0 / 0"]
        + [errors_cell(report["results"][b]) for b in backends]
    )
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if "queries" in ran:
        small, large = sizes.sessions
        lines.append(
            "* queries per webhook (new student, same MessageSid, enrolled phone again, unknown "
            f"phrase) with {small} sessions vs {large} sessions + {sizes.accounts:,} accounts"
        )
    return "\n".join(lines)
