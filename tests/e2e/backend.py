"""A database and broker of their own for one run: a SQLite file, or a dedicated PostgreSQL
database and Redis db when DATABASE_URL / REDIS_URL are set (never pytest-django's test DB)."""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit


@dataclass
class Backend:
    database_url: str
    redis_url: str
    cluster_name: str

    @property
    def label(self) -> str:
        database = "postgresql" if self.is_postgres else "sqlite"
        return f"{database}+{'redis' if self.redis_url else 'orm'}"

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith(("postgres://", "postgresql://"))

    def create(self) -> None:
        if self.is_postgres:
            _recreate_database(self.database_url)
        self.clear_broker()

    def destroy(self) -> None:
        self.clear_broker()
        if self.is_postgres:
            _drop_database(self.database_url)
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(self.sqlite_path + suffix).unlink(missing_ok=True)

    @property
    def sqlite_path(self) -> str:
        return urlsplit(self.database_url).path[1:] if not self.is_postgres else ""

    def clear_broker(self) -> None:
        """Delete this run's django-q2 keys (its cluster name is unique, the db shared)."""
        if not self.redis_url:
            return
        import redis

        client = redis.from_url(self.redis_url, socket_timeout=5)
        keys = list(client.scan_iter(match=f"django_q:{self.cluster_name}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()

    def database(self) -> Database:
        return Database(self.database_url)


def make_backend(workdir: Path, name: str, *, redis_db: int) -> Backend:
    """Pick the backend from the environment, with a database and Redis db of our own."""
    base_db = os.environ.get("DATABASE_URL", "")
    base_redis = os.environ.get("REDIS_URL", "")
    if base_db.startswith(("postgres://", "postgresql://")):
        database_url = _with_path(base_db, f"/{name}")
    else:
        database_url = f"sqlite:///{workdir.resolve() / (name + '.sqlite3')}"
    redis_url = _with_path(base_redis, f"/{redis_db}") if base_redis else ""
    return Backend(database_url=database_url, redis_url=redis_url, cluster_name=name)


def _with_path(url: str, path: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def _admin_connection(url: str) -> Any:
    import psycopg

    parts = urlsplit(_with_path(url, "/postgres"))
    return psycopg.connect(
        host=parts.hostname,
        port=parts.port or 5432,
        user=parts.username or "postgres",
        password=parts.password,
        dbname="postgres",
        autocommit=True,
    )


def _database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def _drop_database(url: str) -> None:
    from psycopg import sql

    with _admin_connection(url) as conn:
        name = sql.Identifier(_database_name(url))
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))


def _recreate_database(url: str) -> None:
    from psycopg import sql

    _drop_database(url)
    with _admin_connection(url) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_database_name(url))))


class Database:
    """Read-only peeks at the app's tables from the test process (outside the Django ORM)."""

    def __init__(self, url: str):
        self.url = url

    def rows(self, query: str) -> list[tuple]:
        if self.url.startswith("sqlite:"):
            # WAL lets us read while the app writes; a fresh connection sees the latest commit.
            conn = sqlite3.connect(urlsplit(self.url).path[1:], timeout=30)
            try:
                return conn.execute(query).fetchall()
            finally:
                conn.close()
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            return conn.execute(query).fetchall()

    def scalar(self, query: str) -> Any:
        result = self.rows(query)
        return result[0][0] if result else None

    def count(self, table: str, where: str = "") -> int:
        return self.scalar(f"SELECT COUNT(*) FROM {table}" + (f" WHERE {where}" if where else ""))
