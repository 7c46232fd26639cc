"""phone contingents: calendars and campaigns keep a share of seats for the phone channel

Revision ID: 4ecb86427330
Revises: ab38a0421b38
Create Date: 2026-11-25 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '4ecb86427330'
down_revision: str | None = 'ab38a0421b38'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('calendars', schema=None) as batch_op:
        batch_op.add_column(sa.Column('phone_share_percent', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('phone_release_days', sa.Integer(), nullable=True))

    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('phone_release_days', sa.Integer(), server_default='0', nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_column('phone_release_days')

    with op.batch_alter_table('calendars', schema=None) as batch_op:
        batch_op.drop_column('phone_release_days')
        batch_op.drop_column('phone_share_percent')
