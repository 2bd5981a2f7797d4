"""Nothing another local user planted in a shared temporary folder weakens redaction, and
nothing of Semtrace's lands there: tldextract (inside Presidio) keeps no disk cache.

A suffix list planted where the old code cached it (`$TMPDIR/semtrace-tldextract`, which
any local user could create first in a shared /tmp) made Presidio's e-mail recogniser
reject the address, and 'xmoor@' of quimby.vexmoor@example.com was stored unredacted.
The real `semtrace replay` (Presidio + spaCy, llama.cpp, SQLCipher) writes a store; its
decrypted tables and every byte under the test's folder are searched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import scan_for, write_stream
from test_crash_privacy import decrypted_store

MAIL = "quimby.vexmoor@example.com"


def test_a_suffix_list_planted_in_the_shared_tmp_changes_no_redaction(
        tmp_path: Path, passphrase_file: Path) -> None:
    # where the old code kept its cache: name the file as tldextract does, then plant it
    probe = tmp_path / "probe"
    code = ("import tldextract.tldextract as t\n"
            "t.TLD_EXTRACTOR('x.example.com')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TLDEXTRACT_")}
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120,
                   env={**env, "TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS": "",
                        "TLDEXTRACT_CACHE": str(probe)})
    (cached,) = probe.rglob("*.tldextract.json")
    shared = tmp_path / "shared-tmp"
    planted = shared / "semtrace-tldextract" / cached.relative_to(probe)
    planted.parent.mkdir(parents=True)
    planted.write_text('[["zz"], []]')  # a list in which example.com is no domain
    for d in (shared, *planted.parents):
        if d.is_relative_to(shared):
            d.chmod(0o777)
    home = tmp_path / "home"
    home.mkdir()
    src = write_stream(tmp_path / "in.jsonl", [
        {"tenant": "acme", "user_id": "u1", "ts": "2026-03-02T09:00:00Z",
         "text": f"Please write to {MAIL} about the lease."}])
    data = tmp_path / "data"
    out = subprocess.run(
        [sys.executable, "-m", "appliance", "replay", str(src), "--out",
         str(tmp_path / "out.jsonl"), "--data-dir", str(data), "--passphrase-file",
         str(passphrase_file)], capture_output=True, text=True, timeout=600,
        env={**env, "TMPDIR": str(shared), "HOME": str(home)})
    assert out.returncode == 0, out.stderr
    store = decrypted_store(data, passphrase_file)
    assert "<EMAIL_ADDRESS_1>" in store and "xmoor" not in store and "quimby" not in store
    assert scan_for(tmp_path / "data", ["vexmoor", "quimby"]) == []
    assert planted.read_text() == '[["zz"], []]'  # read by nobody, rewritten by nobody
    assert sorted(p.name for p in shared.iterdir()) == ["semtrace-tldextract"]
    assert not any(home.iterdir())
