"""Bad input on the inspecting commands: one sentence, a non-zero exit, nothing changed.

Each test runs the real `semtrace` command (subprocess) on real files; a canary address in
a bad line must never be echoed back.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from conftest import serving, write_stream
from test_spine import run_cli

from appliance.config import load_policies
from appliance.link.calibrate import BOUNDS

POLICY = load_policies().correlation.link_threshold  # the shipped link threshold

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
    assert result.returncode == 2 and "is a file, not a directory" in result.stderr
    one_sentence(result.stderr)

    key, data = tmp_path / "new.key", tmp_path / "data"
    both = run_cli("init", "--data-dir", str(data), "--passphrase-file", str(passphrase_file),
                   "--new-key-file", str(key))
    assert both.returncode == 2 and "--new-key-file alone" in both.stderr
    one_sentence(both.stderr)
    assert not key.exists() and not data.exists()
    key.write_text("an operator's file")
    kept = run_cli("init", "--data-dir", str(data), "--new-key-file", str(key))
    # bad input, exit 2 as the README lists it (it was 1), and what to do
    assert kept.returncode == 2 and "give --new-key-file a new file" in kept.stderr
    one_sentence(kept.stderr)
    assert key.read_text() == "an operator's file" and not data.exists()
    key.unlink()

    full = tmp_path / "full"
    full.mkdir()
    (full / "other.txt").write_text("x")
    refused = run_cli("init", "--data-dir", str(full), "--new-key-file", str(key))
    assert refused.returncode == 2 and "not empty" in refused.stderr
    assert not key.exists()  # a key that opens nothing is not left behind

    assert run_cli("init", "--data-dir", str(data), "--passphrase-file",
                   str(passphrase_file)).returncode == 0
    # bad input, exit 2 as the README lists it (it was 1, "another error")
    again = run_cli("init", "--data-dir", str(data), "--passphrase-file", str(passphrase_file))
    assert again.returncode == 2 and "already initialised" in again.stderr
    assert "choose an empty or new directory" in again.stderr  # what to do (it said nothing)
    one_sentence(again.stderr)
    twice = run_cli("threads", "list", "--data-dir", str(data), "--passphrase-file",
                    str(passphrase_file), "--key-file", str(passphrase_file))
    assert twice.returncode == 2 and "not both" in twice.stderr
    one_sentence(twice.stderr)


def test_replay_of_a_stream_with_no_readable_line_stores_nothing(tmp_path: Path,
                                                                  passphrase_file: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_bytes(b'{"tenant": "acme", "user_id": "canary-7f3a@example.com"}\n'
                    b'not json at all\n')
    data, out = tmp_path / "data", tmp_path / "out.jsonl"
    r = run_cli("replay", str(src), "--out", str(out), "--data-dir", str(data),
                "--passphrase-file", str(passphrase_file))
    assert r.returncode == 2 and "No line of" in r.stderr and "line 1:" in r.stderr, r.stderr
    assert "canary-7f3a" not in r.stderr
    one_sentence(r.stderr)
    assert not data.exists() and not out.exists()


def test_a_folder_given_as_passphrase_or_key_file_is_named_as_a_folder(tmp_path: Path) -> None:
    for option in ("--passphrase-file", "--key-file"):
        r = run_cli("init", "--data-dir", str(tmp_path / "d"), option, str(tmp_path))
        assert r.returncode != 0 and "is a folder" in r.stderr, r.stderr
        assert "does not exist" not in r.stderr
        one_sentence(r.stderr)
        assert not (tmp_path / "d").exists()


def test_a_pipe_given_as_passphrase_or_key_file_is_named_as_a_pipe(tmp_path: Path) -> None:
    """`--passphrase-file <(echo ...)` (a pipe, /dev/fd/63) was refused as a file that
    'does not exist', which it does; it is named for what it is (nothing is read from it:
    a pipe's mode cannot keep a secret private)."""
    import os

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    for option, what in (("--passphrase-file", "passphrase file"), ("--key-file", "key file")):
        r = run_cli("init", "--data-dir", str(tmp_path / "d"), option, str(fifo))
        assert r.returncode == 2, r.stderr
        assert r.stderr.strip() == (
            f"semtrace: The {what} {fifo} is not a regular file (a pipe such as `<(...)`, or "
            "a device); write it to a file of mode 600 and give that."), r.stderr
        assert not (tmp_path / "d").exists()


def test_replay_refuses_a_missing_out_folder_and_an_empty_stream_before_creating_anything(
        tmp_path: Path, passphrase_file: Path) -> None:
    src = write_stream(tmp_path / "in.jsonl", STREAM)
    data = tmp_path / "data"
    cred = ("--data-dir", str(data), "--passphrase-file", str(passphrase_file))
    missing = run_cli("replay", str(src), "--out", str(tmp_path / "no" / "out.jsonl"), *cred)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    one_sentence(missing.stderr)
    assert not data.exists()

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n  \n")
    out = tmp_path / "out.jsonl"
    result = run_cli("replay", str(empty), "--out", str(out), *cred)
    assert result.returncode == 2 and "holds no prompts" in result.stderr
    one_sentence(result.stderr)
    assert not data.exists() and not out.exists()


def test_replay_skips_a_line_that_is_not_utf8_and_strict_stores_nothing(
        tmp_path: Path, passphrase_file: Path) -> None:
    src = tmp_path / "in.jsonl"
    lines = [json.dumps({"index": i, **row}).encode() for i, row in enumerate(STREAM)]
    src.write_bytes(b"\n".join([*lines[:2], BAD_UTF8, *lines[2:]]) + b"\n")
    out = tmp_path / "out.jsonl"
    result = run_cli("replay", str(src), "--out", str(out), "--json")
    assert result.returncode == 0, result.stderr
    assert "line 3 skipped: The line is not valid UTF-8." in result.stderr
    assert CANARY not in result.stderr and "Traceback" not in result.stderr
    summary = json.loads(result.stdout)
    assert summary["ingested"] == len(STREAM)
    # the JSON names the skipped lines too, as the text on stderr does
    assert summary["skipped_lines"] == [{"line": 3, "error": "The line is not valid UTF-8."}]
    assert len(out.read_text().splitlines()) == len(STREAM)

    # --strict: a bad line late in the stream stops it before anything is stored
    late = tmp_path / "late.jsonl"
    late.write_bytes(b"\n".join([*lines, b'{"text": "' + CANARY.encode() + b'"']) + b"\n")
    data = tmp_path / "data"
    strict = run_cli("replay", str(late), "--out", str(tmp_path / "s.jsonl"), "--strict",
                     "--batch", "1", "--data-dir", str(data),
                     "--passphrase-file", str(passphrase_file))
    assert strict.returncode == 2 and "Line 5:" in strict.stderr
    one_sentence(strict.stderr)
    assert not data.exists() and not (tmp_path / "s.jsonl").exists()


def test_replay_progress_is_drawn_on_stderr_and_json_stdout_stays_clean(tmp_path: Path) -> None:
    src = write_stream(tmp_path / "in.jsonl", STREAM)
    leader, follower = pty.openpty()  # stderr is a terminal, stdout a pipe (`| jq`)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "appliance", "replay", str(src), "--out",
             str(tmp_path / "out.jsonl"), "--batch", "1", "--json"],
            stdout=subprocess.PIPE, stderr=follower, stdin=subprocess.DEVNULL, timeout=600,
            env={**os.environ, "COLUMNS": "100"})
        os.close(follower)
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(leader)
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["ingested"] == len(STREAM)
    assert b"replay" in drawn and b"%" in drawn  # the bar, on the terminal


