"""Run events as they travel worker -> Redis Stream -> relay -> database and subscribers."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any, Literal, TypedDict

import orjson
from redis.asyncio import Redis

EVENTS_STREAM = "aegir:events"
RELAY_GROUP = "relay"
STATUS_CHANNEL = "aegir:runs"
CANCEL_CHANNEL = "aegir:cancel"


def run_channel(run_id: uuid.UUID | str) -> str:
    return f"aegir:run:{run_id}"


class LogEvent(TypedDict):
    t: Literal["log"]
    run: str
    attempt: int
    # [seq, stream, line, unix time]
    lines: list[tuple[int, str, str, float]]


class OutputEvent(TypedDict):
    t: Literal["output"]
    run: str
    attempt: int
    task: str
    name: str
    value: Any


class TaskEvent(TypedDict):
    t: Literal["task"]
    run: str
    attempt: int
    position: int
    status: str
    at: float


class ExitEvent(TypedDict):
    t: Literal["exit"]
    run: str
    attempt: int
    status: str
    code: int
    first_seq: int
    last_seq: int
    at: float


class LostEvent(TypedDict):
    """Sent by the sweeper once it has settled an attempt whose worker is gone: the line
    that ends that attempt's log, stored after every line the attempt sent."""

    t: Literal["lost"]
    run: str
    attempt: int
    line: str
    at: float


Event = LogEvent | OutputEvent | TaskEvent | ExitEvent | LostEvent


def status_message(
    run_id: uuid.UUID | str, status: str, entity_id: uuid.UUID | str | None = None, **extra: Any
) -> str:
    """What ``/ws/events`` subscribers receive when a run changes status."""
    body = {"run": str(run_id), "status": status, "entity": entity_id and str(entity_id), **extra}
    return json.dumps(body, default=str)


def typed_status(message: str) -> str:
    """A status message as sent on a run's own channel, beside its log lines."""
    return json.dumps({"type": "status", **json.loads(message)})


def status_messages(
    run_id: uuid.UUID | str, status: str, entity_id: uuid.UUID | str | None = None, **extra: Any
) -> list[tuple[str, str]]:
    """A status change, for ``/ws/events`` subscribers and for the run's own tail."""
    message = status_message(run_id, status, entity_id, **extra)
    return [(STATUS_CHANNEL, message), (run_channel(run_id), typed_status(message))]


async def publish(redis: Redis, messages: Iterable[tuple[str, str]]) -> None:
    """Publish (channel, message) pairs in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for channel, message in messages:
            pipe.publish(channel, message)
        await pipe.execute()


async def send_events(redis: Redis, events: Iterable[Event]) -> None:
    """Append events to the stream, in order, in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        for event in events:
            pipe.xadd(EVENTS_STREAM, encode(event))  # type: ignore[arg-type]
        await pipe.execute()


def dumps(body: Any) -> str:
    """Compact JSON, by orjson (a log batch of 500 lines is most of what the relay and
    workers spend serialising); by json where orjson refuses (say, a lone surrogate)."""
    try:
        return orjson.dumps(body).decode()
    except TypeError:  # orjson.JSONEncodeError is a TypeError
        return json.dumps(body, separators=(",", ":"))


def encode(event: Event) -> dict[str, bytes]:
    return {"e": dumps(event).encode()}


def decode(fields: dict[bytes, bytes]) -> Event:
    event: Event = orjson.loads(fields[b"e"])
    return event
