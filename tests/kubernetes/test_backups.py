"""Backups outlive the environment's namespace: ``delete`` leaves the archives' volume,
and a restore on a new install reads the archive from it. Against kmock, with the
namespace, provisioner and PV controllers played by ``tests/fixtures/kmock_volumes.py``
(a volume left at its ``Delete`` policy goes with its claim, as on a cluster)."""

from __future__ import annotations

from typing import Any

from tests.fixtures.kmock import Emulator
from tests.fixtures.kmock_controller import Controller, JobPlay
from tests.kubernetes.conftest import RUN_ID, Contexts, run, stored, until

RESTORE_JOB = f"restore-{RUN_ID.replace('-', '')}-1"


def _volume_of(emulator: Emulator, claim: str) -> str | None:
    found = stored(emulator, "v1/persistentvolumeclaims", claim)
    name = (found or {}).get("spec", {}).get("volumeName")
    return str(name) if name else None


def _volume(emulator: Emulator, name: str) -> Any:
    return stored(emulator, "v1/persistentvolumes", name, None)


def _phase(emulator: Emulator, name: str) -> str | None:
    """The volume's phase; ``None`` once it is deleted."""
    found = _volume(emulator, name)
    return None if found is None else str((found.get("status") or {}).get("phase"))


async def _installed(contexts: Contexts, emulator: Emulator) -> str:
    """Namespace and application; the files claim bound: its volume's name."""
    for key in ("namespace", "application"):
        code, log = await run(contexts, contexts.make(key))
        assert code == 0, log.text()
    await until(lambda: _volume_of(emulator, "files") is not None)
    files = _volume_of(emulator, "files")
    assert files is not None
    return files


async def test_delete_leaves_the_archives_and_a_new_install_restores_from_them(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    files = await _installed(contexts, emulator)
    controller.jobs["backup_archive"] = JobPlay(lines=['::output:: {"size_bytes": 2048}'])
    code, log = await run(contexts, contexts.make("backup_archive"))
    assert code == 0, log.text()
    path, volume = log.outputs["path"], log.outputs["volume"]
    assert volume == _volume_of(emulator, "backups")
    kept = _volume(emulator, volume)
    assert kept["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert kept["metadata"]["labels"]["aegir.io/backups-of"] == "acme-prod"

    code, log = await run(contexts, contexts.make("delete"))
    assert code == 0, log.text()
    await until(lambda: _volume(emulator, files) is None)  # the files went with the namespace
    await until(lambda: _phase(emulator, volume) == "Released")
    assert stored(emulator, "v1/persistentvolumeclaims", "backups") is None

    await _installed(contexts, emulator)
    outputs = {"backup_archive": {"path": path, "volume": volume}}
    code, log = await run(contexts, contexts.make("restore", outputs=outputs))
    assert code == 0, log.text()
    assert f"backups: the archives kept on volume {volume} again" in log.text()
    assert _volume_of(emulator, "backups") == volume
    await until(lambda: _phase(emulator, volume) == "Bound")
    claim = stored(emulator, "v1/persistentvolumeclaims", "backups")
    assert _volume(emulator, volume)["spec"]["claimRef"]["uid"] == claim["metadata"]["uid"]
    job = stored(emulator, "batch/v1/jobs", RESTORE_JOB)
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["command"][-1] == path
    assert {"name": "backups", "persistentVolumeClaim": {"claimName": "backups"}} in pod["volumes"]


async def test_a_backup_on_a_new_install_goes_to_the_kept_volume_too(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    await _installed(contexts, emulator)
    code, log = await run(contexts, contexts.make("backup_archive"))
    assert code == 0, log.text()
    volume = log.outputs["volume"]
    assert (await run(contexts, contexts.make("delete")))[0] == 0
    await until(lambda: _phase(emulator, volume) == "Released")
    await _installed(contexts, emulator)
    code, log = await run(contexts, contexts.make("backup_archive", attempt=2))
    assert code == 0, log.text()
    assert log.outputs["volume"] == volume
    assert [name for (resource, _, name) in emulator.objects if resource.plural ==
            "persistentvolumes" and _volume(emulator, name) is not None
            and name != _volume_of(emulator, "files")] == [volume]  # fmt: skip


async def test_the_backups_volume_is_the_environments_own(
    contexts: Contexts, emulator: Emulator, controller: Controller
) -> None:
    """Another environment's kept volume is never bound to this one, free as it is."""
    await _installed(contexts, emulator)
    code, log = await run(contexts, contexts.make("backup_archive"))
    assert code == 0, log.text()
    kept = log.outputs["volume"]
    assert (await run(contexts, contexts.make("delete")))[0] == 0
    await until(lambda: _phase(emulator, kept) == "Released")
    other = contexts.plain()
    other["name"] = "acme-stage"
    code, log = await run(contexts, contexts.make("namespace", other))
    assert code == 0, log.text()
    code, log = await run(contexts, contexts.make("backup_archive", other))
    assert code == 0, log.text()
    assert log.outputs["volume"] not in (None, kept)
    assert _phase(emulator, kept) == "Released"
