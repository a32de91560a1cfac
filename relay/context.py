"""What every loop of a relay process shares, built once by ``serve_relay``."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.catalog.registry import Catalog
from app.config import Settings
from app.dispatch.batches import Services
from app.queue import QueueClient
from app.security.crypto import SecretBox


@dataclass(frozen=True)
class RelayContext:
    """The relay process's settings, catalogue, database, Redis client and secret box,
    given to its event consumer, scheduler, notifier and batch driver alike.

    ``name`` is the process's own: its consumer name in the events group, and who
    recorded a schedule's slot.
    """

    settings: Settings
    catalog: Catalog
    sessionmaker: async_sessionmaker[AsyncSession]
    redis: QueueClient
    box: SecretBox
    name: str

    @property
    def services(self) -> Services:
        """What starting runs needs (a batch's items, a schedule's slot)."""
        return Services(self.catalog, self.redis, self.box)
