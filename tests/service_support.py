"""Shared pieces of the service tests (config, db, listener, worker): database URLs, a running listener."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from ichvol.config import Config, load_config
from ichvol.db.engine import open_database

PG_ENV = "ICHVOL_TEST_DATABASE_URL"


def database_params() -> list:
    params = [pytest.param("sqlite", id="sqlite")]
    if os.environ.get(PG_ENV):
        params.append(pytest.param("postgresql", id="postgresql"))
    return params


@pytest.fixture(params=database_params())
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database: a new SQLite file, or a new schema in the PostgreSQL of ICHVOL_TEST_DATABASE_URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'ichvol.db'}"
        return
    base = os.environ[PG_ENV]
    schema = f"ichvol_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def make_config(tmp_path: Path, db_url: str | None = None, **env: str) -> Config:
    """The embedded defaults, pointed at tmp_path, with ICHVOL_* style overrides given as keyword arguments
    (section__key=value, TOML syntax)."""
    environ = {"ICHVOL_DATA_DIR": f'"{tmp_path / "var"}"', "ICHVOL_LISTENER__HOST": "127.0.0.1",
               "ICHVOL_LISTENER__PORT": "0", "ICHVOL_LISTENER__MIN_FREE_MB": "1"}
    if db_url:
        environ["ICHVOL_DATABASE__URL"] = f'"{db_url}"'
    environ.update({f"ICHVOL_{k.upper()}": v for k, v in env.items()})
    return load_config(None, environ=environ)


def sessions_for(config: Config):  # noqa: ANN201
    return open_database(config.database_url)
