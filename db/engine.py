"""Engine and schema: SQLite in WAL mode by default, PostgreSQL with the same code; migrations at start."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ..errors import ConfigError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_SECONDS = 60
MIGRATION_LOCK = 0x1C4_701  # PostgreSQL advisory lock key: one migration at a time per database


def make_engine(url: str) -> Engine:
    """An engine for `url`. SQLite gets WAL, FULL sync (an acknowledged instance survives a power cut) and
    BEGIN IMMEDIATE transactions, so that concurrent writers queue on the busy timeout instead of failing."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"database.url: not a database URL: {exc}") from None
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    # sqlite3's `timeout` is SQLite's busy timeout: a writer waits this long for another's lock.
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # noqa: ANN001
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        _use_wal(cursor)
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection):  # noqa: ANN001
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _use_wal(cursor: sqlite3.Cursor) -> None:
    """Switch the file to WAL. The switch needs the file to itself and SQLite does not wait on the busy timeout
    for it, so processes opening a new database together (`ichvol listen` and `ichvol work`) could fail with
    "database is locked": retry within the busy budget. WAL persists in the file: later opens switch nothing."""
    deadline = time.monotonic() + SQLITE_BUSY_SECONDS
    delay = 0.01
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0].lower()
            if mode in ("wal", "memory"):  # an in-memory database has no WAL
                return
            reason = f"the journal mode stayed {mode}"
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc):
                raise
            reason = str(exc)
        if time.monotonic() > deadline:
            raise sqlite3.OperationalError(f"cannot switch the database to WAL: {reason}")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (alembic upgrade head) with the scripts shipped in the package."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Processes starting together on a new schema (listener, workers) would all create the tables;
                # all but one would fail. SQLite's BEGIN IMMEDIATE already serialises them.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, "head")
    except OperationalError as exc:
        raise ConfigError(f"database.url: cannot open the database: {exc.orig}") from None


def open_database(url: str) -> sessionmaker[Session]:
    """Engine + migrations + a session factory: what every service process does at start."""
    engine = make_engine(url)
    migrate(engine)
    log.info("database ready (%s)", make_url(url).render_as_string(hide_password=True))
    return sessionmaker(engine, expire_on_commit=False)
