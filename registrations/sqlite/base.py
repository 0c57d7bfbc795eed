"""Django's SQLite backend, with writers that wait for the write lock in short steps.

SQLite lets one writer in at a time, and every process of the app writes: web threads, the
workers, the ORM broker. A writer that finds the lock taken sleeps in SQLite's own busy
handler, whose naps grow to 25, 50 and then 100 ms: it wakes long after the lock was freed, and
others take it first. In a class burst, that was the slowest webhooks' time (p99 over 400 ms
where the median was 100 ms). Here SQLite's handler is off (busy_timeout 0, once the connection
is set up) and a statement refused for the lock is tried again every 0.5-2 ms, until the
database's `timeout` option (seconds) has passed, when the refusal is raised as before.

Only what is safe to try again is: a statement outside a transaction (it changed nothing when
refused), `BEGIN IMMEDIATE` among them, which is where Django's transactions wait for the lock.
Inside a transaction, which already holds the lock, SQLite's answer stands.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any, TypeVar

from django.db.backends.sqlite3 import base

# Pauses between tries, then the last one's length until the deadline.
RETRY_PAUSES = (0.0005, 0.001, 0.002)
DEFAULT_TIMEOUT = 5.0  # seconds: sqlite3.connect()'s own default

T = TypeVar("T")


def refused_for_the_lock(exc: sqlite3.OperationalError) -> bool:
    # SQLITE_BUSY and its extended codes (BUSY_RECOVERY, BUSY_SNAPSHOT, BUSY_TIMEOUT).
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_BUSY


class SQLiteCursorWrapper(base.SQLiteCursorWrapper):
    timeout: float = DEFAULT_TIMEOUT

    def execute(self, query: str, params: Any = None) -> Any:
        return self._waiting(lambda: super(SQLiteCursorWrapper, self).execute(query, params))

    def executemany(self, query: str, param_list: Any) -> Any:
        if self.connection.in_transaction:
            return super().executemany(query, param_list)
        # Each row is a transaction of its own outside one, so a refusal halfway cannot be
        # tried again whole: SQLite's own handler waits for these (rare) instead.
        self.connection.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        try:
            return super().executemany(query, param_list)
        finally:
            self.connection.execute("PRAGMA busy_timeout = 0")

    def _waiting(self, statement: Callable[[], T]) -> T:
        if self.connection.in_transaction:
            return statement()
        deadline = time.monotonic() + self.timeout
        tries = 0
        while True:
            try:
                return statement()
            except sqlite3.OperationalError as exc:
                if not refused_for_the_lock(exc) or time.monotonic() >= deadline:
                    raise
            time.sleep(RETRY_PAUSES[min(tries, len(RETRY_PAUSES) - 1)])
            tries += 1


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict[str, Any]) -> sqlite3.Connection:
        # SQLite's handler still waits while the connection is set up (its PRAGMAs, which may
        # switch the journal to WAL), then never again: the cursors wait instead.
        connection: sqlite3.Connection = super().get_new_connection(conn_params)
        connection.execute("PRAGMA busy_timeout = 0")
        return connection

    def create_cursor(self, name: str | None = None) -> SQLiteCursorWrapper:
        cursor: SQLiteCursorWrapper = self.connection.cursor(factory=SQLiteCursorWrapper)
        cursor.timeout = float(self.settings_dict["OPTIONS"].get("timeout", DEFAULT_TIMEOUT))
        return cursor
