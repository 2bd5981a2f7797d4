"""kill -9 of `semtrace keys rotate` after every step: the next open completes or
rolls back the rotation by itself, with either credential, and loses nothing.

Each case copies one prepared data dir (replayed through the real pipeline) and
runs the real CLI in a child process whose rotation kills itself (SIGKILL) right
after the named step. Bounded: one child per step and credential.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROWS = [{"tenant": "acme", "user_id": u, "ts": "2026-03-02T09:00:00Z", "text": t}
        for u, t in [("alice", "How do I renew the TLS certificate on the web host?"),
                     ("alice", "And on the mail host?"),
                     ("bob", "Which sourdough hydration works best for rye?")]]

CHILD = """
import os, signal, sys
from appliance.store import rotation
target = sys.argv[1]
def kill(step):
    if step == target:
        os.kill(os.getpid(), signal.SIGKILL)
rotation.after_step = kill
sys.argv = ["semtrace", *sys.argv[2:]]
from appliance.cli import main
main()
"""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True,
                          text=True, timeout=600)


def _secret(path: Path, text: str) -> Path:
    path.touch(mode=0o600)
    path.write_text(text + "\n")
    return path


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path, Path]]:
    """A data dir holding three prompts, its passphrase, and a new passphrase."""
    root = tmp_path_factory.mktemp("rotation")
    old = _secret(root / "old-pw", "correct horse battery staple")
    new = _secret(root / "new-pw", "a brand new passphrase")
    data = root / "data"
    args = ["--data-dir", str(data), "--passphrase-file", str(old)]
    assert _cli("init", *args).returncode == 0
    src = root / "in.jsonl"
    src.write_text("".join(json.dumps({"index": i, **r}) + "\n" for i, r in enumerate(ROWS)))
    done = _cli("replay", str(src), "--out", str(root / "o.jsonl"), *args)
    assert done.returncode == 0, done.stderr
    yield data, old, new


def _state(data: Path, cred_file: Path) -> dict[str, object]:
    """What a user sees after opening with `cred_file`: texts, pseudonyms, audit."""
    from appliance.audit import verify_chain
    from appliance.keys import read_passphrase_file
    from appliance.runtime import open_runtime

    rt = open_runtime(data, read_passphrase_file(cred_file))
    try:
        recs = rt.store.records("1=1", ())
        chain = verify_chain(rt.store.db, rt.store.keys_db)
        return {"texts": sorted(r.text or "" for r in recs),
                "alice": sum(r.user == rt.keyring.pseudonym("acme", "alice") for r in recs),
                "audit_ok": chain.ok,
                "rotations": rt.store.db.execute(
                    "SELECT count(*) FROM audit WHERE event='key_rotation'").fetchone()[0]}
    finally:
        rt.close()


STEPS = ("journal", "rewrap", "keys-exported", "keys", "data-exported", "data", "install",
         "audit", "finish")


def test_the_injection_points_are_the_rotations_steps() -> None:
    from appliance.store import rotation

    assert rotation.STEPS == STEPS


def _refused(data: Path, cred_file: Path) -> bool:
    from appliance.errors import WrongKey
    from appliance.keys import read_passphrase_file
    from appliance.runtime import open_runtime

    try:
        open_runtime(data, read_passphrase_file(cred_file)).close()
    except WrongKey:
        return True
    return False


# Every step, each reopened with the credential the operator is least likely to try
# first as well as the other one, alternating (bounded: ten children in all).
CASES = [(step, "old" if i % 2 else "new") for i, step in enumerate(("before-journal", *STEPS))]


@pytest.mark.parametrize("step,reopen_with", CASES)
def test_rotation_killed_after_any_step_is_completed_on_the_next_open(
        prepared: tuple[Path, Path, Path], tmp_path: Path, step: str,
        reopen_with: str) -> None:
    template, old, new = prepared
    data = tmp_path / "data"
    shutil.copytree(template, data)
    target = "journal" if step == "before-journal" else step
    child = subprocess.run(
        [sys.executable, "-c", CHILD, target, "keys", "rotate", "--data-dir", str(data),
         "--passphrase-file", str(old), "--new-passphrase-file", str(new)],
        capture_output=True, text=True, timeout=600, env={**os.environ})
    assert child.returncode == -signal.SIGKILL, child.stderr
    if step == "before-journal":
        # killed before the journal's rename: only its side file exists
        (data / "rotation.json").replace(data / "rotation.json.tmp")

    journal_written = step != "before-journal"
    works, fails = (new, old) if journal_written else (old, new)
    given = old if reopen_with == "old" else new
    if given == fails and (not journal_written or step == "finish"):
        assert _refused(data, given)  # and it changed nothing
        given = works
    state = _state(data, given)  # completes the rotation when the journal was written
    assert state["texts"] == sorted(r["text"] for r in ROWS)
    assert state["alice"] == 2 and state["audit_ok"] is True
    assert state["rotations"] == (1 if journal_written else 0)
    assert not (data / "rotation.json").exists()
    assert not any(p.name.endswith(".rotating") for p in data.iterdir())
    assert _refused(data, fails) and not _refused(data, works)


def test_a_completed_rotation_is_usable_from_the_command_line(
        prepared: tuple[Path, Path, Path], tmp_path: Path) -> None:
    template, old, new = prepared
    data = tmp_path / "data"
    shutil.copytree(template, data)
    child = subprocess.run(
        [sys.executable, "-c", CHILD, "rewrap", "keys", "rotate", "--data-dir", str(data),
         "--passphrase-file", str(old), "--new-passphrase-file", str(new)],
        capture_output=True, text=True, timeout=600)
    assert child.returncode == -signal.SIGKILL
    # replay holds the data dir's lock while it opens: the old credential still
    # completes the rotation it began, and the new prompt is stored
    src = tmp_path / "more.jsonl"
    src.write_text(json.dumps({"tenant": "acme", "user_id": "carol", "request_id": "more-1",
                               "ts": "2026-03-02T10:00:00Z", "text": "Is it going to rain?"})
                   + "\n")
    more = _cli("replay", str(src), "--out", str(tmp_path / "o.jsonl"), "--data-dir", str(data),
                "--passphrase-file", str(old))
    assert more.returncode == 0, more.stderr
    listed = _cli("threads", "list", "--json", "--data-dir", str(data), "--passphrase-file",
                  str(new))
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) >= 3
    refused = _cli("threads", "list", "--data-dir", str(data), "--passphrase-file", str(old))
    assert refused.returncode == 2 and "Wrong passphrase" in refused.stderr
    verify = _cli("audit", "verify", "--json", "--data-dir", str(data), "--passphrase-file",
                  str(new))
    assert verify.returncode == 0 and json.loads(verify.stdout)["ok"] is True
