"""Engine, sessions and the declarative base."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from datetime import UTC, datetime
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import JSON, Connection, DateTime, Engine, MetaData, event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator, TypeEngine

from app.config import Settings, get_settings

logger = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSON columns: JSONB on PostgreSQL, JSON text elsewhere.
JSONData: TypeEngine[Any] = JSON().with_variant(JSONB(), "postgresql")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime}


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class WritesBusy(SQLAlchemyError):
    """The database did not take this write in time: answered 503 with Retry-After.

    A SQLAlchemyError, so that whoever already copes with a failed transaction (the
    relay's sweep, a token's last use) copes with this one too.
    """

    retry_after = 1  # seconds


class WriteGate:
    """One writing transaction at a time in this process, first come first served.

    SQLite has one writer per file. Without the gate, each waiting write held a pooled
    connection and polled the file lock in SQLite's busy handler, which serves no one
    in order: under 50 concurrent requests, some waited past the busy timeout and
    failed. Behind the gate they wait in memory, in arrival order, holding nothing; the
    busy timeout is left to cover the other processes (worker, relay), each of which
    has at most one write of its own waiting at the lock.
    """

    def __init__(self, queue: int, wait: float) -> None:
        self.queue = queue
        self.wait = wait
        self._lock = asyncio.Lock()  # wakes its waiters in the order they came
        self._waiting = 0

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[Turn]:
        """Hold the gate for one transaction; ``WritesBusy`` when the line is too long."""
        if self._waiting >= self.queue:
            raise WritesBusy(f"{self._waiting} writes are waiting already; try again")
        self._waiting += 1
        try:
            async with asyncio.timeout(self.wait):
                await self._lock.acquire()
        except TimeoutError:
            raise WritesBusy(f"no turn to write within {self.wait:g} s; try again") from None
        finally:
            self._waiting -= 1
        held = Turn(self._lock)
        try:
            yield held
        finally:
            held.release()


class Turn:
    """A writer's turn at the gate; given back once, at the boundary or before it."""

    def __init__(self, lock: asyncio.Lock) -> None:
        self._lock: asyncio.Lock | None = lock

    def release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None


_GATES: WeakKeyDictionary[Engine, WriteGate] = WeakKeyDictionary()


def _sqlite_pragmas(busy_timeout: float) -> Callable[[DBAPIConnection, ConnectionPoolEntry], None]:
    def pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # We say when transactions begin (see _sqlite_begin), not the driver.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cursor.close()

    return pragmas


WRITE_OPTION = "aegir_writes"
TURN = "aegir_write_turn"


def _sqlite_begin(connection: Connection) -> None:
    """Writing transactions take SQLite's write lock when they start, not at a write.

    A transaction that reads, then writes after another process has committed, fails
    at once with "database is locked" (the busy timeout does not apply), and the API,
    workers and relay all write. Waiting for the lock up front, within the busy
    timeout, never fails that way. Read-only work keeps a deferred BEGIN, so readers
    never wait for writers (WAL).
    """
    writes = connection.get_execution_options().get(WRITE_OPTION, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


def create_engine(url: str, settings: Settings | None = None) -> AsyncEngine:
    """The engine for ``url``, tuned by ``settings`` (by default this process's own,
    ``get_settings()``): on SQLite its write gate and busy timeout, elsewhere its pool."""
    settings = settings or get_settings()
    if url.startswith("sqlite"):
        engine = create_async_engine(url)
        pragmas = _sqlite_pragmas(settings.sqlite_busy_timeout.total_seconds())
        event.listen(engine.sync_engine, "connect", pragmas)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        wait = settings.sqlite_write_wait.total_seconds()
        _GATES[engine.sync_engine] = WriteGate(settings.sqlite_write_queue, wait)
        return engine
    return create_async_engine(
        url,
        pool_pre_ping=True,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_overflow,
        # A server that does not answer (not one that refuses) fails the connection in
        # seconds, so a request gets its 503 instead of waiting out asyncpg's 60 s.
        connect_args={"timeout": 5} if url.startswith("postgresql+asyncpg") else {},
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # Every model must be imported before the first query, whichever process this is.
    import app.models  # noqa: F401

    return async_sessionmaker(engine, expire_on_commit=False)


AfterCommit = Callable[[], Awaitable[object]]


def after_commit(session: AsyncSession, callback: AfterCommit) -> None:
    """Run ``callback`` once the boundary has committed (say, enqueue what was saved)."""
    session.info.setdefault("after_commit", []).append(callback)


@asynccontextmanager
async def session_scope(
    sessionmaker: async_sessionmaker[AsyncSession], *, writes: bool = True
) -> AsyncIterator[AsyncSession]:
    """One session per request or job: committed at the boundary, rolled back on error.

    A context manager, not a generator to loop over: an error (or a cancellation) in
    the block must reach the rollback here at once, or an open write transaction
    would hold SQLite's lock until the garbage collector came by. On SQLite a writing
    session waits for its turn at the engine's gate first, and holds it until the
    commit or rollback; ``WritesBusy`` when the turn does not come in time.
    """
    async with sessionmaker() as session:
        async with _turn(session, writes) as held:
            if isinstance(held, Turn):
                session.info[TURN] = held
            try:
                if writes:
                    await _begin_writing(session)
                yield session
            except BaseException:
                await session.rollback()
                raise
            else:
                await session.commit()
        await _run_after_commit(session)


async def commit_and_yield(session: AsyncSession) -> None:
    """Commit now and give this session's turn to write to the next writer: for a
    request that then waits a long time (an action waiting for its answer) and writes
    nothing more. On SQLite every other write of the process would wait behind it."""
    await session.commit()
    held = session.info.pop(TURN, None)
    if isinstance(held, Turn):
        held.release()


def _turn(session: AsyncSession, writes: bool) -> AbstractAsyncContextManager[object]:
    bind = session.get_bind()
    gate = _GATES.get(bind if isinstance(bind, Engine) else bind.engine) if writes else None
    return gate.turn() if gate is not None else nullcontext()


async def _begin_writing(session: AsyncSession) -> None:
    try:
        await session.connection(execution_options={WRITE_OPTION: True})
    except OperationalError as error:
        # Another process held SQLite's lock for the whole busy timeout.
        if "database is locked" in str(error.orig):
            raise WritesBusy(f"the database stayed locked: {error.orig}") from error
        raise


async def _run_after_commit(session: AsyncSession) -> None:
    callbacks: list[AfterCommit] = session.info.pop("after_commit", [])
    for callback in callbacks:
        try:
            await callback()
        except Exception:
            # What was committed stands; sweeps repair what a callback could not do.
            logger.warning("after-commit step failed", exc_info=True)
