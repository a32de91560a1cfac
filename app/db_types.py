"""Column types shared by the models."""

from typing import Any

from sqlalchemy import JSON
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeEngine

JSONData: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")
