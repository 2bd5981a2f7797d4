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
import tempfile
from collections.abc import Iterator
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


# A compliance officer reading a data dir another user's service writes: run here as
# `nobody` with CAP_DAC_READ_SEARCH (reads any file, writes none; root ignores chmod).
READER = """import json, sys
from pathlib import Path
from appliance.errors import InputError
from appliance.keys import read_passphrase_file
from appliance.runtime import open_runtime
try:
    rt = open_runtime(Path(sys.argv[1]), read_passphrase_file(Path(sys.argv[2])),
                      readonly=True)
except InputError as exc:
    print(json.dumps({"refused": str(exc)}), flush=True)
    sys.exit(2)
print(json.dumps(rt.store.counts()), flush=True)
sys.stdin.readline()
try:
    print(json.dumps(rt.store.counts()), flush=True)
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
"""

# A writer that stays connected (the service user's service): its -wal stays beside the db.
HOLDER = """import sys
from pathlib import Path
from appliance.keys import read_passphrase_file
from appliance.runtime import open_runtime
rt = open_runtime(Path(sys.argv[1]), read_passphrase_file(Path(sys.argv[2])))
rt.store.counts()
print("open", flush=True)
sys.stdin.readline()
"""


def _as_reader(*args: str) -> subprocess.Popen[str]:
    setpriv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
               "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    return subprocess.Popen([*setpriv, sys.executable, "-B", "-c", READER, *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parent.parent)


def _read_while_erased(data: Path, pw: Path) -> tuple[int, list[dict[str, object]], str]:
    """The reader opens `data` and counts, `erase` (root, the writer) runs and ends, the
    reader counts again on the same open store; its exit code, lines and stderr."""
    reader = _as_reader(str(data), str(pw))
    assert reader.stdout is not None and reader.stdin is not None
    lines = [json.loads(reader.stdout.readline() or "null")]
    if "refused" not in (lines[0] or {}):
        erase = run_cli("erase", "--tenant", "t", "--user", "u", "--reason", "T-1",
                        "--data-dir", str(data), "--passphrase-file", str(pw))
        assert erase.returncode == 0, erase.stderr
        reader.stdin.write("\n")
        reader.stdin.flush()
        lines.append(json.loads(reader.stdout.readline() or "null"))
    out, err = reader.communicate(timeout=300)
    return reader.returncode, lines, err


def _now(data: Path, pw: Path) -> dict[str, int]:
    """The store's counts as its writer reads them."""
    script = ("import json, sys\nfrom pathlib import Path\n"
              "from appliance.keys import read_passphrase_file\n"
              "from appliance.runtime import open_runtime\n"
              "rt = open_runtime(Path(sys.argv[1]), read_passphrase_file(Path(sys.argv[2])))\n"
              "print(json.dumps(rt.store.counts()))\n")
    r = subprocess.run([sys.executable, "-c", script, str(data), str(pw)], check=True,
                       capture_output=True, text=True, timeout=300)
    return dict(json.loads(r.stdout))


@pytest.fixture
def shared(filled: tuple[Path, Path]) -> Iterator[tuple[Path, Path]]:
    """A copy of the filled data dir that `nobody` may read but not write, in a folder it
    may enter (SQLite's access() checks ignore the reader's capability)."""
    data, pw = filled
    folder = Path(tempfile.mkdtemp())
    folder.chmod(0o755)
    copy = folder / "shared"
    shutil.copytree(data, copy)
    copy.chmod(0o755)
    try:
        yield copy, pw
    finally:
        shutil.rmtree(folder)


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv")
def test_a_reader_without_write_permission_never_sees_a_store_a_writer_changed_under_it(
        shared: tuple[Path, Path]) -> None:
    """No writer is connected when the read starts (no -wal): the old code opened the file
    in SQLite's immutable mode, which takes no lock and sees no change, so after an erasure
    the open reader still counted the erased records (or read mixed pages). Now the read is
    refused in one sentence, or it sees the erasure."""
    data, pw = shared
    assert not (data / "semtrace.db-wal").exists()
    rc, lines, err = _read_while_erased(data, pw)
    assert "Traceback" not in err, err
    if "refused" in lines[0]:
        assert rc == 2
        assert lines[0]["refused"] == (
            f"The data dir {data} is read-only for this user but not a read-only mount, and "
            "no service has it open, so a writer starting meanwhile could change it under "
            "this read; read it while its service runs, as the user who writes it, or from "
            "a read-only mount or copy.")
    else:
        assert lines[1] == _now(data, pw), lines


@pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv")
def test_a_reader_without_write_permission_reads_along_a_running_service(
        shared: tuple[Path, Path]) -> None:
    """With the service connected (its -wal beside the db) the reader shares its locks
    through SQLite's read-only mode: it reads, and an erasure committed meanwhile shows."""
    data, pw = shared
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(data), str(pw)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).parent.parent)
    assert holder.stdout is not None and holder.stdin is not None
    try:
        assert holder.stdout.readline().strip() == "open"
        assert (data / "semtrace.db-wal").exists()
        before = _now(data, pw)
        rc, lines, err = _read_while_erased(data, pw)
        assert "Traceback" not in err, err
        assert rc == 0, (lines, err, sorted(p.name for p in data.iterdir()))
        assert lines[0] == before
        assert lines[1] == _now(data, pw) != before, lines
    finally:
        holder.stdin.close()
        holder.wait(timeout=120)
