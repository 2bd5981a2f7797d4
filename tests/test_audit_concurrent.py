"""`audit verify` beside a process that writes audit entries (the running service: its
start, retention runs and shreds; another officer's erase or reveal) must not call the
log tampered: the entries it reads were being appended, not cut off or deleted."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from conftest import init_store
from test_spine import run_cli

# Another process appending entries as the service does (its own connections, the head
# advanced in keys.db after each entry commits), until told to stop.
WRITER = """
import sys
from pathlib import Path
from appliance.audit import AuditLog
from appliance.keys import read_passphrase_file
from appliance.runtime import open_runtime

data, pw, ready, stop = (Path(a) for a in sys.argv[1:5])
rt = open_runtime(data, read_passphrase_file(pw))
log = AuditLog(rt.store.db, rt.keyring.audit_signer(), anchor=rt.store.keys_db)
n = 0
while not stop.exists():
    log.append("report", {"format": "md", "chain_ok": True, "via": "cli"})
    n += 1
    if n == 20:
        ready.touch()
rt.close()
"""


def test_audit_verify_while_another_process_appends_reports_an_intact_log(
        tmp_path: Path) -> None:
    args, pw, _cpw = init_store(tmp_path)
    ready, stop = tmp_path / "ready", tmp_path / "stop"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / "data"), str(pw),
                               str(ready), str(stop)], stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(600):  # until it has appended (no clock is asserted)
            if ready.exists() or writer.poll() is not None:
                break
            time.sleep(0.1)
        assert ready.exists(), writer.stderr.read() if writer.stderr else ""
        checks = [run_cli("audit", "verify", "--json", *args) for _ in range(4)]
    finally:
        stop.touch()
        writer.wait(timeout=120)
    assert writer.returncode == 0
    seen = [json.loads(c.stdout) for c in checks]
    assert [(c.returncode, s["problem"]) for c, s in zip(checks, seen, strict=True)] == [
        (0, None)] * 4, [c.stderr for c in checks]
    assert seen[-1]["entries"] > seen[0]["entries"]  # it did read a growing log
    final = json.loads(run_cli("audit", "verify", "--json", *args).stdout)
    assert final["ok"] and final["entries"] >= seen[-1]["entries"]


def test_audit_log_offers_exactly_the_events_semtrace_writes() -> None:
    """`audit log --event` offered 'auth_failed', which nothing ever wrote: an officer
    filtering on it read '(no auth_failed entries)' as 'no failed authentication'; and it
    refused 'cluster_export' (a tenant's data written to a file), which `cluster export`
    audits, as an invalid choice."""
    import re
    from pathlib import Path

    from appliance.constants import AUDIT_EVENTS

    root = Path(__file__).resolve().parent.parent / "appliance"
    code = "\n".join(p.read_text() for p in root.rglob("*.py") if p.name != "constants.py")
    unwritten = [e for e in AUDIT_EVENTS if not re.search(rf'["\']{e}["\']', code)]
    assert not unwritten, unwritten
    written = set(re.findall(r'(?:\b(?:audit|log|\))\.append\(\s*|_audit\(rt, |_record\('
                             r'[^,()]+, [^,()]+, |audit\.append, )"([a-z_]+)"', code))
    assert {"erase", "reveal", "start", "backup"} <= written  # the pattern finds them
    assert sorted(written - set(AUDIT_EVENTS)) == []
