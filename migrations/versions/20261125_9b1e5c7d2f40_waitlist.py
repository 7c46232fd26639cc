"""waiting list: entries and their person keys; the places a campaign has given out

Revision ID: 9b1e5c7d2f40
Revises: 4ecb86427330
Create Date: 2026-11-25 10:00:00.000000
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "9b1e5c7d2f40"
down_revision: str | None = "4ecb86427330"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE = ("pending", "confirmed", "checked_in", "no_show", "completed")


def upgrade() -> None:
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.add_column(sa.Column("taken", sa.Integer(), server_default="0", nullable=False))
        batch_op.create_check_constraint(op.f("ck_campaigns_taken_not_negative"), "taken >= 0")

    op.create_table(
        "waitlist_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
        sa.Column("service_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=32), nullable=True),
        sa.Column("attendee_name", sa.String(length=200), nullable=True),
        sa.Column("attendee_birth_date", sa.Date(), nullable=True),
        sa.Column("attendee_postcode", sa.String(length=10), nullable=True),
        sa.Column("contact_name", sa.String(length=200), nullable=True),
        sa.Column("contact_email", sa.String(length=320), nullable=True),
        sa.Column("contact_phone", sa.String(length=32), nullable=True),
        sa.Column("person_keys", sa.JSON(), nullable=False),
        sa.Column("language", sa.String(length=2), nullable=False),
        sa.Column("booking_id", sa.String(length=32), nullable=True),
        sa.Column("offer_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("claim_until", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["booking_id"],
            ["bookings.id"],
            name=op.f("fk_waitlist_entries_booking_id_bookings"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["campaign_id"],
            ["campaigns.id"],
            name=op.f("fk_waitlist_entries_campaign_id_campaigns"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_waitlist_entries")),
    )
    with op.batch_alter_table("waitlist_entries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_waitlist_entries_booking_id"), ["booking_id"], unique=False
        )
        batch_op.create_index(
            "ix_waitlist_entries_queue", ["campaign_id", "status", "id"], unique=False
        )

    op.create_table(
        "waitlist_keys",
        sa.Column("campaign_id", sa.String(length=64), nullable=False),
        sa.Column("person_key", sa.String(length=32), nullable=False),
        sa.Column("entry_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["waitlist_entries.id"],
            name=op.f("fk_waitlist_keys_entry_id_waitlist_entries"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("campaign_id", "person_key", name=op.f("pk_waitlist_keys")),
    )
    with op.batch_alter_table("waitlist_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_waitlist_keys_entry_id"), ["entry_id"], unique=False)

    # the places given out so far: bookings of a campaign's first dose that were not cancelled
    conn = op.get_bind()
    firsts = dict(
        conn.execute(
            sa.text("SELECT first_service_id, id FROM campaigns WHERE first_service_id IS NOT NULL")
        ).all()
    )
    if not firsts:
        return
    rows = conn.execute(
        sa.text(
            "SELECT DISTINCT b.id, a.service_ids FROM bookings b "
            "JOIN appointments a ON a.booking_id = b.id WHERE b.status IN :active"
        ).bindparams(sa.bindparam("active", expanding=True)),
        {"active": list(ACTIVE)},
    ).all()
    counts: Counter[str] = Counter()
    seen: set[tuple[str, str]] = set()
    for booking_id, service_ids in rows:
        ids = json.loads(service_ids) if isinstance(service_ids, str) else service_ids
        for service_id in ids or ():
            campaign = firsts.get(service_id)
            if campaign is not None and (booking_id, campaign) not in seen:
                seen.add((booking_id, campaign))
                counts[campaign] += 1
    for campaign, n in counts.items():
        conn.execute(
            sa.text("UPDATE campaigns SET taken = :n WHERE id = :id"), {"n": n, "id": campaign}
        )


def downgrade() -> None:
    with op.batch_alter_table("waitlist_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_waitlist_keys_entry_id"))
    op.drop_table("waitlist_keys")
    with op.batch_alter_table("waitlist_entries", schema=None) as batch_op:
        batch_op.drop_index("ix_waitlist_entries_queue")
        batch_op.drop_index(batch_op.f("ix_waitlist_entries_booking_id"))
    op.drop_table("waitlist_entries")
    with op.batch_alter_table("campaigns", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_campaigns_taken_not_negative"), type_="check")
        batch_op.drop_column("taken")
