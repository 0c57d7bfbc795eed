"""Template filters that show a time in a session's own zone, naming the zone.

    {% load session_times %}
    {{ session.closes_at|in_zone:session.time_zone }}       Tue Mar 4 2025, 15:35 EST
    {{ account.created_at|in_zone_time:session.time_zone }}  15:35 EST
"""

from __future__ import annotations

from datetime import datetime

from django import template

from registrations import zones

register = template.Library()


@register.filter
def in_zone(moment: datetime | None, zone_name: str) -> str:
    """Date and time in the zone, with its abbreviation."""
    return zones.in_zone(moment, zone_name)


@register.filter
def in_zone_time(moment: datetime | None, zone_name: str) -> str:
    """Time of day in the zone, with its abbreviation (for times of one day, like a roster)."""
    return zones.in_zone(moment, zone_name, "H:i T")
