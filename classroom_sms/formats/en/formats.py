"""English display formats: 24-hour times that always name their zone.

Students read "Expires Tue Mar 4 17:30 EST" in their SMS; the admin shows the same clock and
the same zone abbreviation ("T"), so an instructor never compares "5:30 p.m." with "17:30 EST".
Input formats are Django's own (only display changes here).
"""

DATETIME_FORMAT = "D M j Y, H:i T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
TIME_FORMAT = "H:i"
