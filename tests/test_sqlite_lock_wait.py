"""SQLite writers wait for the write lock in short steps (registrations/sqlite), not in
SQLite's own growing naps, and still give up after the database's `timeout`.

Each test holds the lock from a plain sqlite3 connection, as another process of the app would,
and writes through the app's backend to the same database file.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from django.db import OperationalError, connection

from registrations.sqlite.base import DatabaseWrapper


def backend(path: Path, timeout: float = 30) -> DatabaseWrapper:
    settings = {
        **connection.settings_dict,
        "ENGINE": "registrations.sqlite",
        "NAME": str(path),
        "OPTIONS": {"timeout": timeout, "transaction_mode": "IMMEDIATE"},
        "CONN_MAX_AGE": 0,
    }
    return DatabaseWrapper(settings, alias="lock_wait")


@pytest.fixture(autouse=True)
def _own_database(django_db_blocker):
    # A database file of the test's own, not the test database pytest-django guards.
    with django_db_blocker.unblock():
        yield


@pytest.fixture
def database(tmp_path: Path) -> Path:
    path = tmp_path / "db.sqlite3"
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE t (n INTEGER)")
    return path


def hold_lock(path: Path) -> sqlite3.Connection:
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (0)")
    return holder


def release_after(holder: sqlite3.Connection, seconds: float) -> threading.Thread:
    def release() -> None:
        time.sleep(seconds)
        holder.execute("COMMIT")

    thread = threading.Thread(target=release)
    thread.start()
    return thread


def rows(path: Path) -> list[Any]:
    with sqlite3.connect(path) as reader:
        return sorted(n for (n,) in reader.execute("SELECT n FROM t"))


def test_sqlite_s_own_sleeping_is_off_once_the_connection_is_set_up(database):
    db = backend(database)
    with db.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone() == (0,)
    db.close()


def test_a_transaction_waits_for_the_lock_and_writes_once_it_is_free(database):
    holder = hold_lock(database)
    releasing = release_after(holder, 0.3)
    db = backend(database)
    with db.cursor() as cursor:
        cursor.execute("BEGIN IMMEDIATE")  # what transaction.atomic() starts with
        cursor.execute("INSERT INTO t VALUES (%s)", [1])
        cursor.execute("COMMIT")
    releasing.join()
    db.close()
    assert rows(database) == [0, 1]


def test_a_write_outside_a_transaction_waits_too(database):
    holder = hold_lock(database)
    releasing = release_after(holder, 0.3)
    db = backend(database)
    with db.cursor() as cursor:
        cursor.execute("INSERT INTO t VALUES (%s)", [2])
        cursor.executemany("INSERT INTO t VALUES (%s)", [[3], [4]])
    releasing.join()
    db.close()
    assert rows(database) == [0, 2, 3, 4]


def test_a_writer_gives_up_after_the_timeout_and_changes_nothing(database):
    holder = hold_lock(database)
    db = backend(database, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(OperationalError, match="locked"), db.cursor() as cursor:
        cursor.execute("INSERT INTO t VALUES (%s)", [5])
    waited = time.monotonic() - started
    holder.execute("ROLLBACK")
    db.close()
    assert 0.3 <= waited < 5
    assert rows(database) == []


def test_an_error_other_than_the_lock_is_raised_at_once(database):
    db = backend(database)
    started = time.monotonic()
    with pytest.raises(OperationalError, match="no such table"), db.cursor() as cursor:
        cursor.execute("INSERT INTO missing VALUES (1)")
    db.close()
    assert time.monotonic() - started < 1
