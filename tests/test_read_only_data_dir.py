"""A data dir this process may not write (a read-only mount, an auditor's copy): every
command that writes it refuses in one sentence with exit 2 (bad input, like every other
refusal of what the user pointed at) and changes nothing; the commands that only read it
read it. Run as root, chmod does not stop writes, so the tests remount the folder
read-only in a private mount namespace (skipped where that is not possible)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_spine import run_cli


def _can_mount() -> bool:
    return os.geteuid() == 0 and shutil.which("unshare") is not None and subprocess.run(
        ["unshare", "-m", "true"], capture_output=True).returncode == 0


pytestmark = pytest.mark.skipif(not _can_mount(), reason="needs root and a mount namespace")

LINES = [{"tenant": "t", "user_id": "u", "ts": "2026-03-02T09:00:00Z",
          "text": "Is it raining in Paris?"},
         {"tenant": "t", "user_id": "u", "ts": "2026-03-02T09:01:00Z",
          "text": "And tomorrow?"}]


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A data dir holding one thread of two prompts, and its passphrase file."""
    root = tmp_path_factory.mktemp("rodir")
    pw = root / "pw"
    pw.write_text("a passphrase for the read-only tests\n")
    pw.chmod(0o600)
    data = root / "data"
    creds = ["--data-dir", str(data), "--passphrase-file", str(pw)]
    assert run_cli("init", *creds).returncode == 0
    src = root / "in.jsonl"
    src.write_text("".join(json.dumps(line) + "\n" for line in LINES))
    r = run_cli("replay", str(src), "--out", str(root / "o.jsonl"), *creds)
    assert r.returncode == 0, r.stderr
    return data, pw


def _on_read_only(data: Path, commands: list[list[str]], out: Path) -> list[dict[str, str]]:
    """Run each command (semtrace's arguments) with `data` remounted read-only; return
    each one's exit code, stdout and stderr."""
    semtrace = f"{shlex.quote(sys.executable)} -m appliance"
    lines = [f"mount --bind {data} {data} && mount -o remount,bind,ro {data} || exit 99"]
    for i, args in enumerate(commands):
        lines.append(f"{semtrace} {shlex.join(args)} > {out}/{i}.out 2> {out}/{i}.err; "
                     f"echo $? > {out}/{i}.rc")
    r = subprocess.run(["unshare", "-m", "sh", "-c", "\n".join(lines)], capture_output=True,
                       text=True, timeout=900, cwd=Path(__file__).parent.parent)
    assert r.returncode != 99, r.stderr
    return [{"rc": (out / f"{i}.rc").read_text().strip(),
             "out": (out / f"{i}.out").read_text(), "err": (out / f"{i}.err").read_text()}
            for i in range(len(commands))]


def _files(data: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(data.iterdir()) if p.is_file()}


def test_every_command_that_writes_a_read_only_data_dir_exits_2_in_one_sentence(
        filled: tuple[Path, Path], tmp_path: Path) -> None:
    data, pw = filled
    creds = ["--data-dir", str(data), "--passphrase-file", str(pw)]
    other = tmp_path / "pw2"
    other.write_text("another passphrase, never used before\n")
    other.chmod(0o600)
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps(LINES[0]) + "\n")
    writes = {"replay": ["replay", str(src), "--out", str(tmp_path / "o.jsonl"), *creds],
              "serve": ["serve", *creds, "--socket", str(tmp_path / "s.sock")],
              "erase": ["erase", "--tenant", "t", "--user", "u", "--reason", "T-1", *creds],
              "retention run": ["retention", "run", *creds],
              "keys rotate": ["keys", "rotate", *creds, "--new-passphrase-file", str(other)],
              "compliance enroll": ["compliance", "enroll", *creds,
                                    "--compliance-passphrase-file", str(other)],
              "audit retention": ["audit", "retention", *creds,
                                  "--out", str(tmp_path / "report.md")],
              "cluster import": ["cluster", "import", str(tmp_path / "none.export"), *creds],
              "backup": ["backup", str(tmp_path / "copy"), *creds]}
    before = _files(data)
    results = _on_read_only(data, list(writes.values()), tmp_path)
    sentence = (f"semtrace: The data dir {data} is read-only for this process and this "
                "command writes to it; make it writable for the user running this. Nothing "
                "was changed.")
    for name, got in zip(writes, results, strict=True):
        assert (got["rc"], got["err"].strip()) == ("2", sentence), name
    assert _files(data) == before


def test_commands_that_only_read_a_read_only_data_dir_read_it(
        filled: tuple[Path, Path], tmp_path: Path) -> None:
    data, pw = filled
    creds = ["--data-dir", str(data), "--passphrase-file", str(pw)]
    report = tmp_path / "report.md"
    assert run_cli("audit", "retention", *creds, "--out", str(report)).returncode == 0
    before = _files(data)
    threads, verify, check = _on_read_only(
        data, [["threads", "list", *creds, "--json"], ["audit", "verify", *creds, "--json"],
               ["audit", "check-report", str(report), *creds]], tmp_path)
    assert threads["rc"] == "0", threads["err"]
    listed = json.loads(threads["out"])
    assert [t["turns"] for t in listed] == [2]
    assert verify["rc"] == "0" and json.loads(verify["out"])["ok"] is True, verify["err"]
    assert check["rc"] == "0", check["err"]
    assert _files(data) == before


def test_a_read_only_copy_left_with_its_write_ahead_log_is_refused_before_any_write(
        filled: tuple[Path, Path], tmp_path: Path) -> None:
    """A copy taken while a writer was connected keeps its -wal and -shm: SQLite then opens
    the database read-only without a word, and erase failed only at its first write
    ("attempt to write a readonly database", exit 1, named as damage)."""
    data, pw = filled
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    leave_log = ("import os, sys\nfrom pathlib import Path\n"
                 "from appliance.keys import read_passphrase_file\n"
                 "from appliance.runtime import open_runtime\n"
                 "rt = open_runtime(Path(sys.argv[1]), read_passphrase_file(Path(sys.argv[2])))\n"
                 "rt.store.db.execute(\"INSERT OR REPLACE INTO meta (key, value) "
                 "VALUES ('h125', '1')\")\nos._exit(0)\n")
    subprocess.run([sys.executable, "-c", leave_log, str(copy), str(pw)], check=True,
                   timeout=300)
    assert (copy / "semtrace.db-wal").exists()
    creds = ["--data-dir", str(copy), "--passphrase-file", str(pw)]
    erase, verify = _on_read_only(
        copy, [["erase", "--tenant", "t", "--user", "u", "--reason", "T-1", *creds],
               ["audit", "verify", *creds]], tmp_path)
    assert erase["rc"] == "2", erase["err"]
    assert f"The data dir {copy} is read-only" in erase["err"]
    assert verify["rc"] == "0", verify["err"]
