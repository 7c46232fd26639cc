"""anti-bot and anti-trading: e-mail opt-in window, limits per contact address, release delay

- ``services.opt_in_minutes`` (default 30): how long an online booking of a service with
  ``requires_opt_in`` waits, ``pending``, for the link in its e-mail to be followed.
- ``services.release_delay_minutes`` (default 0): seats a cancelled booking gave up are offered
  again only after this delay; until then a ``seat_holdbacks`` row keeps them taken.
- ``locations.max_active_per_email`` / ``max_active_per_phone`` (default 6; 0: no limit):
  citizens' active online bookings per contact address at the location. They are counted as
  ``person_claims`` rows (``service_id`` ``contact:<n>``), so no table is needed for them.
  Bookings made before this revision hold no such claims and are not counted (their keys need
  the server secret, which a migration does not have).

Revision ID: c4f1a8d2e6b7
Revises: aed1ac978a22
Create Date: 2026-11-27 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c4f1a8d2e6b7"
down_revision: str | None = "aed1ac978a22"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "seat_holdbacks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slot_id", sa.Integer(), nullable=False),
        sa.Column("seats", sa.Integer(), nullable=False),
        sa.Column("location_id", sa.String(length=64), nullable=False),
        sa.Column("online", sa.Boolean(), nullable=False),
        sa.Column("release_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("seats > 0", name=op.f("ck_seat_holdbacks_holdback_seats_positive")),
        sa.ForeignKeyConstraint(
            ["slot_id"],
            ["slots.id"],
            name=op.f("fk_seat_holdbacks_slot_id_slots"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_seat_holdbacks")),
    )
    with op.batch_alter_table("seat_holdbacks", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_seat_holdbacks_release_at"), ["release_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_seat_holdbacks_slot_id"), ["slot_id"], unique=False)

    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("max_active_per_email", sa.Integer(), server_default="6", nullable=False)
        )
        batch_op.add_column(
            sa.Column("max_active_per_phone", sa.Integer(), server_default="6", nullable=False)
        )

    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("opt_in_minutes", sa.Integer(), server_default="30", nullable=False)
        )
        batch_op.add_column(
            sa.Column("release_delay_minutes", sa.Integer(), server_default="0", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("services", schema=None) as batch_op:
        batch_op.drop_column("release_delay_minutes")
        batch_op.drop_column("opt_in_minutes")

    with op.batch_alter_table("locations", schema=None) as batch_op:
        batch_op.drop_column("max_active_per_phone")
        batch_op.drop_column("max_active_per_email")

    with op.batch_alter_table("seat_holdbacks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_seat_holdbacks_slot_id"))
        batch_op.drop_index(batch_op.f("ix_seat_holdbacks_release_at"))

    op.drop_table("seat_holdbacks")
