"""schedules and their slots

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27 16:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _at(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, app.db.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("team_id", sa.Uuid(), nullable=False),
        sa.Column("target", sa.String(20), nullable=False),
        sa.Column("operation_id", sa.Uuid(), nullable=False),
        sa.Column("entity_id", sa.Uuid(), nullable=False),
        sa.Column("operation_type", sa.String(63), nullable=False),
        sa.Column("cron", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("values", app.db.JSONData, nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("missed_policy", sa.String(20), nullable=False),
        sa.Column("keep_last", sa.Integer(), nullable=True),
        sa.Column("keep_days", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(150), nullable=False),
        _at("counted_from"),
        _at("created_at"),
        _at("updated_at"),
        sa.ForeignKeyConstraint(["team_id"], ["teams.id"], ondelete="CASCADE",
                                name=op.f("fk_schedules_team_id_teams")),
        sa.ForeignKeyConstraint(["operation_id"], ["operations.id"], ondelete="CASCADE",
                                name=op.f("fk_schedules_operation_id_operations")),
        sa.ForeignKeyConstraint(["entity_id"], ["entities.id"], ondelete="CASCADE",
                                name=op.f("fk_schedules_entity_id_entities")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedules")),
    )  # fmt: skip
    op.create_index("ix_schedules_team_id_name", "schedules", ["team_id", "name"])
    op.create_index(op.f("ix_schedules_operation_id"), "schedules", ["operation_id"])
    op.create_table(
        "schedule_slots",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("schedule_id", sa.Uuid(), nullable=False),
        _at("slot_at"),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("run_id", sa.Uuid(), nullable=True),
        sa.Column("prune_run_id", sa.Uuid(), nullable=True),
        _at("recorded_at"),
        sa.Column("recorded_by", sa.String(200), nullable=True),
        sa.ForeignKeyConstraint(["schedule_id"], ["schedules.id"], ondelete="CASCADE",
                                name=op.f("fk_schedule_slots_schedule_id_schedules")),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="SET NULL",
                                name=op.f("fk_schedule_slots_run_id_runs")),
        sa.ForeignKeyConstraint(["prune_run_id"], ["runs.id"], ondelete="SET NULL",
                                name=op.f("fk_schedule_slots_prune_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_schedule_slots")),
        sa.UniqueConstraint("schedule_id", "slot_at",
                            name=op.f("uq_schedule_slots_schedule_id_slot_at")),
    )  # fmt: skip


def downgrade() -> None:
    op.drop_table("schedule_slots")
    op.drop_index(op.f("ix_schedules_operation_id"), table_name="schedules")
    op.drop_index("ix_schedules_team_id_name", table_name="schedules")
    op.drop_table("schedules")
