"""notifications: targets per team, the delivery log, the notifiers' cursor

The notifiers read ended runs by ``finished_at``, hence its index.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-27 15:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = app.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "notification_targets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=True),
        sa.Column("secret", sa.Text(), nullable=True),
        sa.Column("addresses", app.db.JSONData, nullable=False),
        sa.Column("entity_kinds", app.db.JSONData, nullable=False),
        sa.Column("operations", app.db.JSONData, nullable=False),
        sa.Column("statuses", app.db.JSONData, nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(
            ["team_id"],
            ["teams.id"],
            name=op.f("fk_notification_targets_team_id_teams"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_targets")),
    )
    op.create_index(op.f("ix_notification_targets_team_id"), "notification_targets", ["team_id"])
    op.create_table(
        "notification_deliveries",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("target_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("payload", app.db.JSONData, nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", WHEN, nullable=True),
        sa.Column("claimed_until", WHEN, nullable=True),
        sa.Column("tries", app.db.JSONData, nullable=False),
        sa.Column("created_at", WHEN, nullable=False),
        sa.Column("finished_at", WHEN, nullable=True),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["runs.id"],
            name=op.f("fk_notification_deliveries_run_id_runs"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["target_id"],
            ["notification_targets.id"],
            name=op.f("fk_notification_deliveries_target_id_notification_targets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_deliveries")),
        sa.UniqueConstraint(
            "target_id",
            "run_id",
            "event",
            name=op.f("uq_notification_deliveries_target_id_run_id_event"),
        ),
    )
    op.create_index(
        op.f("ix_notification_deliveries_run_id"), "notification_deliveries", ["run_id"]
    )
    op.create_index(
        "ix_notification_deliveries_state_next",
        "notification_deliveries",
        ["state", "next_attempt_at"],
    )
    op.create_index(
        "ix_notification_deliveries_target_created",
        "notification_deliveries",
        ["target_id", "created_at"],
    )
    op.create_table(
        "notifier_cursor",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("finished_at", WHEN, nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_notifier_cursor")),
    )
    op.create_index("ix_runs_finished_at", "runs", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_finished_at", table_name="runs")
    op.drop_table("notifier_cursor")
    op.drop_table("notification_deliveries")
    op.drop_table("notification_targets")
