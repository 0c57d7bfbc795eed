"""Prometheus metrics for /metrics, computed from the database when they are scraped.

Web and worker processes run on several machines, and a scrape reaches one web process only:
counters kept in process memory would each see a fraction of the work. So every figure here
is read from the rows (and the broker) at scrape time, which every process shares, in a fixed
handful of aggregate queries whatever the number of rows:

- texts received by outcome: a true counter, because retention adds the rows it deletes to
  UsageStat (`inbound_<outcome>`) in the same transaction, and one query reads both;
- accounts by status; accounts whose last step left an error, by kind; SMS that Twilio
  refused or failed, by status and error code (over the retained message log): gauges;
- time from the text to the credentials SMS, and from expiry to suspension, for the accounts
  that got there in the last hour: gauge histograms (a window, not since forever, so they
  describe now; use them without rate());
- the task queue's depth and the worker heartbeat's age.
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import (
    Case,
    CharField,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    Q,
    QuerySet,
    Sum,
    Value,
    When,
)
from django.http import Http404, HttpRequest, HttpResponse
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from registrations.health import check_worker
from registrations.models import (
    Account,
    AccountStatus,
    DeletionReason,
    InboundMessage,
    InboundOutcome,
    OutboundMessage,
    OutboundStatus,
    UsageStat,
)

logger = logging.getLogger(__name__)

PREFIX = "classroom_sms_"
# The histograms describe accounts that reached the end point this recently.
WINDOW = timedelta(hours=1)
# Students wait for the SMS: seconds are what matters, minutes mean trouble.
CREDENTIALS_BUCKETS = (5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600)
# The scheduler runs the every-minute expire job 30-90 s late, and cleanup is paced in batches.
SUSPENSION_BUCKETS = (60, 90, 120, 180, 300, 600, 900, 1800, 3600)
# Account.last_error is prose; these are the shapes coder.CoderError and the outbox give it.
# The first that matches names the kind.
ERROR_KINDS: tuple[tuple[str, Q], ...] = (
    ("coder_unreachable", Q(last_error__contains="-> no response")),
    ("coder_rejected_token", Q(last_error__contains="-> 401") | Q(last_error__contains="-> 403")),
    ("coder_rate_limited", Q(last_error__contains="-> 429")),
    ("coder_server_error", Q(last_error__contains="-> 5")),
    ("coder_other", Q(last_error__contains="Coder")),
    ("sms_not_sent", Q(last_error__contains="SMS")),
)
SMS_FAILED_STATUSES = (OutboundStatus.FAILED, OutboundStatus.UNDELIVERED)


def texts_received() -> Metric:
    """Count every text ever received, by outcome (live rows plus those retention rolled up)."""
    live = InboundMessage.objects.order_by().values_list("outcome").annotate(n=Count("pk"))
    rolled_up = (
        UsageStat.objects.filter(metric__startswith="inbound_")
        .order_by()
        .values_list("metric")
        .annotate(n=Sum("count"))
    )
    # One statement, so a retention run committing meanwhile is seen wholly or not at all.
    counts = dict.fromkeys(InboundOutcome.values, 0)
    for name, n in live.union(rolled_up, all=True):
        outcome = name.removeprefix("inbound_")
        counts[outcome] = counts.get(outcome, 0) + (n or 0)
    metric = CounterMetricFamily(
        PREFIX + "texts_received", "Texts received, by outcome.", labels=["outcome"]
    )
    for outcome, n in sorted(counts.items()):
        metric.add_metric([outcome], n)
    return metric


def accounts_by_status() -> Metric:
    counts = dict.fromkeys(AccountStatus.values, 0)
    rows = Account.objects.order_by().values_list("status").annotate(n=Count("pk"))
    counts.update(dict(rows))
    metric = GaugeMetricFamily(PREFIX + "accounts", "Accounts, by status.", labels=["status"])
    for status, n in sorted(counts.items()):
        metric.add_metric([status], n)
    return metric


def delay_histogram(
    name: str,
    documentation: str,
    rows: QuerySet[Account],
    start: str,
    end: str,
    buckets: Sequence[int],
) -> Metric:
    """Histogram of `end - start` over rows, in one aggregate query."""
    counts: dict[str, Any] = {
        f"le_{b}": Count("pk", filter=Q(**{f"{end}__lte": F(start) + timedelta(seconds=b)}))
        for b in buckets
    }
    delay = ExpressionWrapper(F(end) - F(start), output_field=DurationField())
    found = rows.aggregate(total=Count("pk"), delay_sum=Sum(delay), **counts)
    cumulative = [(str(float(b)), float(found[f"le_{b}"])) for b in buckets]
    cumulative.append(("+Inf", float(found["total"])))
    total_delay = found["delay_sum"] or timedelta(0)
    return GaugeHistogramMetricFamily(
        name, documentation, buckets=cumulative, gsum_value=total_delay.total_seconds()
    )


def credentials_delay() -> Metric:
    # Resends overwrite credentials_sent_at, so accounts a student or admin asked to resend
    # are left out: their figure would be the latest SMS, not the first.
    rows = Account.objects.filter(credentials_sent_at__gte=timezone.now() - WINDOW, resend_count=0)
    return delay_histogram(
        PREFIX + "credentials_delay_seconds",
        "Seconds from a student's text to their credentials SMS being accepted by Twilio, "
        "for credentials sent in the last hour.",
        rows,
        "created_at",
        "credentials_sent_at",
        CREDENTIALS_BUCKETS,
    )


def suspension_delay() -> Metric:
    rows = Account.objects.filter(
        suspended_at__gte=timezone.now() - WINDOW, deletion_reason=DeletionReason.EXPIRED
    )
    return delay_histogram(
        PREFIX + "suspension_delay_seconds",
        "Seconds from an account's expiry to its suspension in Coder, "
        "for accounts suspended in the last hour.",
        rows,
        "expires_at",
        "suspended_at",
        SUSPENSION_BUCKETS,
    )


def account_errors() -> Metric:
    kind = Case(
        *(When(condition, then=Value(name)) for name, condition in ERROR_KINDS),
        default=Value("other"),
        output_field=CharField(),
    )
    rows = (
        Account.objects.exclude(last_error="")
        .order_by()
        .annotate(kind=kind)
        .values_list("kind", "status")
        .annotate(n=Count("pk"))
    )
    metric = GaugeMetricFamily(
        PREFIX + "account_errors",
        "Accounts whose last step left an error (Coder or SMS), by kind and account status.",
        labels=["kind", "status"],
    )
    for name, status, n in sorted(rows):
        metric.add_metric([name, status], n)
    return metric


def sms_errors() -> Metric:
    rows = (
        OutboundMessage.objects.filter(
            Q(error_code__isnull=False) | Q(status__in=SMS_FAILED_STATUSES)
        )
        .order_by()
        .values_list("status", "error_code")
        .annotate(n=Count("pk"))
    )
    metric = GaugeMetricFamily(
        PREFIX + "sms_errors",
        "SMS in the message log that Twilio refused or could not deliver, or that wait to be "
        "retried after an error, by status and Twilio error code.",
        labels=["status", "code"],
    )
    for status, code, n in sorted(rows, key=lambda row: (row[0], row[1] or 0)):
        metric.add_metric([status, str(code) if code is not None else "none"], n)
    return metric


@functools.cache
def _broker() -> Any:
    # One broker (and Redis connection pool) per process, not one per scrape.
    from django_q.brokers import get_broker

    return get_broker()


def queue_depth() -> Metric | None:
    try:
        depth = _broker().queue_size()
    except Exception as exc:
        # /healthz reports the broker; a scrape must still return the rest.
        logger.warning("metrics: queue size unavailable: %s", type(exc).__name__)
        return None
    return GaugeMetricFamily(
        PREFIX + "queue_depth", "Tasks waiting in the django-q2 broker.", value=depth
    )


def heartbeat_age() -> Metric:
    age = check_worker()["age_seconds"]
    return GaugeMetricFamily(
        PREFIX + "worker_heartbeat_age_seconds",
        "Seconds since a worker last stamped its heartbeat (+Inf: never).",
        value=float("inf") if age is None else age,
    )


class DatabaseCollector(Collector):
    """Every metric above, read afresh on each scrape."""

    def collect(self) -> Iterable[Metric]:
        yield texts_received()
        yield accounts_by_status()
        yield credentials_delay()
        yield suspension_delay()
        yield account_errors()
        yield sms_errors()
        depth = queue_depth()
        if depth is not None:
            yield depth
        yield heartbeat_age()


# Our own registry: the default one adds this process's CPU and memory figures, which would
# describe whichever web process answered the scrape.
REGISTRY = CollectorRegistry()
REGISTRY.register(DatabaseCollector())


def render_metrics() -> tuple[bytes, str]:
    """Return every metric in Prometheus' text format, and that format's content type."""
    return generate_latest(REGISTRY), CONTENT_TYPE_PLAIN_0_0_4


def metrics_token_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Serve the view only to `Authorization: Bearer <METRICS_TOKEN>`; 404 when no token is set.

    A missing token gets 401 (and says how to authenticate), a wrong one 403. Refusals are
    logged with their reason only, never the token offered.
    """

    @functools.wraps(view)
    def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        expected = settings.METRICS_TOKEN
        if not expected:
            raise Http404("Metrics are off (METRICS_TOKEN is not set).")
        scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not offered.strip():
            logger.info("metrics: refused a scrape without a bearer token")
            response = HttpResponse(
                "Bearer token required.\n", status=401, content_type="text/plain"
            )
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
        if not hmac.compare_digest(offered.strip().encode(), expected.encode()):
            logger.warning("metrics: refused a scrape with a wrong bearer token")
            return HttpResponse("Wrong token.\n", status=403, content_type="text/plain")
        return view(request, *args, **kwargs)

    return guarded
