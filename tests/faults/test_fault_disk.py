"""A full disk and I/O errors at commit: a clear error, nothing half-written, and the
service records again once space returns."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from harness import TEXTS, Service, integrity, missing, recent

from appliance.client import Client


def _ingest(c: Client, rid: str, n: int) -> dict[str, object]:
    return c.request({"v": 1, "op": "ingest", "tenant": "acme", "user_id": "dana",
                      "request_id": rid, "ts": recent(n),
                      "text": f"Question {n}: how do I book the large meeting room?"})


def starve_and_recover(svc: Service, starve: Callable[[], None], free: Callable[[], None],
                       code: str) -> dict[str, int]:
    """Ingest, starve the disk, ingest (refused with `code`), free it, ingest, restart:
    every acknowledged request is there and no refused one is."""
    svc.start()
    try:
        return _starve(svc, starve, free, code)
    finally:
        svc.kill()  # a failed check must not leave the service running


def _starve(svc: Service, starve: Callable[[], None], free: Callable[[], None],
            code: str) -> dict[str, int]:
    acked, refused = set(), set()
    with Client(svc.sock, timeout=60) as c:
        for i in range(5):
            assert _ingest(c, f"before-{i}", i)["ok"]
            acked.add(f"before-{i}")
        starve()
        for i in range(20):
            r = _ingest(c, f"starved-{i}", 10 + i)
            if r["ok"]:
                acked.add(f"starved-{i}")
            else:
                assert r["error"]["code"] == code, r  # type: ignore[index]
                refused.add(f"starved-{i}")
        assert c.request({"v": 1, "op": "ping"})["ok"]  # still serving
        free()
        for i in range(5):
            assert _ingest(c, f"after-{i}", 40 + i)["ok"]
            acked.add(f"after-{i}")
    assert refused, "the starved disk refused nothing"
    assert svc.stop() == 0
    svc.start()
    assert missing(svc.sock, acked) == []
    assert sorted(missing(svc.sock, refused)) == sorted(refused)  # nothing half-written
    assert svc.stop() == 0
    assert integrity(svc) == []
    return {"acked": len(acked), "refused": len(refused)}


@contextlib.contextmanager
def tmpfs(path: Path, size_mb: int) -> Iterator[bool]:
    """A small tmpfs at `path` when this host lets us mount one."""
    path.mkdir(parents=True)
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700",
                                  "tmpfs", str(path)], capture_output=True).returncode == 0
    except OSError:  # no mount(8) on this host
        mounted = False
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(path: Path) -> Path:
    """Take every free byte of the file system under `path`."""
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 512):
            while True:
                try:
                    os.write(fd, b"\0" * size)
                except OSError as exc:
                    assert exc.errno in (errno.ENOSPC, errno.EDQUOT)
                    break
    finally:
        os.close(fd)
    return filler


@pytest.mark.slow
def test_a_full_disk_refuses_clearly_writes_nothing_and_recovers(tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    with tmpfs(disk, 48) as mounted:
        if not mounted:
            pytest.skip("mounting a tmpfs needs root; the I/O-error test covers this host")
        svc = Service(tmp_path, disk / "data")
        filler: list[Path] = []
        out = starve_and_recover(svc, lambda: filler.append(fill(disk)),
                                 lambda: filler[0].unlink(), "disk_full")
        assert out["refused"] > 0


@pytest.mark.slow
def test_an_io_error_at_commit_refuses_clearly_writes_nothing_and_recovers(
        tmp_path: Path) -> None:
    svc = Service(tmp_path)
    out = starve_and_recover(svc, lambda: svc.file_limit(0), lambda: svc.file_limit(None),
                             "io_error")
    assert out["refused"] > 0
    assert os.path.getsize(svc.log) > 0


QUEUED = 600


def stop_while_starved(svc: Service, starve: Callable[[], None],
                       free: Callable[[], None]) -> dict[str, int]:
    """Ingest, starve the disk, queue QUEUED async ingests, SIGTERM while still starved;
    then free the disk, start again and count what the store holds."""
    svc.start()
    try:
        return _stop_while_starved(svc, starve, free)
    finally:
        svc.kill()


def _stop_while_starved(svc: Service, starve: Callable[[], None],
                        free: Callable[[], None]) -> dict[str, int]:
    before = {f"before-{i}" for i in range(5)}
    with Client(svc.sock, timeout=60) as c:
        for i, rid in enumerate(sorted(before)):
            assert _ingest(c, rid, i)["ok"]
        starve()
        queued = [{"v": 1, "op": "ingest", "mode": "async", "tenant": "acme",
                   "user_id": f"user{n % 7}", "request_id": f"queued-{n}",
                   "text": f"{TEXTS[n % len(TEXTS)]} ({n})", "ts": recent(n % 600)}
                  for n in range(QUEUED)]
        assert all(r["ok"] for r in c.stream(queued, window=256))
    assert svc.proc is not None
    svc.proc.send_signal(signal.SIGTERM)
    # a hang guard, not a timing: it used to run the whole queue through the pipeline again
    code = svc.proc.wait(timeout=900)
    free()
    svc.start()
    kept = len(before) - len(missing(svc.sock, before))
    recorded = QUEUED - len(missing(svc.sock, {str(q["request_id"]) for q in queued}))
    assert svc.stop() == 0
    assert integrity(svc) == []
    return {"exit": code, "kept": kept, "recorded": recorded}


def _events(log: Path, event: str) -> list[dict[str, object]]:
    lines = (json.loads(line) for line in log.read_text().splitlines()
             if line.startswith("{"))
    return [e for e in lines if e.get("event") == event]


@pytest.mark.slow
def test_a_service_stopped_while_its_disk_is_full_gives_up_its_queue_and_exits(
        tmp_path: Path) -> None:
    disk = tmp_path / "disk"
    with tmpfs(disk, 48) as mounted:
        if not mounted:
            pytest.skip("mounting a tmpfs needs root; the I/O-error case covers this host")
        svc = Service(tmp_path, disk / "data")
        filler: list[Path] = []
        out = stop_while_starved(svc, lambda: filler.append(fill(disk)),
                                 lambda: filler[0].unlink())
    assert out == {"exit": 0, "kept": 5, "recorded": 0}
    log = svc.log.read_text()
    assert "Traceback" not in log
    gave_up = _events(svc.log, "shutdown_gave_up")
    assert len(gave_up) == 1 and 0 < int(gave_up[0]["requests"]) <= QUEUED  # type: ignore[call-overload]
    # only what was in hand when the stop came failed one by one; the rest was given up
    one_by_one = len(_events(svc.log, "ingest_failed")) - QUEUED  # telemetry logs each too
    assert one_by_one + int(gave_up[0]["requests"]) == QUEUED  # type: ignore[call-overload]
    assert _events(svc.log, "audit_stop_failed")  # said so, instead of a traceback


@pytest.mark.slow
def test_a_service_stopped_during_io_errors_exits_cleanly_and_keeps_its_records(
        tmp_path: Path) -> None:
    svc = Service(tmp_path)
    out = stop_while_starved(svc, lambda: svc.file_limit(0), lambda: None)
    assert out == {"exit": 0, "kept": 5, "recorded": 0}
