"""Actions wait in a plain Redis list (issue 12): taken oldest first, and one whose
request has given up waiting is never run when a worker comes back."""

from __future__ import annotations

from app.queue import ACTIONS_LIST, create_redis, enqueue_action, next_action


async def test_an_expired_action_is_dropped_and_the_next_is_taken_in_order(
    redis_url: str,
) -> None:
    redis = create_redis(redis_url, 1.0)
    try:
        await redis.delete(ACTIONS_LIST)
        stale = await enqueue_action(redis, {"task_id": "a"}, expires=-1.0)
        first = await enqueue_action(redis, {"task_id": "b"}, expires=30.0)
        second = await enqueue_action(redis, {"task_id": "c"}, expires=30.0)
        taken = [await next_action(redis, 1.0), await next_action(redis, 1.0)]
        assert [(a or {}).get("job_id") for a in taken] == [first, second]
        assert stale not in {first, second}
        assert await next_action(redis, 1.0) is None, "nothing left, the stale one included"
    finally:
        await redis.delete(ACTIONS_LIST)
        await redis.aclose()
