"""run list indexes

The runs list shows the newest runs first, all of them or those of one status; these
indexes give it that order without sorting every run, so a page (a deep one too)
costs an index walk at any number of runs.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_runs_created_at_id", "runs", ["created_at", "id"])
    op.create_index("ix_runs_status_created_at_id", "runs", ["status", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_runs_status_created_at_id", table_name="runs")
    op.drop_index("ix_runs_created_at_id", table_name="runs")
