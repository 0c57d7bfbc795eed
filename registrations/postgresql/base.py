"""Django's PostgreSQL backend, with a health check that asks the server nothing.

A persistent connection is checked before each request or task first uses it
(CONN_HEALTH_CHECKS), and Django's check is a `SELECT 1`: one more round trip at every webhook
and every task, on top of their own statements. Each round trip is two wake-ups, the server's
process and ours, and in a class burst each wake-up waits its turn for a busy CPU.

The failures that check catches show in the socket without asking: a server that restarts,
ends the connection (`pg_terminate_backend`, an idle timeout) or goes away sends its goodbye
(an error, then end of file) or a reset, and the socket turns readable. An idle connection of
ours hears nothing otherwise: we never LISTEN, and the server speaks only when spoken to. So
the check looks first: a quiet socket on a connection psycopg holds for sound is usable; a
readable one gets Django's full check, which reads what is there and fails when the server
is gone. A connection whose network silently went away passes both: its first statement
fails, as it did after `SELECT 1`, which would have waited just as long.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        if self.connection is None or self.connection.broken or self.connection.closed:
            return False
        try:
            readable, _, _ = select.select([self.connection.fileno()], [], [], 0)
        except (OSError, ValueError):  # no socket to look at: ask the server
            return bool(super().is_usable())
        return True if not readable else bool(super().is_usable())
