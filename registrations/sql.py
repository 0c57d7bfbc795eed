"""Hand-written statements of the hot paths: run them, and pass and read values as the ORM would.

The webhook answers every Twilio request in a handful of statements (README, "Webhook cost"),
and provisioning a student is a few more (README, "Provisioning cost"). Several of them the
ORM cannot express (one read of a sender's whole state, an insert that only happens while a
seat is free, an update that returns what it changed), and building queries through the ORM
was most of their CPU. The statements stay portable: plain SQL that
SQLite (3.35 or later, for RETURNING) and PostgreSQL both run, with named parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Field, Model


def table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def column(name: str) -> str:
    """A column name quoted (`window` is a keyword in both databases)."""
    return connection.ops.quote_name(name)


def set_when(condition: str, values: Mapping[str, str]) -> str:
    """`column = CASE WHEN condition THEN value ELSE column END, ...`: set only where it holds.

    For an update that always changes some columns and others only in some rows (each SET
    expression reads the row as it was, in both databases).
    """
    return ", ".join(
        f"{column} = CASE WHEN {condition} THEN {value} ELSE {column} END"
        for column, value in values.items()
    )


def moment(value: datetime) -> Any:
    """A datetime as a parameter: SQLite stores naive UTC text, PostgreSQL takes it as is."""
    return connection.ops.adapt_datetimefield_value(value)


def rows(sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return list(cursor.fetchall())


def run(sql: str, params: Mapping[str, Any] | Sequence[Any]) -> int:
    """Run a statement; return the number of rows it changed."""
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


def run_unless_conflict(sql: str, params: Mapping[str, Any]) -> int | None:
    """Run a statement a unique constraint may refuse; None when it did.

    Inside a transaction the statement gets a savepoint, so that a refusal leaves the
    transaction usable; on its own (autocommit) there is nothing to roll back, and no
    BEGIN/COMMIT round trips are spent.
    """
    try:
        if connection.in_atomic_block:
            with transaction.atomic():
                return run(sql, params)
        return run(sql, params)
    except IntegrityError:
        return None


def read(model: type[Model], field_name: str, value: Any) -> Any:
    """A column's raw value as the ORM would give it (SQLite returns datetimes as text)."""
    if value is None:
        return None
    field = model._meta.get_field(field_name)
    assert isinstance(field, Field)
    column = field.get_col(model._meta.db_table)
    # What the ORM's compiler applies to a column it reads: the backend's, then the field's.
    for convert in connection.ops.get_db_converters(column) + column.get_db_converters(connection):
        value = convert(value, column, connection)
    return value
