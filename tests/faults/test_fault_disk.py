"""A full disk and I/O errors at commit: a clear error, nothing half-written, and the
service records again once space returns."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from harness import Service, integrity, missing, recent

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
