"""Alembic's environment for the history store: run on the connection HistoryStore.migrate hands over."""

from alembic import context

from pipeline.stores.history import metadata

connection = context.config.attributes["connection"]
sqlite = connection.dialect.name == "sqlite"
context.configure(connection=connection, target_metadata=metadata, render_as_batch=sqlite)
with context.begin_transaction():
    context.run_migrations()
