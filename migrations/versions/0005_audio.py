"""audio: conversion on the worker (PROCESSING -> READY, or FAILED with the error)

Revision ID: 0005
Revises: 0003
Create Date: 2026-12-05 09:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0003'
branch_labels = None
depends_on = None

# Plain ALTER TABLE ADD/DROP COLUMN on both backends (SQLite >= 3.35 drops columns natively): a batch
# copy of audio_files would have to drop a table that calls and campaigns reference.


def upgrade() -> None:
    op.add_column('audio_files', sa.Column('error_code', sa.String(length=32), nullable=True))
    op.add_column('audio_files', sa.Column('error_message', sa.String(length=500), nullable=True))
    op.add_column('audio_files', sa.Column('error_details', sa.JSON(), nullable=True))


def downgrade() -> None:
    # audio that never became READY has no file to play: it leaves with the columns
    op.execute("UPDATE audio_files SET status = 'DELETED' WHERE status IN ('PROCESSING', 'FAILED')")
    op.drop_column('audio_files', 'error_details')
    op.drop_column('audio_files', 'error_message')
    op.drop_column('audio_files', 'error_code')