def test_redact_skips_a_line_that_is_not_utf8_and_refuses_empty_input(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    good = json.dumps({"index": 0, "text": "Call John Smith at 555-123-4567"}).encode()
    src.write_bytes(b"\n".join([good, BAD_UTF8]) + b"\n")
    out = tmp_path / "out.jsonl"
    cache = ("--cache-dir", str(tmp_path / "cache"))
    result = run_cli("redact", str(src), "--out", str(out), *cache, "--json")
    assert result.returncode == 0, result.stderr
    assert "line 2 skipped: not valid UTF-8." in result.stderr
    assert CANARY not in result.stderr and "Traceback" not in result.stderr
    summary = json.loads(result.stdout)
    assert summary["written"] == 1
    assert summary["skipped_lines"] == [{"line": 2, "error": "not valid UTF-8."}]
    assert "<PERSON_1>" in json.loads(out.read_text())["redacted"]

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    nothing = run_cli("redact", str(empty), "--out", str(tmp_path / "e.jsonl"), *cache)
    assert nothing.returncode == 2 and "holds no lines" in nothing.stderr
    one_sentence(nothing.stderr)
    missing = run_cli("redact", str(src), "--out", str(tmp_path / "no" / "o.jsonl"), *cache)
    assert missing.returncode == 2 and "does not exist" in missing.stderr
    one_sentence(missing.stderr)


def test_eval_names_the_gold_line_with_a_bad_field_or_a_repeated_index(tmp_path: Path) -> None:
    rows = [{**row, "gold_thread_id": row["user_id"], "gold_parent_index": None}
            for row in STREAM]
    bad_ts = write_stream(tmp_path / "bad_ts.jsonl", [*rows[:2], {**rows[2], "ts": CANARY}])
    result = run_cli("eval", "threads", str(bad_ts))
    assert result.returncode == 2
    assert "line 3: 'ts' is not a valid ISO-8601 timestamp." in result.stderr
    one_sentence(result.stderr)

    repeated = tmp_path / "repeated.jsonl"
    repeated.write_text("".join(json.dumps({"index": 0, **r}) + "\n" for r in rows[:2]))
    twice = run_cli("eval", "threads", str(repeated))
    assert twice.returncode == 2 and "line 2: index 0 is used by an earlier row" in twice.stderr
    one_sentence(twice.stderr)


def test_send_counts_lines_it_could_not_send_as_a_failure(pipeline: Any,
                                                          tmp_path: Path) -> None:
    from appliance.cli.service import _requests

    skipped: list[int] = []
    good = b'{"tenant": "acme", "user_id": "u", "text": "hi"}'
    sent = list(_requests([good, BAD_UTF8, b"{not json " + CANARY.encode()], skipped=skipped))
    assert [r["text"] for r in sent] == ["hi"] and skipped == [2, 3]
    with serving(pipeline, {}, tmp_path):
        sock = str(tmp_path / "s.sock")
        mixed = run_cli("send", "--socket", sock, stdin=good.decode() + "\n{not json "
                        + CANARY + "\n")
        assert mixed.returncode == 1 and "1 line was not sent" in mixed.stderr
        assert CANARY not in mixed.stderr and "Traceback" not in mixed.stderr
        assert [json.loads(x)["ok"] for x in mixed.stdout.splitlines()] == [True]
        empty = run_cli("send", "--socket", sock, stdin="\n")
        assert empty.returncode == 2 and "held no requests" in empty.stderr
        one_sentence(empty.stderr)


def test_threads_json_carries_the_currency_of_the_costs(tmp_path: Path,
                                                       passphrase_file: Path) -> None:
    src = write_stream(tmp_path / "in.jsonl", STREAM[:2])
    cred = ("--data-dir", str(tmp_path / "data"), "--passphrase-file", str(passphrase_file))
    assert run_cli("replay", str(src), "--out", str(tmp_path / "o.jsonl"), *cred).returncode == 0
    listed = run_cli("threads", "list", "--json", *cred)
    assert listed.returncode == 0, listed.stderr
    [thread] = json.loads(listed.stdout)
    assert thread["currency"] == "USD"
    shown = json.loads(run_cli("threads", "show", thread["thread_id"], "--json", *cred).stdout)
    assert shown["currency"] == "USD" and len(shown["records"]) == 2


def test_tui_refuses_to_draw_into_a_pipe(tmp_path: Path, passphrase_file: Path) -> None:
    cred = ("--data-dir", str(tmp_path / "data"), "--passphrase-file", str(passphrase_file))
    assert run_cli("init", *cred).returncode == 0
    proc = subprocess.run([sys.executable, "-m", "appliance", "tui", *cred],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode != 0 and "needs a terminal" in proc.stderr
    one_sentence(proc.stderr)


def test_replay_and_redact_refuse_to_write_over_their_input(tmp_path: Path) -> None:
    src = write_stream(tmp_path / "in.jsonl", STREAM)
    before = src.read_bytes()
    for cmd in (("replay", str(src)), ("redact", str(src), "--cache-dir", str(tmp_path / "c"))):
        result = run_cli(*cmd, "--out", str(src))
        assert result.returncode == 2 and "is the input file" in result.stderr
        one_sentence(result.stderr)
        assert src.read_bytes() == before  # the stream the user replayed is still there


def test_bad_input_to_the_read_commands_exits_2_as_documented(tmp_path: Path,
                                                             passphrase_file: Path) -> None:
    cred = ("--data-dir", str(tmp_path / "data"), "--passphrase-file", str(passphrase_file))
    assert run_cli("init", *cred).returncode == 0
    for args, says in [
            (("threads", "show", "th_nope"), "No thread 'th_nope'"),
            (("threads", "list", "--user", "alice"), "--user needs --tenant"),
            (("search", "  "), "The search text is empty."),
            (("search", "weather", "--since", "last week"), "--since must be"),
            # found nothing, exit 0, where `stats` refuses a window that starts in the future
            (("search", "weather", "--tenant", "acme", "--user", "alice", "--since",
              "2030-01-01"), "--since 2030-01-01 is in the future (2030-01-01 00:00 UTC)"),
            (("stats", "topics", "--tenant", "acme", "--from", "garbage"), "--from must be"),
            # the end was the default, not a --to the user gave: "earlier than --to" misled
            (("stats", "topics", "--tenant", "acme", "--from", "2030-01-01"),
             "--from 2030-01-01 is in the future (2030-01-01 00:00 UTC)"),
            (("stats", "topics", "--tenant", "acme", "--from", "2026-03-02",
              "--to", "2026-03-01"), "earlier than --to"),
            # one day asked as `--from D --to D`: the end is D's midnight; the sentence says
            # which --to takes D in (it said only "earlier than --to")
            (("stats", "topics", "--tenant", "acme", "--from", "2026-03-02",
              "--to", "2026-03-02"), "to take in 2026-03-02, give --to 2026-03-03"),
            # the baseline's end the user did not give is named, with its value
            (("stats", "incident", "--tenant", "acme", "--from", "2026-03-01",
              "--baseline-from", "2026-03-05"), "by default --from: 2026-03-01 00:00 UTC"),
            # a default moved past the calendar's first day: a traceback before
            (("stats", "topics", "--tenant", "acme", "--to", "0001-01-03"), "out of range"),
            (("stats", "incident", "--tenant", "acme", "--from", "0001-01-01", "--to",
              "2026-01-01"), "out of range"),
            # a typo is not "this tenant uses the policy's threshold"
            (("thresholds", "--tenant", "Acme"), "never held data of tenant 'Acme'")]:
        result = run_cli(*args, *cred)
        assert result.returncode == 2 and says in result.stderr, (args, result.stderr)
        assert result.stdout == "", (args, result.stdout)
        one_sentence(result.stderr)


def test_an_empty_list_says_whether_a_filter_or_the_store_is_empty(
        tmp_path: Path, passphrase_file: Path) -> None:
    """`threads list` printed '(no threads in scope)' for a store nothing was sent to and
    for a filter matching nothing alike, read as "you may not see them"."""
    cred = ("--data-dir", str(tmp_path / "data"), "--passphrase-file", str(passphrase_file))
    assert run_cli("init", *cred).returncode == 0
    empty = run_cli("threads", "list", *cred)
    assert empty.returncode == 0 and empty.stdout.splitlines()[1] == (
        "  (no threads in scope: nothing ingested yet, or all of it erased or shredded by "
        "retention)"), empty.stdout
    src = write_stream(tmp_path / "in.jsonl", STREAM[:1])
    assert run_cli("replay", str(src), "--out", str(tmp_path / "o.jsonl"), *cred).returncode == 0
    for args in (("--tenant", "acme", "--user", "bob"), ("--until", "2026-03-01")):
        none = run_cli("threads", "list", *args, *cred)
        assert none.returncode == 0 and none.stdout.splitlines()[1] == (
            "  (no threads match these filters)"), (args, none.stdout)


def test_a_bad_option_is_one_sentence_naming_the_help_to_read() -> None:
    for args, says in [(("threads", "list", "--limit", "-1"), "'--limit': -1 is not in the range"),
                       (("search", "x", "-k", "0"), "0 is not in the range"),
                       (("stats", "topics"), "Missing option '--tenant'"),
                       (("replay", "missing.jsonl", "--out", "o.jsonl"), "does not exist")]:
        result = run_cli(*args)
        assert result.returncode == 2 and says in result.stderr, result.stderr
        assert "--help`" in result.stderr
        one_sentence(result.stderr)


def test_a_truncated_store_file_is_one_sentence_not_a_traceback(tmp_path: Path,
                                                               passphrase_file: Path) -> None:
    data = tmp_path / "data"
    cred = ("--data-dir", str(data), "--passphrase-file", str(passphrase_file))
    assert run_cli("init", *cred).returncode == 0
    (data / "semtrace.db").write_bytes(b"")  # a copy cut short, a full disk
    for args in (("threads", "list"), ("thresholds",), ("search", "weather")):
        result = run_cli(*args, *cred)
        assert result.returncode != 0 and "is empty; it is damaged" in result.stderr
        one_sentence(result.stderr)
    # a command that writes does not make a new, empty store in its place
    src = write_stream(tmp_path / "in.jsonl", STREAM[:1])
    replay = run_cli("replay", str(src), "--out", str(tmp_path / "o.jsonl"), *cred)
    assert replay.returncode != 0 and "is empty; it is damaged" in replay.stderr
    one_sentence(replay.stderr)
    assert (data / "semtrace.db").stat().st_size == 0
    doctor = json.loads(run_cli("doctor", "--json", "--data-dir", str(data)).stdout)
    assert any("is empty; it is damaged" in p for p in doctor["problems"]), doctor


def test_a_file_error_no_command_expects_is_one_sentence(tmp_path: Path,
                                                        passphrase_file: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    result = run_cli("init", "--data-dir", str(a_file / "data"), "--passphrase-file",
                     str(passphrase_file))
    # init now names it itself (test_data_dir_refusals.py); before, the catch-all said
    # "Not a directory: …/notes.txt/data." (exit 1)
    assert result.returncode == 2 and "cannot be created (not a directory)" in result.stderr
    one_sentence(result.stderr)


def test_thresholds_json_gives_the_policy_as_the_text_does(tmp_path: Path,
                                                          passphrase_file: Path) -> None:
    cred = ("--data-dir", str(tmp_path / "data"), "--passphrase-file", str(passphrase_file))
    assert run_cli("init", *cred).returncode == 0
    text = run_cli("thresholds", *cred)
    assert text.returncode == 0 and f"policy link_threshold {POLICY:g}" in text.stdout
    shown = json.loads(run_cli("thresholds", *cred, "--json").stdout)
    # no tenant has a tally yet: the JSON still says what every tenant gets
    assert shown == {"policy_threshold": POLICY, "calibration": True, "min_decisions": 100,
                     "min_each_side": 10, "shrink_continuations": 10, "shrink_new": 0,
                     "bounds": list(BOUNDS),
                     "tenants": []}
    lo, hi = BOUNDS
    assert f"10 continuations and 10 new conversations, within {lo}-{hi}" in text.stdout
    # shrink_new 0: all the way, as docs/linking.md says (it read "falling m/(m+0)")
    assert "rising m/(m+10) of the way, falling all the way" in text.stdout, text.stdout


def _into_a_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    """The command with its stdout a pipe whose reader is gone (`| head -1` once it has
    read its line)."""
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([sys.executable, "-m", "appliance", *args], stdout=write,
                              stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                              timeout=600)
    finally:
        os.close(write)


def test_a_command_whose_output_reader_went_away_ends_quietly_with_exit_0(
        tmp_path: Path, passphrase_file: Path) -> None:
    """`semtrace threads list | head -1` exited 1 with no word (click's own EPIPE
    handling); the reader has what it wanted, so it is a success, said by nobody."""
    cred = ("--data-dir", str(tmp_path / "data"), "--passphrase-file", str(passphrase_file))
    assert run_cli("init", *cred).returncode == 0
    for args in (("threads", "list", *cred), ("threads", "list", "--json", *cred),
                 ("thresholds", *cred), ("thresholds", "--json", *cred), ("--help",),
                 ("threads", "list", "--help")):
        out = _into_a_closed_pipe(*args)
        assert (out.returncode, out.stderr) == (0, ""), (args, out.returncode, out.stderr)


def test_a_socket_no_service_listens_on_is_named_with_what_to_do(tmp_path: Path) -> None:
    """`--socket PATH` with no service there (no file, or the socket a stopped service
    left) said only that none listened: the sentence now says to start it or name the
    socket it serves; exit 1, as for another error."""
    import socket

    stale = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX) as left:  # bound, never listening: refused
        left.bind(str(stale))
    for path in (tmp_path / "none.sock", stale):
        for args in (("threads", "list", "--socket", str(path)),
                     ("search", "password", "--tenant", "acme", "--socket", str(path))):
            out = run_cli(*args)
            assert out.returncode == 1 and out.stdout == "", (args, out.stderr)
            one_sentence(out.stderr)
            assert f"No semtrace service is listening on {path}: start it (`semtrace serve`" \
                in out.stderr, out.stderr
        sent = run_cli("send", "--socket", str(path), stdin="{}\n")
        assert sent.returncode == 1 and "`semtrace serve`" in sent.stderr, sent.stderr
        one_sentence(sent.stderr)


def test_reembed_counts_the_prompts_it_embedded_in_words(
        pipeline: Any, data_dir: Path, passphrase_file: Path, cli_runner: Any) -> None:
    """`reembed` said 'Re-embedded 1 prompt(s) with the current model.' where `demo` and
    the TUI say counts as words ('1 turn', '4 turns'); --json keeps its number."""
    from conftest import make_prompt

    from appliance.cli import cli

    pipeline.process([make_prompt("How do I rotate the TLS certificate?", user="erin")])
    pipeline.store.db.execute("UPDATE records SET model_id = 'an-older-model'")
    args = ["reembed", "--data-dir", str(data_dir), "--passphrase-file", str(passphrase_file)]
    once = cli_runner.invoke(cli, args)
    assert once.exit_code == 0, once.output
    assert once.output.splitlines()[-1] == "Re-embedded 1 prompt with the current model."
    again = cli_runner.invoke(cli, [*args, "--json"])
    assert json.loads(again.output) == {"reembedded": 0}
    none = cli_runner.invoke(cli, args)
    assert none.output.splitlines()[-1] == "Re-embedded 0 prompts with the current model."


def test_stats_from_takes_an_age_as_threads_list_and_search_do(tmp_path: Path,
                                                               passphrase_file: Path) -> None:
    """`threads list --since 7d` and `search --since 7d` work; `stats topics --from 7d` said
    "--from must be an ISO-8601 date or time": the same forms everywhere."""
    cred = ("--data-dir", str(tmp_path / "data"), "--passphrase-file", str(passphrase_file))
    assert run_cli("init", *cred).returncode == 0
    src = write_stream(tmp_path / "in.jsonl", STREAM[:1])
    assert run_cli("replay", str(src), "--out", str(tmp_path / "o.jsonl"), *cred).returncode == 0
    ages = run_cli("stats", "positions", "--tenant", "acme", "--from", "8d",
                   "--to", "1d", "--json", *cred)
    assert ages.returncode == 0, ages.stderr
    window = json.loads(ages.stdout)
    start = datetime.fromisoformat(window["start"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(window["end"].replace("Z", "+00:00"))
    assert end - start == timedelta(days=7) and end < datetime.now(UTC)
    refused = run_cli("stats", "positions", "--tenant", "acme", "--from", "last week", *cred)
    assert refused.returncode == 2 and "or an age such as 30m, 24h, 7d" in refused.stderr


def test_a_time_ending_in_a_lower_case_z_is_utc_as_with_a_capital_z(
        tmp_path: Path, passphrase_file: Path) -> None:
    """RFC 3339 allows `z`: a stream whose `ts` read `2026-03-02T09:00:00z` had every line
    skipped as 'not a valid ISO-8601 timestamp', and `threads list --since …z` and `stats
    --from …z` were refused, where `Z` worked."""
    cred = ("--data-dir", str(tmp_path / "data"), "--passphrase-file", str(passphrase_file))
    assert run_cli("init", *cred).returncode == 0
    src = write_stream(tmp_path / "in.jsonl", [{**r, "ts": r["ts"].replace("Z", "z")}
                                               for r in STREAM[:2]])
    done = run_cli("replay", str(src), "--out", str(tmp_path / "o.jsonl"), "--json", *cred)
    assert done.returncode == 0 and json.loads(done.stdout)["ingested"] == 2, done.stdout
    for case in ("Z", "z"):
        for window, first in ((("--since", f"2026-03-02T09:00:30{case}"),
                               ["2026-03-02T09:00:00Z"]),
                              (("--until", f"2026-03-02T08:59:00{case}"), [])):
            listed = run_cli("threads", "list", *window, "--json", *cred)
            assert listed.returncode == 0, listed.stderr
            assert [t["first_ts"] for t in json.loads(listed.stdout)] == first
        stats = run_cli("stats", "positions", "--tenant", "acme", "--from",
                        f"2026-03-01T00:00:00{case}", "--to", "2026-03-03", "--json", *cred)
        assert stats.returncode == 0, stats.stderr
        assert json.loads(stats.stdout)["start"] == "2026-03-01T00:00:00Z"
