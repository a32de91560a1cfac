"""A plain arq worker for the baselines, in a process of its own like Aegir's worker.

``python -m bench.arq_worker REDIS_URL QUEUE POLL_DELAY``; SIGTERM stops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import Any

from arq.connections import RedisSettings, create_pool
from arq.worker import Worker, func

NOOP = "noop"
SPAWN = "spawn"


async def noop(ctx: dict[str, Any]) -> int:
    return 0


async def spawn(ctx: dict[str, Any], argv: list[str]) -> int:
    """Run a command to its end, as Aegir's local executor does (pipes, own session)."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    await process.communicate()
    return process.returncode if process.returncode is not None else -1


async def serve(redis_url: str, queue: str, poll_delay: float) -> None:
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    worker = Worker(
        functions=[func(noop, name=NOOP), func(spawn, name=SPAWN)],
        queue_name=queue,
        poll_delay=poll_delay,
        redis_pool=pool,
        handle_signals=False,
    )
    main = asyncio.create_task(worker.main())
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await main
    await worker.close()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1], sys.argv[2], float(sys.argv[3])))
