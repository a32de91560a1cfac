"""The API process's pub/sub hub, on a real Redis."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from app.api.hub import Hub, Subscription


@pytest.fixture
async def hub(redis_url: str) -> AsyncIterator[Hub]:
    hub = Hub(redis_url, timeout=5, size=3)
    yield hub
    await hub.aclose()


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def _subscribers(redis: aioredis.Redis, channel: str) -> int:
    counts = await redis.pubsub_numsub(channel)
    return int(counts[0][1])


async def _publish(redis: aioredis.Redis, channel: str, *numbers: int) -> None:
    for number in numbers:
        await redis.publish(channel, json.dumps({"n": number}))


async def _next_numbers(client: Subscription, count: int) -> list[int]:
    found = []
    for _ in range(count):
        message = await client.next(5)
        assert message is not None
        found.append(message["n"])
    return found


async def test_clients_of_a_channel_share_one_subscription_while_any_is_left(
    hub: Hub, redis: aioredis.Redis
) -> None:
    async with hub.subscribe("hub:a") as first, hub.subscribe("hub:a") as second:
        assert await _subscribers(redis, "hub:a") == 1
        await _publish(redis, "hub:a", 1, 2)
        assert await _next_numbers(first, 2) == [1, 2]
        assert await _next_numbers(second, 2) == [1, 2]
    assert await _subscribers(redis, "hub:a") == 0


async def test_a_client_behind_is_flagged_and_the_others_go_on(
    hub: Hub, redis: aioredis.Redis
) -> None:
    async with hub.subscribe("hub:b") as slow, hub.subscribe("hub:b") as fast:
        for number in range(1, 5):
            await _publish(redis, "hub:b", number)
            assert await _next_numbers(fast, 1) == [number]
        assert await slow.next(0.1) is None
        assert slow.overflowed  # 4 messages, room for 3: it reads the database instead
        slow.overflowed = False
        await _publish(redis, "hub:b", 5)
        assert await _next_numbers(slow, 1) == [5]
        assert await _next_numbers(fast, 1) == [5]


async def test_a_client_is_flagged_once_subscribed_again_after_losing_redis(
    hub: Hub, redis: aioredis.Redis
) -> None:
    async with hub.subscribe("hub:c") as client:
        await redis.client_kill_filter(_type="pubsub")
        assert await client.next(10) is None
        assert client.overflowed  # messages may have gone by while it was not subscribed
        assert client.live
        client.overflowed = False
        await _publish(redis, "hub:c", 1)
        assert await _next_numbers(client, 1) == [1]
