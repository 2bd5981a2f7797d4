"""A crashed service leaves no prompt, PII or user id behind: no core dump, no side file.

The real `semtrace serve` (SQLCipher, Presidio + spaCy, llama.cpp) with HOME and TMPDIR
pointed at empty folders; every byte under the test's folder is scanned afterwards, and
the store is opened and its decrypted tables searched too.
"""

from __future__ import annotations

import contextlib
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import scan_for
from test_service import Server, at

from appliance.client import Client

CANARY_MAIL = "quimby.vexmoor@example.com"
CANARY_WORD = "zorblaxian"
CANARY_USER = "user-quillhaven-4471"
TEXT = f"Please ask {CANARY_MAIL} why the {CANARY_WORD} turbine keeps failing."


def _start(srv: Server, tmp: Path, *, core_limit: int) -> subprocess.Popen[bytes]:
    """`semtrace serve` run from `tmp` with HOME/TMPDIR there and this core-file limit."""
    for d in ("home", "tmpdir"):
        (tmp / d).mkdir(exist_ok=True)
    env = {**srv.env, "HOME": str(tmp / "home"), "TMPDIR": str(tmp / "tmpdir")}
    env.pop("TLDEXTRACT_CACHE", None)

    def limit() -> None:  # (a test run in process before may have lowered the hard limit)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_CORE, (core_limit, core_limit))

    proc = subprocess.Popen([sys.executable, "-m", "appliance", "serve", *srv.args], cwd=tmp,
                            env=env, stdout=subprocess.DEVNULL, stderr=srv.log.open("ab"),
                            preexec_fn=limit)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, srv.log.read_text()
        try:
            with Client(srv.sock, timeout=5) as c:
                if c.ping()["ok"]:
                    return proc
        except Exception:
            time.sleep(0.2)
    raise AssertionError("serve did not come up")


def decrypted_store(data_dir: Path, passphrase_file: Path) -> str:
    """Every row of every table and every readable prompt of the store, as one text."""
    from appliance.keys import read_passphrase_file
    from appliance.runtime import open_runtime

    rt = open_runtime(data_dir, read_passphrase_file(passphrase_file))
    try:
        db = rt.store.db
        tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        rows = [repr(r) for t in tables for r in db.execute(f'SELECT * FROM "{t}"')]
        texts = [r.text or "" for r in rt.store.records("1=1", ())]
    finally:
        rt.close()
    return "\n".join(rows + texts)


def test_a_crashed_service_writes_no_core_dump_holding_prompts(
        tmp_path: Path, passphrase_file: Path) -> None:
    srv = Server(tmp_path, passphrase_file)
    proc = _start(srv, tmp_path, core_limit=resource.RLIM_INFINITY)  # an admin's ulimit -c
    with Client(srv.sock) as c:
        reply = c.ingest(tenant="acme", user_id=CANARY_USER, request_id="crash-1",
                         ts=at(30), text=TEXT)
    assert reply["ok"]
    limits = Path(f"/proc/{proc.pid}/limits").read_text()
    assert [line.split()[4:6] for line in limits.splitlines()
            if line.startswith("Max core file size")] == [["0", "0"]]
    proc.send_signal(signal.SIGSEGV)  # what a crash in llama.cpp or SQLCipher does
    assert proc.wait(timeout=60) == -signal.SIGSEGV
    pattern = Path("/proc/sys/kernel/core_pattern").read_text().strip()
    if not pattern.startswith("|"):  # a file pattern: it would be in tmp_path (the cwd)
        assert not [p for p in tmp_path.rglob("core*") if p.is_file()]
    assert scan_for(tmp_path, [CANARY_MAIL, CANARY_WORD, CANARY_USER]) == []
    store = decrypted_store(srv.data, passphrase_file)
    assert CANARY_WORD in store  # the redacted prompt was stored ...
    assert CANARY_MAIL not in store and CANARY_USER not in store  # ... and nothing else


def test_a_service_killed_mid_write_leaves_no_plaintext_in_journals_or_temp_files(
        tmp_path: Path, passphrase_file: Path) -> None:
    srv = Server(tmp_path, passphrase_file)
    proc = _start(srv, tmp_path, core_limit=0)
    requests = [{"v": 1, "op": "ingest", "tenant": "acme", "user_id": f"{CANARY_USER}-{i}",
                 "request_id": f"kill-{i}", "ts": at(40 + i % 50),
                 "text": f"{TEXT} Part {i} of the {CANARY_WORD} file."} for i in range(160)]
    with Client(srv.sock) as c:
        answered = 0
        for reply in c.stream(requests[:40]):
            answered += bool(reply.get("ok"))
        for req in requests[40:]:  # a stream still arriving when the process dies
            c._write(req, flush=True)
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert answered == 40
    left = sorted(p.name for p in srv.data.iterdir())
    assert any(name.endswith("-wal") for name in left)  # the kill left its journal behind
    assert scan_for(tmp_path, [CANARY_MAIL, CANARY_WORD, CANARY_USER]) == []
    assert not any((tmp_path / "home").iterdir())
    assert not any((tmp_path / "tmpdir").iterdir())
    store = decrypted_store(srv.data, passphrase_file)
    assert CANARY_WORD in store and CANARY_MAIL not in store and CANARY_USER not in store
