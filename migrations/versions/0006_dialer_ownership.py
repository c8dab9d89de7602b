"""dialer ownership: attempt owners and dialer heartbeats, frozen rates, dispatch and cancel indexes

Revision ID: 0006
Revises: 0005
"""

from alembic import op
import sqlalchemy as sa
import core.db


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dialer_instances',
    sa.Column('id', sa.String(length=80), nullable=False),
    sa.Column('node', sa.String(length=64), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('hostname', sa.String(length=255), nullable=False),
    sa.Column('started_at', core.db.UTCDateTime(), nullable=False),
    sa.Column('heartbeat_at', core.db.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('dialer_instances', schema=None) as batch_op:
        batch_op.create_index('ix_dialer_instances_node', ['node', 'heartbeat_at'], unique=False)

    with op.batch_alter_table('call_attempts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('owner', sa.String(length=80), nullable=True))
        batch_op.add_column(sa.Column('rate_per_minute', core.db.Money(), nullable=True))
        batch_op.add_column(sa.Column('pulse_seconds', sa.Integer(), nullable=True))

    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('rate_per_minute', core.db.Money(), nullable=True))
        batch_op.add_column(sa.Column('pulse_seconds', sa.Integer(), nullable=True))
        # the new index covers campaign_id before the old one goes (MariaDB's FK needs one)
        batch_op.create_index('ix_calls_source_due', ['campaign_id', 'status', 'account_id', 'next_attempt_at'],
                              unique=False)
        batch_op.drop_index('ix_calls_campaign_due')
        batch_op.create_index('ix_calls_cancel', ['status', 'cancel_requested_at'], unique=False)

    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.create_check_constraint('ck_accounts_rate_positive', 'rate_per_minute > 0')
        batch_op.create_check_constraint('ck_accounts_pulse_positive', 'pulse_seconds > 0')


def downgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_constraint('ck_accounts_pulse_positive', type_='check')
        batch_op.drop_constraint('ck_accounts_rate_positive', type_='check')

    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_index('ix_calls_cancel')
        batch_op.create_index('ix_calls_campaign_due', ['campaign_id', 'status', 'next_attempt_at'], unique=False)
        batch_op.drop_index('ix_calls_source_due')
        batch_op.drop_column('pulse_seconds')
        batch_op.drop_column('rate_per_minute')

    with op.batch_alter_table('call_attempts', schema=None) as batch_op:
        batch_op.drop_column('pulse_seconds')
        batch_op.drop_column('rate_per_minute')
        batch_op.drop_column('owner')

    with op.batch_alter_table('dialer_instances', schema=None) as batch_op:
        batch_op.drop_index('ix_dialer_instances_node')

    op.drop_table('dialer_instances')
