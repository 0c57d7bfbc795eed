"""Limits on what an instructor account can make the app do, so that a stolen login cannot be
used for SMS fraud or to create thousands of Coder users: the countries invites and test
messages may go to, and daily caps on both."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Q, QuerySet
from django.utils import timezone

from registrations.models import Account, AccountSource, Classroom, OutboundKind, OutboundMessage
from registrations.phones import region_of

# "Daily" is any 24 hours: a rolling window has no midnight at which a thief gets a fresh quota.
WINDOW = timedelta(hours=24)


def allowed_countries() -> frozenset[str]:
    """Return SMS_ALLOWED_COUNTRIES, or else the countries of our own numbers."""
    if settings.SMS_ALLOWED_COUNTRIES:
        return frozenset(settings.SMS_ALLOWED_COUNTRIES)
    ours = {region_of(n) for n in [settings.TWILIO_FROM_NUMBER, *settings.TWILIO_OWN_NUMBERS]}
    ours.add(settings.PHONE_DEFAULT_REGION.upper())
    return frozenset(region for region in ours if region)


def allowed_countries_text() -> str:
    """ "CA, US": the allowed countries, for messages that refuse a number."""
    return ", ".join(sorted(allowed_countries()))


def country_allowed(phone: str) -> bool:
    return region_of(phone) in allowed_countries()


def _taught_by(user: User) -> Q:
    """Rows of sessions in every classroom the user owns or co-teaches (a new classroom made
    to get a fresh quota counts too)."""
    co_taught = Classroom.co_instructors.through.objects.filter(user=user)
    classrooms = Classroom.objects.filter(
        Q(owner=user) | Q(pk__in=co_taught.values("classroom_id"))
    )
    return Q(session__classroom__in=classrooms.values("pk"))


def test_messages_left(user: User | AnonymousUser) -> int | None:
    """How many test messages the user may still send in this 24 hours (None: no limit)."""
    sent = OutboundMessage.objects.filter(kind=OutboundKind.TEST)
    return _left_today(user, sent, int(settings.INSTRUCTOR_DAILY_TEST_MESSAGES))


def invites_left(user: User | AnonymousUser) -> int | None:
    """How many students the user may still invite in this 24 hours (None: no limit)."""
    invited = Account.objects.filter(source=AccountSource.INVITE)
    return _left_today(user, invited, int(settings.INSTRUCTOR_DAILY_INVITES))


def _left_today(user: User | AnonymousUser, used: QuerySet[Any], limit: int) -> int | None:
    """`limit` less the rows of `used` in the user's classes in the last 24 hours."""
    if user.is_superuser:
        return None
    if not user.is_authenticated:
        return 0
    count = used.filter(_taught_by(user), created_at__gte=timezone.now() - WINDOW).count()
    return max(limit - count, 0)
