"""Our share of Coder's rate limit on the routes every worker shares, kept in the database.

Coder limits each API client per URL path: `coderd/httpmw/ratelimit.go` keys go-chi/httprate by
the token's user and `KeyByEndpoint` (the path without its query), 512 requests a minute by
default (`--api-rate-limit`). A route naming one user or workspace (suspend, delete, delete
build) is a budget of its own; the collection routes (create a user, list workspaces, look up a
template) are one budget for the whole deployment. Going over it costs a 429 with
`Retry-After: 60`: a class burst or a class cleanup that ignored it would stall for a minute at
a time and retry in herds.

So every request on a shared route first reserves a place in that route's budget here, with
httprate's own arithmetic (limiter.go `calculateRate`): the windows are whole minutes, and the
rate is `previous * (60 - elapsed) / 60 + current`. A request that would push it past the limit
waits (the client sleeps, or hands the wait to the task's retry). What Coder answers keeps the
count honest: a 429, or an `X-Ratelimit-Remaining` lower than we think (another client using
the same token), fills the window.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

from django.db import transaction
from django.db.models import F

from registrations import sql
from registrations.models import CoderRouteWindow

logger = logging.getLogger(__name__)

WINDOW_SECONDS = 60
# The collection routes (relative to /api/v2) we call; every other route we use names a user,
# a workspace or an organization in its path, and so has a budget of its own.
SHARED_ROUTES = frozenset({"/users", "/workspaces", "/templates"})


def usable_share(limit: int) -> int:
    """The part of Coder's limit we plan to use: a little headroom for clock skew and rounding."""
    return max(1, limit - max(2, limit // 32))


def wait_seconds(previous: int, current: int, elapsed: float, usable: int) -> float:
    """Seconds until one more request fits httprate's sliding window (0: it fits now).

    `previous` and `current` are the counts of the last and the current whole minute,
    `elapsed` the seconds into the current one.
    """
    if current + 1 > usable:
        # Nothing fits before this minute ends; then this minute becomes `previous`.
        return WINDOW_SECONDS - elapsed + 0.05
    if previous * (WINDOW_SECONDS - elapsed) / WINDOW_SECONDS + current + 1 <= usable:
        return 0.0
    # The previous minute weighs less every second: it fits once its share has shrunk enough.
    fits_at = WINDOW_SECONDS * (1 - (usable - current - 1) / previous)
    return max(fits_at - elapsed, 0.01)


class RouteBudget:
    """Paces requests on Coder's shared routes across every process of the deployment."""

    def __init__(
        self,
        limit: int,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.limit = limit
        self._clock = clock

    def paces(self, path: str) -> bool:
        return self.limit > 0 and path in SHARED_ROUTES

    def reserve(self, path: str) -> float:
        """Take a place for one request on `path` now and return 0, or return how long to wait."""
        if not self.paces(path):
            return 0.0
        now = self._clock()
        window, elapsed = divmod(now, WINDOW_SECONDS)
        usable = usable_share(self.limit)
        # Most requests fit: one conditional statement takes the place (no transaction, no
        # lock held across round trips). A minute's first request, or one that does not fit,
        # goes the long way, which creates the minute's row and says how long to wait.
        if _take(path, int(window), (WINDOW_SECONDS - elapsed) / WINDOW_SECONDS, usable):
            return 0.0
        with transaction.atomic():
            current = self._locked(path, int(window))
            previous = self._count(path, int(window) - 1)
            wait = wait_seconds(previous, current.count, elapsed, usable)
            if not wait:
                CoderRouteWindow.objects.filter(pk=current.pk).update(count=F("count") + 1)
        return wait

    def observe(self, path: str, status: int, headers: Mapping[str, str]) -> None:
        """Bring our count up to what Coder says it counted (a 429, or fewer left than we think)."""
        if not self.paces(path):
            return
        limit = _int(headers.get("X-Ratelimit-Limit"))
        remaining = _int(headers.get("X-Ratelimit-Remaining"))
        if limit is not None and 0 < limit < self.limit:
            logger.warning("coder: its rate limit is %d a minute, not %d; pacing to it", limit,
                           self.limit)  # fmt: skip
            self.limit = limit
        if status != 429 and (limit is None or remaining is None):
            return
        if status != 429 and remaining is not None and remaining * 4 >= (limit or self.limit):
            # Most of Coder's window is free: nothing to catch up with, no query spent.
            return
        now = self._clock()
        window, elapsed = divmod(now, WINDOW_SECONDS)
        usable = usable_share(self.limit)
        with transaction.atomic():
            current = self._locked(path, int(window))
            previous = self._count(path, int(window) - 1)
            ours = previous * (WINDOW_SECONDS - elapsed) / WINDOW_SECONDS + current.count
            if status == 429:
                coders = float(usable)  # full until the window slides on
                logger.warning("coder: rate limited on %s; pausing that route", path)
            else:
                assert limit is not None and remaining is not None
                # Coder counted limit - remaining, this request included.
                coders = float(limit - remaining)
            if coders > ours + 1:
                raised = current.count + int(coders - ours + 0.5)
                CoderRouteWindow.objects.filter(pk=current.pk).update(count=raised)

    @staticmethod
    def _locked(path: str, window: int) -> CoderRouteWindow:
        # Insert-if-missing, then lock: two processes starting a new minute never both miss it.
        CoderRouteWindow.objects.bulk_create(
            [CoderRouteWindow(route=path, window=window)], ignore_conflicts=True
        )
        return CoderRouteWindow.objects.select_for_update().get(route=path, window=window)

    @staticmethod
    def _count(path: str, window: int) -> int:
        found = CoderRouteWindow.objects.filter(route=path, window=window).values_list(
            "count", flat=True
        )
        return next(iter(found), 0)


def _take_sql() -> str:
    windows = sql.table(CoderRouteWindow)
    count, window = sql.column("count"), sql.column("window")
    # httprate's rate with this request counted: previous * weight + current + 1.
    return (
        f"UPDATE {windows} SET {count} = {count} + 1 "
        f"WHERE route = %(route)s AND {window} = %(window)s AND {count} + 1 + COALESCE(("
        f"SELECT p.{count} FROM {windows} p WHERE p.route = %(route)s "
        f"AND p.{window} = %(previous)s), 0) * %(weight)s <= %(usable)s"
    )


_TAKE = _take_sql()


def _take(path: str, window: int, weight: float, usable: int) -> bool:
    """Count one more request in `window` if it fits the sliding window; False otherwise."""
    params = {"route": path, "window": window, "previous": window - 1, "weight": weight,
              "usable": usable}  # fmt: skip
    return sql.run(_TAKE, params) == 1


def forget_before(window: int) -> int:
    """Delete the counts of minutes before `window` (they no longer weigh in); count them."""
    return CoderRouteWindow.objects.filter(window__lt=window).delete()[0]


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
