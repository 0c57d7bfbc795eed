"""PostgreSQL prepares the statements a connection keeps running (the webhook's, the workers').

Parsing and planning each statement anew was 40% of PostgreSQL's CPU per webhook under a class
burst; with the parameters bound by the server, psycopg prepares a statement once its
connection has run it a few times. DATABASE_PREPARED_STATEMENTS=0 turns it off for a pooler
that cannot keep prepared statements.
"""

from __future__ import annotations

import pytest
from django.db import connection

from registrations.models import Session
from tests.test_settings import load_settings

PG_URL = "postgres://u:p@db.example:5432/classroom"


def test_postgresql_binds_parameters_on_the_server_and_prepares_repeated_statements():
    options = load_settings(SECRET_KEY="x", DATABASE_URL=PG_URL)["options"]
    assert options["server_side_binding"] is True
    assert options["prepare_threshold"] == 5


def test_prepared_statements_can_be_turned_off_for_a_pooler():
    options = load_settings(SECRET_KEY="x", DATABASE_URL=PG_URL, DATABASE_PREPARED_STATEMENTS="0")[
        "options"
    ]
    assert "server_side_binding" not in options
    assert "prepare_threshold" not in options


@pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements: PostgreSQL")
@pytest.mark.django_db
def test_a_statement_run_again_and_again_is_prepared_once_on_its_connection():
    def prepared() -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s",
                ["%registrations_session%"],
            )
            return [row[0] for row in cursor.fetchall()]

    assert prepared() == []
    for phrase in ("a", "b", "c", "d", "e", "f", "g"):
        assert not Session.objects.filter(phrase=phrase).exists()
    statements = prepared()
    assert len(statements) == 1
    assert "$1" in statements[0]  # the parameter bound by the server, not pasted into the text
