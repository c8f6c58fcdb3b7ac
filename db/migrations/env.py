"""Alembic environment: ichvol runs migrations programmatically (ichvol.db.engine.migrate) on a connection."""

from alembic import context

from ichvol.db.models import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
