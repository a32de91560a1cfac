"""Websockets: a run's log, live and lossless; run status changes.

Every API process can serve every client: lines come from the database, and news of
new ones from Redis pub/sub, published by the relay after its commit, through the
process's one subscription (``app.api.hub``). So a client first gets the stored lines
after ``after``, then live ones; a gap in the live stream (a message missed, a slow
client's overflow) is filled from the database.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from redis.exceptions import RedisError

from app.api.access import visible_run
from app.api.hub import Subscription
from app.api.metrics import open_sockets
from app.entities.entity import repository as entities
from app.entities.run import repository as runs
from app.entities.run.models import Run
from app.entities.run.states import FINAL
from app.entities.team.models import Role
from app.errors import NotFound, Unauthorized
from app.events import STATUS_CHANNEL, dumps, run_channel
from app.security.auth import authenticate
from app.security.principal import Principal
from app.state import app_state

router = APIRouter()

PAGE = 1000
IDLE_CHECK = 5.0  # while not subscribed (Redis lost): a look at the database this often
# While subscribed, nothing published is missed unflagged: only a rare look, for what was
# never published (a relay that died between its commit and its publish).
LIVE_CHECK = 30.0
COMPLETE_WAIT = 5.0
# Ended runs remembered per /ws/events connection, to drop their stale statuses.
ENDED_HELD = 10_000


@router.websocket("/ws/runs/{run_id}")
async def run_log(websocket: WebSocket, run_id: uuid.UUID, after: int = 0) -> None:
    await websocket.accept()
    principal = await _admit(websocket)
    if principal is None:
        return
    state = app_state(websocket.app)
    try:
        async with state.sessionmaker() as session:
            await visible_run(session, principal, run_id, Role.viewer)
        async with open_sockets.held(state):
            await _RunTail(websocket, run_id, max(after, 0)).serve()
    except NotFound:
        await websocket.close(code=4404, reason=f"no run with id {run_id}")
    except WebSocketDisconnect:
        pass


@router.websocket("/ws/events")
async def run_events(websocket: WebSocket) -> None:
    """Run status changes as they happen. ``{"type": "resync"}`` means: re-read the list."""
    await websocket.accept()
    principal = await _admit(websocket)
    if principal is None:
        return
    feed = app_state(websocket.app).hub.subscribe(STATUS_CHANNEL)
    teams: dict[str, uuid.UUID | None] = {}
    ended = _Ended()
    gone = asyncio.create_task(_until_gone(websocket))
    try:
        async with feed, open_sockets.held(app_state(websocket.app)):
            while (message := await _next_or_gone(feed, gone)) is not _GONE:
                if message is None or feed.overflowed:
                    feed.overflowed = False
                    await websocket.send_json({"type": "resync"})
                    continue
                if "batch" in message:  # a batch's change (app.dispatch.batches.announce)
                    if _may_see_team(principal, message):
                        await websocket.send_text(json.dumps({"type": "batch", **message}))
                    continue
                if ended.stale(message):
                    continue
                if await _may_see(websocket, principal, message, teams):
                    await websocket.send_text(json.dumps({"type": "run", **message}))
    except (WebSocketDisconnect, RedisError):
        pass
    finally:
        gone.cancel()


# What _next_or_gone answers once the client has left.
_GONE: dict[str, Any] = {}


async def _until_gone(websocket: WebSocket) -> None:
    """Return when the client leaves (or the server closes the socket as it stops). The
    events feed only sends: without this, a socket whose client left stayed open, and
    counted, until a message came to fail on it, and held the server's stop."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


async def _next_or_gone(feed: Subscription, gone: asyncio.Task[None]) -> dict[str, Any] | None:
    """The feed's next message, or ``_GONE`` once ``gone`` ends first."""
    if gone.done():
        return _GONE
    waiting = asyncio.ensure_future(feed.next(None))
    await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
    if not waiting.done():
        waiting.cancel()
        return _GONE
    return waiting.result()


class _Ended:
    """The runs whose final status a connection has sent, newest last.

    A final status never moves again, but the processes that publish a run's statuses
    are not ordered: the worker can see ``cancelling`` in the database, end the run and
    publish ``cancelled`` before the API has published its ``cancelling``. What comes
    for such a run afterwards is stale, and would leave a subscriber believing that
    the run still goes. Bounded: a stale message trails its final one by moments.
    """

    def __init__(self, size: int = ENDED_HELD) -> None:
        self.size = size
        self.runs: dict[str, None] = {}  # insertion-ordered: the oldest goes first

    def stale(self, message: dict[str, Any]) -> bool:
        """Note a final status; ``True`` for a non-final one that follows it."""
        run = str(message.get("run"))
        if message.get("status") not in FINAL:
            return run in self.runs
        self.runs[run] = None
        if len(self.runs) > self.size:
            del self.runs[next(iter(self.runs))]
        return False


async def _admit(websocket: WebSocket) -> Principal | None:
    """Token or session; a session must come from a page of ours (no cross-site hijack)."""
    async with app_state(websocket.app).sessionmaker() as session:
        try:
            principal = await authenticate(
                session, websocket.headers.get("authorization"), websocket.session
            )
        except Unauthorized as error:
            await websocket.close(code=4401, reason=error.message)
            return None
    if principal is None:
        await websocket.close(code=4401, reason="sign in, or send Authorization: Bearer <token>")
        return None
    origin = websocket.headers.get("origin")
    if (
        principal.via == "session"
        and origin
        and urlsplit(origin).netloc != websocket.headers.get("host")
    ):
        await websocket.close(code=4403, reason="cross-site websocket refused")
        return None
    return principal


