"""A kept PostgreSQL connection is checked without a round trip, and a dead one still replaced.

Django's check (CONN_HEALTH_CHECKS) ran `SELECT 1` before each request's or task's first
statement; registrations/postgresql/base.py looks at the socket instead, and asks the server
only when it has spoken (a server that ended the connection has). Checked on the real server:
what it saw our connection run, and a connection it ended.
"""

from __future__ import annotations

import time

import pytest
from django.db import connection, connections

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's backend"),
    # serialized_rollback: restore what migrations created (groups, schedules) for later tests.
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


def backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def last_statement_of(pid: int) -> str:
    """What the server last saw the connection run (read over a connection of its own)."""
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid])
            return str(cursor.fetchone()[0])
    finally:
        other.close()


def request_starts() -> None:
    """What Django does with the connection as a request (or a django-q2 task) starts."""
    connection.health_check_done = False
    connection.close_if_health_check_failed()


def test_the_backend_is_ours():
    assert connection.settings_dict["ENGINE"] == "registrations.postgresql"
    assert connection.health_check_enabled


def test_a_sound_connection_is_checked_without_asking_the_server():
    pid = backend_pid()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 'the last thing we asked'")

    request_starts()

    assert last_statement_of(pid) == "SELECT 'the last thing we asked'"  # no SELECT 1 since
    assert backend_pid() == pid  # the same connection, kept


def test_a_connection_the_server_ended_is_replaced_before_the_next_statement():
    pid = backend_pid()
    killer = connections.create_connection("default")
    try:
        with killer.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        killer.close()
    time.sleep(0.2)  # the server's goodbye reaches our socket

    request_starts()

    assert backend_pid() != pid  # a new connection, and the statement did not fail


def test_a_connection_psycopg_knows_is_broken_is_not_used():
    connection.ensure_connection()
    connection.connection.close()  # as psycopg leaves one after a failed read

    assert connection.is_usable() is False
    request_starts()
    assert backend_pid() > 0
