"""initial schema

Revision ID: 0001
Revises: 
Create Date: 2026-11-26 17:01:50.737650
"""

from alembic import op
import sqlalchemy as sa
import core.db


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('accounts',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('balance', core.db.Money(), nullable=False),
    sa.Column('reserved', core.db.Money(), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('rate_per_minute', core.db.Money(), nullable=False),
    sa.Column('pulse_seconds', sa.Integer(), nullable=False),
    sa.Column('max_concurrent_calls', sa.Integer(), nullable=False),
    sa.Column('created_at', core.db.UTCDateTime(), nullable=False),
    sa.CheckConstraint('balance >= 0', name='ck_accounts_balance_nonneg'),
    sa.CheckConstraint('reserved <= balance', name='ck_accounts_reserved_le_balance'),
    sa.CheckConstraint('reserved >= 0', name='ck_accounts_reserved_nonneg'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_table('api_keys',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('prefix', sa.String(length=32), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', core.db.UTCDateTime(), nullable=False),
    sa.Column('last_used_at', core.db.UTCDateTime(), nullable=True),
    sa.Column('revoked_at', core.db.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('prefix')
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_account_id'), ['account_id'], unique=False)

    op.create_table('audio_files',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('status', sa.Enum('READY', 'DELETED', name='audiostatus', native_enum=False, length=16), nullable=False),
    sa.Column('original_filename', sa.String(length=255), nullable=True),
    sa.Column('source_format', sa.String(length=32), nullable=False),
    sa.Column('duration_ms', sa.Integer(), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', core.db.UTCDateTime(), nullable=False),
    sa.Column('deleted_at', core.db.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audio_files', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audio_files_account_id'), ['account_id'], unique=False)

    op.create_table('ledger_entries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('kind', sa.Enum('TOPUP', 'RESERVE', 'RELEASE', 'CHARGE', 'REFUND', 'ADJUSTMENT', name='ledgerkind', native_enum=False, length=16), nullable=False),
    sa.Column('amount', core.db.Money(), nullable=False),
    sa.Column('hold', core.db.Money(), nullable=False),
    sa.Column('balance_after', core.db.Money(), nullable=False),
    sa.Column('reserved_after', core.db.Money(), nullable=False),
    sa.Column('call_id', sa.String(length=36), nullable=True),
    sa.Column('attempt_id', sa.String(length=36), nullable=True),
    sa.Column('description', sa.String(length=255), nullable=False),
    sa.Column('created_at', core.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('attempt_id', 'kind', name='uq_ledger_attempt_kind')
    )
    with op.batch_alter_table('ledger_entries', schema=None) as batch_op:
        batch_op.create_index('ix_ledger_account_id', ['account_id', 'id'], unique=False)

    op.create_table('users',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('created_at', core.db.UTCDateTime(), nullable=False),
    sa.Column('last_login_at', core.db.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('email')
    )
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_users_account_id'), ['account_id'], unique=False)

    op.create_table('campaigns',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('audio_id', sa.String(length=36), nullable=False),
    sa.Column('status', sa.Enum('IMPORTING', 'SCHEDULED', 'RUNNING', 'PAUSED', 'COMPLETED', 'CANCELLED', 'FAILED', name='campaignstatus', native_enum=False, length=16), nullable=False),
    sa.Column('max_retries', sa.Integer(), nullable=False),
    sa.Column('retry_delay_seconds', sa.Integer(), nullable=False),
    sa.Column('concurrent_limit', sa.Integer(), nullable=False),
    sa.Column('caller_id', sa.String(length=20), nullable=True),
    sa.Column('created_at', core.db.UTCDateTime(), nullable=False),
    sa.Column('updated_at', core.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['audio_id'], ['audio_files.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('campaigns', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_campaigns_account_id'), ['account_id'], unique=False)

    op.create_table('calls',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('campaign_id', sa.String(length=36), nullable=True),
    sa.Column('audio_id', sa.String(length=36), nullable=False),
    sa.Column('phone_number', sa.String(length=20), nullable=False),
    sa.Column('caller_id', sa.String(length=20), nullable=True),
    sa.Column('status', sa.Enum('QUEUED', 'DIALING', 'RINGING', 'ANSWERED', 'COMPLETED', 'BUSY', 'NO_ANSWER', 'FAILED', 'CANCELLED', name='callstatus', native_enum=False, length=16), nullable=False),
    sa.Column('max_retries', sa.Integer(), nullable=False),
    sa.Column('retry_delay_seconds', sa.Integer(), nullable=False),
    sa.Column('attempts_count', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', core.db.UTCDateTime(), nullable=True),
    sa.Column('live_attempt_id', sa.String(length=36), nullable=True),
    sa.Column('next_attempt_id', sa.String(length=36), nullable=True),
    sa.Column('last_cause', sa.String(length=64), nullable=True),
    sa.Column('last_sip_status', sa.Integer(), nullable=True),
    sa.Column('billsec', sa.Integer(), nullable=False),
    sa.Column('cost', core.db.Money(), nullable=False),
    sa.Column('answered_at', core.db.UTCDateTime(), nullable=True),
    sa.Column('ended_at', core.db.UTCDateTime(), nullable=True),
    sa.Column('cancel_requested_at', core.db.UTCDateTime(), nullable=True),
    sa.Column('idempotency_key', sa.String(length=255), nullable=True),
    sa.Column('request_fingerprint', sa.String(length=64), nullable=True),
    sa.Column('created_at', core.db.UTCDateTime(), nullable=False),
    sa.Column('updated_at', core.db.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['audio_id'], ['audio_files.id'], ),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('account_id', 'idempotency_key', name='uq_calls_idempotency')
    )
    with op.batch_alter_table('calls', schema=None) as batch_op:
        batch_op.create_index('ix_calls_account_created', ['account_id', 'created_at'], unique=False)
        batch_op.create_index('ix_calls_account_phone', ['account_id', 'phone_number'], unique=False)
        batch_op.create_index('ix_calls_campaign_status', ['campaign_id', 'status'], unique=False)
        batch_op.create_index('ix_calls_due', ['status', 'next_attempt_at'], unique=False)

    op.create_table('call_attempts',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('call_id', sa.String(length=36), nullable=False),
    sa.Column('account_id', sa.String(length=36), nullable=False),
    sa.Column('attempt_no', sa.Integer(), nullable=False),
    sa.Column('node', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Enum('QUEUED', 'DIALING', 'RINGING', 'ANSWERED', 'COMPLETED', 'BUSY', 'NO_ANSWER', 'FAILED', 'CANCELLED', name='callstatus', native_enum=False, length=16), nullable=False),
    sa.Column('dialed_number', sa.String(length=20), nullable=False),
    sa.Column('started_at', core.db.UTCDateTime(), nullable=False),
    sa.Column('ringing_at', core.db.UTCDateTime(), nullable=True),
    sa.Column('answered_at', core.db.UTCDateTime(), nullable=True),
    sa.Column('ended_at', core.db.UTCDateTime(), nullable=True),
    sa.Column('hangup_cause', sa.String(length=64), nullable=True),
    sa.Column('q850_cause', sa.Integer(), nullable=True),
    sa.Column('sip_status', sa.Integer(), nullable=True),
    sa.Column('billsec', sa.Integer(), nullable=False),
    sa.Column('duration', sa.Integer(), nullable=False),
    sa.Column('played_ms', sa.Integer(), nullable=True),
    sa.Column('reserved_amount', core.db.Money(), nullable=False),
    sa.Column('cost', core.db.Money(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['call_id'], ['calls.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('call_id', 'attempt_no', name='uq_attempts_call_no')
    )
    with op.batch_alter_table('call_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_attempts_open', ['node', 'ended_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_call_attempts_account_id'), ['account_id'], unique=False)



def downgrade() -> None:
    # children first; dropping a table drops its indexes (MariaDB refuses to drop an
    # index a foreign key still needs)
    for table in ("call_attempts", "calls", "campaigns", "users", "ledger_entries", "audio_files", "api_keys",
                  "accounts"):
        op.drop_table(table)
