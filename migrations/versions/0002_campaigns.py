"""campaigns: window, import summary, rejected rows, do-not-call

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 17:08:50.547892
"""

from alembic import op
import sqlalchemy as sa
import core.db


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dnc_numbers',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('phone_number', sa.String(length=20), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=True),
    sa.Column('created_at', core.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('account_id', 'phone_number', name='uq_dnc_account_phone')
    )
    op.create_table('campaign_rejected_rows',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('campaign_id', sa.String(length=36), nullable=False),
    sa.Column('line_no', sa.Integer(), nullable=False),
    sa.Column('raw_value', sa.String(length=100), nullable=False),
    sa.Column('reason', sa.String(length=100), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('campaign_rejected_rows', schema=None) as batch_op:
        batch_op.create_index('ix_rejected_campaign_line', ['campaign_id', 'line_no'], unique=False)

    with op.batch_alter_table('calls', schema=None) as batch_op:
        # the new index covers campaign_id before the old one goes (MariaDB's FK needs one)
        batch_op.create_index('ix_calls_campaign_due', ['campaign_id', 'status', 'next_attempt_at'], unique=False)
        batch_op.drop_index(batch_op.f('ix_calls_campaign_status'))
        batch_op.create_unique_constraint('uq_calls_campaign_phone', ['campaign_id', 'phone_number'])

    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.add_column(sa.Column('window_start', sa.String(length=5), nullable=False, server_default=sa.text("'09:00'")))
        batch_op.add_column(sa.Column('window_end', sa.String(length=5), nullable=False, server_default=sa.text("'21:00'")))
        batch_op.add_column(sa.Column('timezone', sa.String(length=40), nullable=False, server_default=sa.text("'Asia/Karachi'")))
        batch_op.add_column(sa.Column('start_at', core.db.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('pause_reason', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('csv_filename', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('csv_bytes', sa.BigInteger(), nullable=False, server_default=sa.text("'0'")))
        batch_op.add_column(sa.Column('rows_total', sa.Integer(), nullable=False, server_default=sa.text("'0'")))
        batch_op.add_column(sa.Column('rows_accepted', sa.Integer(), nullable=False, server_default=sa.text("'0'")))
        batch_op.add_column(sa.Column('rows_duplicate', sa.Integer(), nullable=False, server_default=sa.text("'0'")))
        batch_op.add_column(sa.Column('rows_dnc', sa.Integer(), nullable=False, server_default=sa.text("'0'")))
        batch_op.add_column(sa.Column('rows_invalid', sa.Integer(), nullable=False, server_default=sa.text("'0'")))
        batch_op.add_column(sa.Column('import_error', sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column('imported_at', core.db.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('started_at', core.db.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('completed_at', core.db.UTCDateTime(), nullable=True))
        batch_op.create_index('ix_campaigns_account_status', ['account_id', 'status'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.drop_index('ix_campaigns_account_status')
        batch_op.drop_column('completed_at')
        batch_op.drop_column('started_at')
        batch_op.drop_column('imported_at')
        batch_op.drop_column('import_error')
        batch_op.drop_column('rows_invalid')
        batch_op.drop_column('rows_dnc')
        batch_op.drop_column('rows_duplicate')
        batch_op.drop_column('rows_accepted')
        batch_op.drop_column('rows_total')
        batch_op.drop_column('csv_bytes')
        batch_op.drop_column('csv_filename')
        batch_op.drop_column('pause_reason')
        batch_op.drop_column('start_at')
        batch_op.drop_column('timezone')
        batch_op.drop_column('window_end')
        batch_op.drop_column('window_start')

    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.drop_constraint('uq_calls_campaign_phone', type_='unique')
        batch_op.create_index(batch_op.f('ix_calls_campaign_status'), ['campaign_id', 'status'], unique=False)
        batch_op.drop_index('ix_calls_campaign_due')

    op.drop_table('campaign_rejected_rows')  # drops its index with it
    op.drop_table('dnc_numbers')
