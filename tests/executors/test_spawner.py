"""The warm shepherd (``executors.spawner``): a command started by a fork of a per-worker
server is as contained as one started under its own shepherd.

Real processes throughout: a real "worker" (a Python process that starts a command
through the spawner) is killed with SIGKILL, and what the command started is looked for
in /proc.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from executors import processes, spawner
from executors.shepherd import exists
from tests.fixtures.stack import wait_for

# The command notes its pid, a child's, and a stray's in a session of its own, then waits.
TREE = 'sleep 300 & c=$!; setsid sleep 300 & s=$!; echo "$$ $c $s" > "$1"; wait'

WORKER = textwrap.dedent(
    """
    import asyncio, os, sys
    from pathlib import Path
    from executors import spawner

    async def main() -> None:
        command = await spawner.spawn(
            ["sh", "-c", sys.argv[1], "sh", sys.argv[2]],
            record=Path(sys.argv[3]), grace=1.0, cwd="/", env={"PATH": os.environ["PATH"]},
        )
        print(type(command).__name__, flush=True)
        await command.wait()

    asyncio.run(main())
    """
)


def _pids(path: Path) -> list[int]:
    text = path.read_text() if path.exists() else ""
    return [int(pid) for pid in text.split()] if text.endswith("\n") else []


def test_a_killed_worker_takes_its_warm_commands_whole_tree_along(tmp_path: Path) -> None:
    """Fault: SIGKILL to a worker while a command it started through the warm shepherd
    runs, with a child and a stray in a session of its own. Checked: the command ran in
    a fork of the warm shepherd, its record was there while it ran, and once the worker
    is gone so are the command, its child, its stray and its record."""
    noted, record = tmp_path / "pids", tmp_path / "processes" / "run.1.task.0000.rec"
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, TREE, str(noted), str(record)],
        stdout=subprocess.PIPE,
        cwd=Path(processes.__file__).parent.parent,
    )
    assert worker.stdout is not None
    try:
        assert worker.stdout.readline().strip() == b"WarmCommand"
        pids = wait_for(lambda: _pids(noted), "the command to note its processes")
        assert all(exists(pid) for pid in pids) and record.exists()
    finally:
        worker.kill()
        worker.wait()
        worker.stdout.close()
    wait_for(lambda: not any(exists(pid) for pid in pids), "the command's tree to stop")
    wait_for(lambda: not record.exists(), "the record to be removed")


async def test_a_warm_command_gives_its_lines_and_exit_code_and_records_itself(
    tmp_path: Path,
) -> None:
    """The command sees its run's tag and its record while it runs; its stdout, stderr
    and exit code come back; the record is gone once it has ended."""
    record = tmp_path / "processes" / "run.1.task.0001.rec"
    script = 'echo "$AEGIR_RUN_PROCESS"; ls "$1" >&2; exit 3'
    command = await spawner.spawn(
        ["sh", "-c", script, "sh", str(record.parent)],
        record=record,
        grace=1.0,
        cwd=str(tmp_path),
        env={"PATH": os.environ["PATH"]},
    )
    assert isinstance(command, spawner.WarmCommand)
    assert command.stdout is not None and command.stderr is not None
    out, err = await asyncio.gather(command.stdout.read(), command.stderr.read())
    assert await command.wait() == 3
    assert out == b"run.1.task.0001\n" and err == f"{record.name}\n".encode()
    assert not record.exists()


async def test_a_stopped_warm_command_stops_with_its_children(tmp_path: Path) -> None:
    """A cancel (``processes.stop_group``) reaches the command's whole process group."""
    noted = tmp_path / "pids"
    command = await spawner.spawn(
        ["sh", "-c", TREE.replace("setsid ", ""), "sh", str(noted)],
        record=tmp_path / "processes" / "run.1.task.0002.rec",
        grace=1.0,
        cwd=str(tmp_path),
        env={"PATH": os.environ["PATH"]},
    )
    pids = await asyncio.to_thread(wait_for, lambda: _pids(noted), "the command's pids")
    await processes.stop_group(command, 1.0)
    assert await command.wait() in (128 + signal.SIGTERM, -signal.SIGKILL)
    await asyncio.to_thread(wait_for, lambda: not any(exists(p) for p in pids), "all to stop")


async def test_a_missing_directory_is_said_as_before(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        await spawner.spawn(
            ["true"],
            record=tmp_path / "processes" / "run.1.task.0003.rec",
            grace=1.0,
            cwd=str(tmp_path / "gone"),
            env={},
        )


async def test_without_a_warm_shepherd_a_command_runs_under_its_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that cannot start (here: an "interpreter" that exits at once) costs one
    log line saying why, and the command runs under a shepherd of its own, recorded."""
    broken = spawner.Spawner(python="/bin/false")
    record = tmp_path / "processes" / "run.1.task.0004.rec"
    with caplog.at_level(logging.WARNING, logger="executors.spawner"):
        for _ in range(2):
            command = await broken.spawn(
                ["sh", "-c", 'echo "$AEGIR_RUN_PROCESS"; ls "$1"', "sh", str(record.parent)],
                record=record,
                grace=1.0,
                cwd=str(tmp_path),
                env={"PATH": os.environ["PATH"]},
            )
            assert command.stdout is not None
            out = await command.stdout.read()
            assert await command.wait() == 0
            assert out == f"run.1.task.0004\n{record.name}\n".encode()
    assert not isinstance(command, spawner.WarmCommand) and not record.exists()
    said = [r.getMessage() for r in caplog.records if "warm shepherd unavailable" in r.getMessage()]
    assert len(said) == 1 and "did not start" in said[0]


async def test_a_command_gets_the_signal_dispositions_a_shell_gives(tmp_path: Path) -> None:
    """Python ignores SIGPIPE; a command must not inherit that (``yes | head`` ends)."""
    command = await spawner.spawn(
        ["sh", "-c", "grep -E '^SigIgn' /proc/self/status"],
        record=tmp_path / "processes" / "run.1.task.0005.rec",
        grace=1.0,
        cwd=str(tmp_path),
        env={"PATH": os.environ["PATH"]},
    )
    assert command.stdout is not None
    ignored = int((await command.stdout.read()).split()[1], 16)
    assert await command.wait() == 0
    assert not ignored & (1 << (signal.SIGPIPE - 1))
