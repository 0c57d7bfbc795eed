"""Dashboard figures and the server-rendered chart of enrollments over time per session."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet

from registrations.admin.scoping import (
    AnyUser,
    accounts_for,
    inbound_for,
    outbound_for,
    sessions_for,
)
from registrations.models import (
    Account,
    AccountStatus,
    InboundMessage,
    InboundOutcome,
    OutboundStatus,
    Session,
)

CHART_WIDTH, CHART_HEIGHT = 720, 260
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 48, 16, 12, 36
CHART_SESSIONS = 6
PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2")
LIVE_STATUSES = (AccountStatus.REQUESTED, AccountStatus.PROVISIONING, AccountStatus.ACTIVE)
FAILED_SMS = (OutboundStatus.FAILED, OutboundStatus.UNDELIVERED)


@dataclass(frozen=True)
class Series:
    session: Session
    color: str
    points: str
    total: int


@dataclass(frozen=True)
class Tick:
    position: float
    label: str


@dataclass(frozen=True)
class Chart:
    series: list[Series]
    x_ticks: list[Tick]
    y_ticks: list[Tick]
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT
    left: int = MARGIN_LEFT
    right: int = CHART_WIDTH - MARGIN_RIGHT
    top: int = MARGIN_TOP
    bottom: int = CHART_HEIGHT - MARGIN_BOTTOM


def nice_step(span: float, ticks: int = 5) -> int:
    """Return a round tick step (1, 2, 5, 10, 20, ...) that divides `span` into about `ticks`."""
    raw = max(span / ticks, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    return int(next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw))


def step_points(minutes: list[float], x_max: float, y_max: int) -> str:
    """Return SVG polyline points of a cumulative step line (minute of each enrollment)."""
    plot_w = CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = CHART_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM

    def xy(minute: float, count: int) -> str:
        x = MARGIN_LEFT + plot_w * min(max(minute, 0), x_max) / x_max
        y = MARGIN_TOP + plot_h * (1 - count / y_max)
        return f"{x:.1f},{y:.1f}"

    points = [xy(0, 0)]
    for count, minute in enumerate(sorted(minutes), start=1):
        points += [xy(minute, count - 1), xy(minute, count)]
    return " ".join(points)


def enrollment_chart(sessions: list[Session]) -> Chart | None:
    """Chart cumulative enrollments per session against minutes since its enrollment opened."""
    minutes = {
        session.pk: [
            (created - session.opens_at).total_seconds() / 60
            for created in session.accounts.values_list("created_at", flat=True)
        ]
        for session in sessions
    }
    sessions = [session for session in sessions if minutes[session.pk]]
    if not sessions:
        return None
    # Invited accounts may predate the opening; the axis starts at the opening anyway.
    longest = max(max(max(values) for values in minutes.values()), 1)
    most = max(len(values) for values in minutes.values())
    x_step, y_step = nice_step(longest), nice_step(most)
    x_max = x_step * math.ceil(longest / x_step)
    y_max = y_step * math.ceil(most / y_step)
    series = [
        Series(
            session,
            PALETTE[i % len(PALETTE)],
            step_points(minutes[session.pk], x_max, y_max),
            len(minutes[session.pk]),
        )
        for i, session in enumerate(sessions)
    ]
    return Chart(series, axis_ticks(x_max, x_step, horizontal=True), axis_ticks(y_max, y_step))


def axis_ticks(maximum: int, step: int, *, horizontal: bool = False) -> list[Tick]:
    """Place tick labels along an axis, in SVG coordinates."""
    plot_w = CHART_WIDTH - MARGIN_LEFT - MARGIN_RIGHT
    plot_h = CHART_HEIGHT - MARGIN_TOP - MARGIN_BOTTOM
    ticks = []
    for value in range(0, maximum + 1, step):
        if horizontal:
            ticks.append(Tick(MARGIN_LEFT + plot_w * value / maximum, f"{value} min"))
        else:
            ticks.append(Tick(MARGIN_TOP + plot_h * (1 - value / maximum), str(value)))
    return ticks


def abuse_signals(user: AnyUser) -> QuerySet[InboundMessage]:
    """Return the user's texts plus those that matched no session (counted, never listed)."""
    # A guessed or throttled text names no session, so it belongs to no classroom; but it
    # reached the number every instructor's students text, so each of them should see the count.
    unmatched = InboundMessage.objects.filter(session__isnull=True, account__isnull=True)
    return inbound_for(user) | unmatched


def dashboard_figures(user: AnyUser, now: datetime) -> dict[str, Any]:
    """Gather what the dashboard shows for the sessions this user may see."""
    sessions = sessions_for(user).select_related("classroom")
    open_now = sessions.filter(
        opens_at__lte=now, closes_at__gt=now, expires_at__gt=now, ended_at__isnull=True
    ).annotate(
        joined=Count("accounts", filter=~Q(accounts__status=AccountStatus.DELETED)),
        logged_in=Count("accounts", filter=Q(accounts__coder_last_seen_at__isnull=False)),
    )
    accounts = accounts_for(user)
    day_ago = now - timedelta(hours=24)
    recent = list(
        sessions.filter(pk__in=Account.objects.values("session")).order_by("-opens_at")[
            :CHART_SESSIONS
        ]
    )
    return {
        "open_sessions": list(open_now),
        "live_accounts": accounts.filter(status__in=LIVE_STATUSES).count(),
        "logged_in": accounts.filter(
            status__in=LIVE_STATUSES, coder_last_seen_at__isnull=False
        ).count(),
        "failed_accounts": accounts.filter(status=AccountStatus.FAILED).select_related(
            "session__classroom"
        )[:20],
        "failed_account_count": accounts.filter(status=AccountStatus.FAILED).count(),
        "stuck_accounts": accounts.filter(workspace_delete_failures__gt=0)
        .exclude(status=AccountStatus.DELETED)
        .count(),
        "failed_sms": outbound_for(user)
        .filter(status__in=FAILED_SMS, created_at__gte=day_ago)
        .count(),
        "throttled": abuse_signals(user)
        .filter(outcome=InboundOutcome.THROTTLED, received_at__gte=day_ago)
        .count(),
        "wrong_phrase": abuse_signals(user)
        .filter(outcome=InboundOutcome.WRONG_PHRASE, received_at__gte=day_ago)
        .count(),
        "chart": enrollment_chart(recent),
    }
