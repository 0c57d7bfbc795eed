"""What the fake Coder's answers say: when each student's access ended, what Coder refused.

Read from the fake's side (FakeCoder.answers: method, path, status and clock() time of
every answer), so the figures are what Coder did, whatever the app believes it did.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from tests.fakes.coder import Answered

API = "/api/v2"
SUSPEND = re.compile(rf"^{API}/users/(?P<user>[^/]+)/status/suspend$")
USER = re.compile(rf"^{API}/users/(?P<user>[^/]+)$")
# Path segments that name one object: folded so refusals group by route, not by student.
OBJECT = re.compile(r"/(users|workspaces|workspacebuilds|templates|organizations|members)/[^/]+")


def access_ended(answers: Iterable[Answered], users: list[tuple[str, str]]) -> dict[str, float]:
    """Wall-clock second each user lost access, by username: their first suspension answered
    200, or their deletion answered 2xx if that came first (a deleted user cannot log in)."""
    names = {key: name for name, user_id in users for key in (name, user_id, user_id.lower())}
    ended: dict[str, float] = {}
    for answer in answers:
        user = _ended_user(answer)
        name = names.get(user) if user else None
        if name is not None and name not in ended:
            ended[name] = answer.at
    return ended


def _ended_user(answer: Answered) -> str | None:
    if answer.method == "PUT" and answer.status == 200:
        match = SUSPEND.match(answer.path)
        return match["user"] if match else None
    if answer.method == "DELETE" and 200 <= answer.status < 300:
        match = USER.match(answer.path)
        return match["user"] if match else None
    return None


def refusals(answers: Iterable[Answered]) -> dict[str, Any]:
    """429s, and every other 4xx by route and status: requests Coder would refuse."""
    limited = 0
    refused: Counter[str] = Counter()
    for answer in answers:
        if answer.status == 429:
            limited += 1
        elif 400 <= answer.status < 500:
            route = OBJECT.sub(r"/\1/{x}", answer.path)
            refused[f"{answer.method} {route} {answer.status}"] += 1
    return {
        "rate_limited_429": limited,
        "other_4xx": sum(refused.values()),
        "other_4xx_by_route": dict(refused.most_common(10)),
    }
