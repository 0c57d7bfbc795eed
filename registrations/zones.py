"""Time zones: the canonical IANA zones an instructor can pick, and times shown with their zone.

A session's times are entered and shown in its own zone (students read their SMS in it), and a
displayed time always names its zone ("Tue Mar 4 2025, 15:35 EST"): a bare "3:35 p.m." is
ambiguous the moment the instructor, the server and the students are not in one place.
"""

from __future__ import annotations

import functools
import zoneinfo
from datetime import datetime
from importlib import resources
from pathlib import Path

from django.conf import settings
from django.utils.formats import date_format

# tzdata's tables of canonical zones: zone.tab has one or more per country (Europe/Oslo too),
# zone1970.tab the zones that differ since 1970. Neither lists an alias (US/Eastern,
# Asia/Calcutta, Europe/Kiev...), which is what makes available_timezones() about 600 long.
ZONE_TABLES = ("zone.tab", "zone1970.tab")
# Where no table is installed, the areas whose names are canonical zones (fewer are filtered).
AREAS = (
    "Africa",
    "America",
    "Antarctica",
    "Arctic",
    "Asia",
    "Atlantic",
    "Australia",
    "Europe",
    "Indian",
    "Pacific",
)


def _table_texts() -> list[str]:
    """The zone tables of the first tz database found: the system's, else the tzdata package's."""
    for directory in zoneinfo.TZPATH:
        found = [Path(directory, name) for name in ZONE_TABLES if Path(directory, name).is_file()]
        if found:
            return [path.read_text(encoding="utf-8") for path in found]
    try:
        package = resources.files("tzdata") / "zoneinfo"
        return [(package / name).read_text(encoding="utf-8") for name in ZONE_TABLES]
    except (ModuleNotFoundError, FileNotFoundError, OSError):
        return []


def _zones_in_tables(texts: list[str]) -> set[str]:
    names = set()
    for text in texts:
        for line in text.splitlines():
            if line and not line.startswith("#"):
                columns = line.split("\t")
                if len(columns) >= 3:
                    names.add(columns[2])
    return names


@functools.cache
def canonical_zones() -> tuple[str, ...]:
    """The canonical IANA zones this machine knows, sorted, with UTC first."""
    available = zoneinfo.available_timezones()
    names = _zones_in_tables(_table_texts()) & available
    if not names:
        names = {name for name in available if name.split("/")[0] in AREAS}
    return ("UTC", *sorted(names - {"UTC"}))


def is_zone(name: str) -> bool:
    """True when `name` is a zone this machine can convert to (aliases included)."""
    if not name:
        return False
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return False
    return True


def zone_named(name: str | None) -> zoneinfo.ZoneInfo:
    """The zone of that name, or the server's TIME_ZONE when it is unknown or empty."""
    return zoneinfo.ZoneInfo(name if name and is_zone(name) else settings.TIME_ZONE)


def utc_offset(moment: datetime, zone: zoneinfo.ZoneInfo) -> str:
    """"UTC-05:00" for a moment in a zone (the offset it has then, daylight saving included)."""
    offset = moment.astimezone(zone).utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset else 0
    sign = "-" if minutes < 0 else "+"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def in_zone(moment: datetime | None, zone_name: str | None, format_name: str = "") -> str:
    """Format a moment in a zone with the zone's abbreviation: "Tue Mar 4 2025, 15:35 EST".

    `format_name` is a Django format name or a format string; the default is DATETIME_FORMAT,
    which this project's formats (classroom_sms/formats) end with the zone ("T").
    """
    if moment is None:
        return "—"
    return date_format(moment.astimezone(zone_named(zone_name)), format_name or "DATETIME_FORMAT")
