"""/metrics: Prometheus figures read from the database, behind a bearer token."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from registrations import coder
from registrations.health import stamp_heartbeat
from registrations.maintenance import apply_retention
from registrations.metrics import render_metrics
from registrations.models import (
    Account,
    AccountStatus,
    DeletionReason,
    InboundMessage,
    InboundOutcome,
    OutboundKind,
    OutboundMessage,
    OutboundStatus,
    UsageStat,
)

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "metrics-test-token"


@pytest.fixture
def metrics_token(settings, db):
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


def scrape(client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def account(session, n: int = 0, **fields) -> Account:
    values = {"phone": f"+1415555{n:04d}", "expires_at": session.expires_at, **fields}
    return Account.objects.create(session=session, **values)


def inbound(n: int, outcome: str, **fields) -> InboundMessage:
    return InboundMessage.objects.create(message_sid=f"SM{n:032d}", outcome=outcome, **fields)


def test_metrics_answer_404_while_no_token_is_set(client, settings, db):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything").status_code == 404


def test_a_scrape_without_a_token_gets_401_and_a_bearer_challenge(client, metrics_token):
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_scrape_with_a_wrong_token_gets_403(client, metrics_token):
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token")
    assert response.status_code == 403
    assert b"classroom_sms" not in response.content


def test_a_scrape_with_the_token_gets_prometheus_text(client, metrics_token):
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b"# TYPE classroom_sms_texts_received_total counter" in response.content
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_texts_received_are_counted_by_outcome(client, metrics_token):
    inbound(1, InboundOutcome.PROVISIONED)
    inbound(2, InboundOutcome.PROVISIONED)
    inbound(3, InboundOutcome.WRONG_PHRASE)
    samples = scrape(client)
    assert samples[("classroom_sms_texts_received_total", (("outcome", "provisioned"),))] == 2
    assert samples[("classroom_sms_texts_received_total", (("outcome", "wrong_phrase"),))] == 1
    assert samples[("classroom_sms_texts_received_total", (("outcome", "full"),))] == 0


def test_the_texts_counter_never_drops_when_retention_deletes_the_log(
    client, metrics_token, settings
):
    old = timezone.now() - timedelta(days=settings.RETENTION_DAYS + 2)
    inbound(1, InboundOutcome.PROVISIONED, received_at=old)
    inbound(2, InboundOutcome.PROVISIONED)
    key = ("classroom_sms_texts_received_total", (("outcome", "provisioned"),))
    before = scrape(client)[key]
    apply_retention()
    assert InboundMessage.objects.count() == 1
    assert UsageStat.objects.filter(metric="inbound_provisioned").exists()
    assert scrape(client)[key] == before == 2


def test_accounts_are_counted_by_status(client, metrics_token, open_session):
    account(open_session, 1, status=AccountStatus.ACTIVE)
    account(open_session, 2, status=AccountStatus.ACTIVE)
    account(open_session, 3, status=AccountStatus.FAILED)
    samples = scrape(client)
    assert samples[("classroom_sms_accounts", (("status", "active"),))] == 2
    assert samples[("classroom_sms_accounts", (("status", "failed"),))] == 1
    assert samples[("classroom_sms_accounts", (("status", "deleted"),))] == 0


def test_time_to_credentials_is_a_histogram_of_the_last_hour(client, metrics_token, open_session):
    now = timezone.now()
    for n, seconds in enumerate([3, 12, 40]):
        created = now - timedelta(minutes=10)
        account(
            open_session,
            n,
            created_at=created,
            credentials_sent_at=created + timedelta(seconds=seconds),
        )
    # Resent: its credentials_sent_at is the latest SMS, not the first. Old: outside the hour.
    account(
        open_session,
        7,
        created_at=now - timedelta(minutes=5),
        credentials_sent_at=now,
        resend_count=1,
    )
    account(
        open_session,
        8,
        created_at=now - timedelta(hours=3),
        credentials_sent_at=now - timedelta(hours=2),
    )
    account(open_session, 9)  # still waiting: no credentials yet
    samples = scrape(client)
    name = "classroom_sms_credentials_delay_seconds"
    assert samples[(name + "_bucket", (("le", "5.0"),))] == 1
    assert samples[(name + "_bucket", (("le", "15.0"),))] == 2
    assert samples[(name + "_bucket", (("le", "60.0"),))] == 3
    assert samples[(name + "_bucket", (("le", "+Inf"),))] == 3
    assert samples[(name + "_gcount", ())] == 3
    assert samples[(name + "_gsum", ())] == pytest.approx(55, abs=0.01)


def test_expiry_to_suspension_is_a_histogram_of_expired_accounts_only(
    client, metrics_token, open_session
):
    now = timezone.now()
    expired = now - timedelta(minutes=5)
    account(
        open_session,
        1,
        expires_at=expired,
        suspended_at=expired + timedelta(seconds=75),
        deletion_reason=DeletionReason.EXPIRED,
        status=AccountStatus.DELETING_USER,
    )
    account(
        open_session,
        2,
        expires_at=expired,
        suspended_at=expired + timedelta(seconds=400),
        deletion_reason=DeletionReason.EXPIRED,
        status=AccountStatus.DELETED,
    )
    # Revoked before expiry: not a measure of how late expiry runs.
    account(open_session, 3, suspended_at=now, deletion_reason=DeletionReason.REVOKED)
    samples = scrape(client)
    name = "classroom_sms_suspension_delay_seconds"
    assert samples[(name + "_bucket", (("le", "90.0"),))] == 1
    assert samples[(name + "_bucket", (("le", "600.0"),))] == 2
    assert samples[(name + "_gcount", ())] == 2
    assert samples[(name + "_gsum", ())] == pytest.approx(475, abs=0.01)


def test_account_errors_are_counted_by_kind_from_the_errors_coder_raises(
    client, metrics_token, open_session
):
    errors = [
        str(coder.Unreachable("POST", "/api/v2/users", None, "timed out")),
        f"New password not set: {coder.Unauthorized('PUT', '/api/v2/users/x', 401, 'no')}",
        str(coder.CoderError("POST", "/api/v2/users", 503, "unavailable")),
        "Credentials SMS not sent (Twilio error 30003); a new password will follow.",
    ]
    for n, error in enumerate(errors):
        account(open_session, n, status=AccountStatus.FAILED, last_error=error)
    account(open_session, 9, status=AccountStatus.ACTIVE)
    samples = scrape(client)
    name = "classroom_sms_account_errors"
    for kind in ("coder_unreachable", "coder_rejected_token", "coder_server_error", "sms_not_sent"):
        assert samples[(name, (("kind", kind), ("status", "failed")))] == 1
    assert sum(v for (n, _), v in samples.items() if n == name) == 4


def test_sms_errors_are_counted_by_status_and_twilio_code(client, metrics_token, open_session):
    def outbound(status: str, code: int | None = None) -> None:
        OutboundMessage.objects.create(
            session=open_session,
            kind=OutboundKind.CREDENTIALS,
            body="…",
            status=status,
            error_code=code,
        )

    outbound(OutboundStatus.FAILED, 21211)
    outbound(OutboundStatus.FAILED, 21211)
    outbound(OutboundStatus.RETRY, 20429)
    outbound(OutboundStatus.UNDELIVERED)
    outbound(OutboundStatus.DELIVERED)
    samples = scrape(client)
    name = "classroom_sms_sms_errors"
    assert samples[(name, (("code", "21211"), ("status", "failed")))] == 2
    assert samples[(name, (("code", "20429"), ("status", "retry")))] == 1
    assert samples[(name, (("code", "none"), ("status", "undelivered")))] == 1
    assert sum(v for (n, _), v in samples.items() if n == name) == 4


def test_queue_depth_is_the_brokers_waiting_tasks(client, metrics_token, broker):
    broker.enqueue("task-one")
    broker.enqueue("task-two")
    assert scrape(client)[("classroom_sms_queue_depth", ())] == 2


def test_heartbeat_age_is_infinite_until_a_worker_stamps_it(client, metrics_token):
    key = ("classroom_sms_worker_heartbeat_age_seconds", ())
    assert math.isinf(scrape(client)[key])
    stamp_heartbeat()
    assert 0 <= scrape(client)[key] < 5


def test_a_scrape_costs_the_same_queries_with_many_rows(metrics_token, open_session):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            render_metrics()
        return len(captured)

    account(open_session, 0, last_error="Coder POST /api/v2/users -> 500: x")
    few = queries()
    now = timezone.now()
    for n in range(1, 150):
        a = account(
            open_session,
            n,
            status=AccountStatus.ACTIVE,
            credentials_sent_at=now,
            last_error="Credentials SMS not sent (x)",
        )
        inbound(n, InboundOutcome.PROVISIONED, account=a)
        OutboundMessage.objects.create(
            account=a,
            kind=OutboundKind.CREDENTIALS,
            body="…",
            status=OutboundStatus.FAILED,
            error_code=30000 + n % 5,
        )
    assert queries() == few
    assert few <= 8


def test_the_token_setting_is_documented_in_env_example():
    assert "\nMETRICS_TOKEN=" in (ROOT / ".env.example").read_text()
