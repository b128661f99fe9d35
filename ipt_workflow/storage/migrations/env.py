"""Alembic environment for ipt-workflow's own tables. Run programmatically by
``ipt_workflow.storage.sql.upgrade(engine)``; the version table is ``ipt_alembic_version`` so
a host application's own Alembic history is left alone."""

from __future__ import annotations

from alembic import context

from ipt_workflow.storage.schema import metadata

VERSION_TABLE = "ipt_alembic_version"

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - the engine always passes its connection
    raise RuntimeError("ipt-workflow migrations run through ipt_workflow.storage.sql.upgrade(engine)")
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE)
with context.begin_transaction():
    context.run_migrations()