def _may_see_team(principal: Principal, message: dict[str, Any]) -> bool:
    try:
        team = uuid.UUID(str(message.get("team")))
    except ValueError:
        return False
    return principal.can(team, Role.viewer)


async def _may_see(
    websocket: WebSocket,
    principal: Principal,
    message: dict[str, Any],
    teams: dict[str, uuid.UUID | None],
) -> bool:
    if principal.visible_teams is None:
        return True
    entity = str(message.get("entity"))
    if entity not in teams:
        try:
            entity_id = uuid.UUID(entity)
        except ValueError:
            teams[entity] = None
        else:
            async with app_state(websocket.app).sessionmaker() as session:
                teams[entity] = await entities.team_of(session, entity_id)
    team = teams[entity]
    return team is not None and principal.can(team, Role.viewer)


class _RunTail:
    def __init__(self, websocket: WebSocket, run_id: uuid.UUID, after: int) -> None:
        self.websocket = websocket
        self.run_id = run_id
        self.last = after
        state = app_state(websocket.app)
        self.hub = state.hub
        self.sessionmaker = self.hub.gated(state.sessionmaker)

    async def serve(self) -> None:
        await self._run()  # 404 before subscribing
        async with self.hub.subscribe(run_channel(self.run_id)) as feed:
            if await self._catch_up():
                return await self._finish()
            while True:
                message = await feed.next(LIVE_CHECK if feed.live else IDLE_CHECK)
                if message is None or feed.overflowed:
                    feed.overflowed = False
                    feed.drain()
                    if await self._catch_up():
                        return await self._finish()
                    continue
                if await self._live(_with_next_lines(feed, message)):
                    return await self._finish()

    async def _live(self, message: dict[str, Any]) -> bool:
        """Forward one live message; ``True`` once the run has ended."""
        kind = message.get("type")
        if kind == "log":
            fresh = [line for line in message["lines"] if line[0] > self.last]
            if fresh and fresh[0][0] != self.last + 1:
                return await self._catch_up()  # a gap: the database has it
            if fresh:
                await self._send_lines([(seq, stream, line) for seq, stream, line, _at in fresh])
            return False
        if kind == "status":
            await self.websocket.send_json(
                {
                    "type": "status",
                    "status": message["status"],
                    "exit_code": message.get("exit_code"),
                }
            )
            return message["status"] in FINAL
        await self.websocket.send_json(message)
        return False

    async def _run(self) -> Run:
        async with self.sessionmaker() as session:
            return await runs.get(session, self.run_id)

    async def _catch_up(self) -> bool:
        """Send every stored line after the last sent; ``True`` if the run has ended."""
        while True:
            async with self.sessionmaker() as session:
                rows = await runs.log_after(session, self.run_id, self.last, PAGE)
            count = len(rows)
            if rows:
                # Only the text waits on a slow client, not a page of rows: with a
                # thousand clients catching up at once, that is most of the API's memory.
                text, last = _encode(rows)
                del rows
                await self._send(text, last)
            if count < PAGE:
                break
        run = await self._run()
        return run.status in FINAL

    async def _finish(self) -> None:
        """Send the last lines as the relay stores them, then the end.

        Gives up waiting for a complete log only when no line has come for a while.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + COMPLETE_WAIT
        while True:
            before = self.last
            run = await self._run()  # first: lines stored before it said complete
            await self._catch_up()
            if run.log_complete or run.log_emitted is None:
                break
            if self.last != before:  # still coming: keep waiting
                deadline = loop.time() + COMPLETE_WAIT
            elif loop.time() > deadline:
                break
            await asyncio.sleep(0.05)
        await self.websocket.send_json(
            {
                "type": "end",
                "status": run.status,
                "exit_code": run.exit_code,
                "complete": run.log_complete,
                "last_seq": self.last,
                "error": run.error,
            }
        )
        await self.websocket.close()

    async def _send_lines(self, lines: list[tuple[int, str, str]]) -> None:
        await self._send(*_encode(lines))

    async def _send(self, text: str, last: int) -> None:
        await self.websocket.send_text(text)
        self.last = last


def _with_next_lines(feed: Subscription, message: dict[str, Any]) -> dict[str, Any]:
    """A log message and the ones buffered behind it that follow on, as one.

    A client that is behind gets fewer, larger frames (up to ``PAGE`` lines), so that
    the cost per frame does not keep it behind; one that keeps up gets each as it comes.
    """
    if message.get("type") != "log" or not message["lines"]:
        return message
    lines: list[Any] = message["lines"]
    merged: list[Any] | None = None
    while feed.buffer and len(merged or lines) < PAGE:
        following = feed.buffer[0]
        if following.get("type") != "log" or not following["lines"]:
            break
        if following["lines"][0][0] != (merged or lines)[-1][0] + 1:
            break  # a gap or an overlap: _live deals with it, one message at a time
        merged = merged or list(lines)
        merged.extend(following["lines"])
        feed.buffer.popleft()
    return message if merged is None else {**message, "lines": merged}


def _encode(lines: list[tuple[int, str, str]]) -> tuple[str, int]:
    """A ``log`` message of ``lines``, and the last seq in it."""
    body = [{"seq": seq, "stream": stream, "line": text} for seq, stream, text in lines]
    return dumps({"type": "log", "lines": body}), lines[-1][0]
