"""audit events append-only: the database refuses UPDATE and DELETE on audit_events

PostgreSQL: a row trigger (BEFORE UPDATE OR DELETE) that raises; SQLSTATE 23001
(restrict_violation), so drivers report an integrity error as SQLite does. SQLite: two
triggers that RAISE(ABORT). TRUNCATE and DROP TABLE (owner operations: the tests' clean-up,
a downgrade to base) are not row operations and stay possible; in production the service's
role should hold no TRUNCATE on the table either (docs/operations.md).

No code path updates or deletes audit rows: they carry ids, actions, times and channels, never
a citizen's personal data, so retention has nothing to erase there.

Note for later migrations: on SQLite a ``batch_alter_table("audit_events")`` recreates the
table and drops these triggers; create them again afterwards (``upgrade()`` below).

Revision ID: aed1ac978a22
Revises: 9b1e5c7d2f40
Create Date: 2026-11-26 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "aed1ac978a22"
down_revision: str | None = "9b1e5c7d2f40"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

MESSAGE = "audit_events is append-only"

PG_UPGRADE = (
    f"""
    CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
      RAISE EXCEPTION '{MESSAGE}: % refused', TG_OP USING ERRCODE = 'restrict_violation';
    END
    $$
    """,
    "DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events",
    """
    CREATE TRIGGER audit_events_append_only
    BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only()
    """,
)
PG_DOWNGRADE = (
    "DROP TRIGGER IF EXISTS audit_events_append_only ON audit_events",
    "DROP FUNCTION IF EXISTS audit_events_append_only()",
)
SQLITE_UPGRADE = tuple(
    f"""
    CREATE TRIGGER IF NOT EXISTS audit_events_no_{op_name.lower()}
    BEFORE {op_name} ON audit_events
    BEGIN
      SELECT RAISE(ABORT, '{MESSAGE}: {op_name} refused');
    END
    """
    for op_name in ("UPDATE", "DELETE")
)
SQLITE_DOWNGRADE = (
    "DROP TRIGGER IF EXISTS audit_events_no_update",
    "DROP TRIGGER IF EXISTS audit_events_no_delete",
)


def _run(postgresql: Sequence[str], sqlite: Sequence[str]) -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        statements = postgresql
    elif dialect == "sqlite":
        statements = sqlite
    else:
        raise NotImplementedError(f"audit_events append-only: no triggers for {dialect}")
    for statement in statements:
        op.execute(statement)


def upgrade() -> None:
    _run(PG_UPGRADE, SQLITE_UPGRADE)


def downgrade() -> None:
    _run(PG_DOWNGRADE, SQLITE_DOWNGRADE)
