"""Bad input on the inspecting commands: one sentence, a non-zero exit, nothing changed.

Each test runs the real `semtrace` command (subprocess) on real files; a canary address in
a bad line must never be echoed back.
"""

from __future__ import annotations

from pathlib import Path

from test_spine import run_cli

CANARY = "canary-7f3a@example.com"
STREAM = [
    {"tenant": "acme", "user_id": "alice", "ts": "2026-03-02T09:00:00Z",
     "text": "What's the weather in Paris?"},
    {"tenant": "acme", "user_id": "alice", "ts": "2026-03-02T09:01:00Z",
     "text": "How about tomorrow?"},
    {"tenant": "acme", "user_id": "bob", "ts": "2026-03-02T09:02:00Z",
     "text": "How do I reset my password?"},
    {"tenant": "acme", "user_id": "bob", "ts": "2026-03-02T09:03:00Z",
     "text": "The reset link does not work."},
]
BAD_UTF8 = ('{"tenant": "acme", "user_id": "carol", "ts": "2026-03-02T09:04:00Z", '
            f'"text": "caf\xe9 {CANARY}"}}').encode("latin-1")


def one_sentence(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert CANARY not in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr


def test_init_refuses_a_file_and_conflicting_credentials_and_leaves_no_stray_key(
        tmp_path: Path, passphrase_file: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a data dir")
    result = run_cli("init", "--data-dir", str(a_file), "--passphrase-file", str(passphrase_file))
    assert result.returncode != 0 and "is a file, not a directory" in result.stderr
    one_sentence(result.stderr)

    key, data = tmp_path / "new.key", tmp_path / "data"
    both = run_cli("init", "--data-dir", str(data), "--passphrase-file", str(passphrase_file),
                   "--new-key-file", str(key))
    assert both.returncode == 2 and "--new-key-file alone" in both.stderr
    one_sentence(both.stderr)
    assert not key.exists() and not data.exists()

    full = tmp_path / "full"
    full.mkdir()
    (full / "other.txt").write_text("x")
    refused = run_cli("init", "--data-dir", str(full), "--new-key-file", str(key))
    assert refused.returncode != 0 and "not empty" in refused.stderr
    assert not key.exists()  # a key that opens nothing is not left behind

    assert run_cli("init", "--data-dir", str(data), "--passphrase-file",
                   str(passphrase_file)).returncode == 0
    twice = run_cli("threads", "list", "--data-dir", str(data), "--passphrase-file",
                    str(passphrase_file), "--key-file", str(passphrase_file))
    assert twice.returncode == 2 and "not both" in twice.stderr
    one_sentence(twice.stderr)
