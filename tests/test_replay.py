"""`semtrace replay`, `threads` and `search` through the real command line."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

from conftest import write_stream
from test_spine import run_cli

STREAM = [
    {"tenant": "acme", "user_id": "alice", "ts": "2026-03-02T09:00:00Z",
     "text": "What's the weather in Paris?"},
    {"tenant": "acme", "user_id": "bob", "ts": "2026-03-02T09:00:30Z",
     "text": "How do I reset my password?"},
    {"tenant": "acme", "user_id": "alice", "ts": "2026-03-02T09:01:00Z",
     "text": "How's the weather in Paris today?"},
    {"tenant": "acme", "user_id": "carol", "ts": "2026-03-02T09:02:00Z",
     "text": "How can I reset my password?"},
    {"tenant": "acme", "user_id": "alice", "ts": "2026-03-02T09:03:00Z",
     "text": "Recommend a novel about the sea."},
]


def test_replay_writes_one_line_per_input_with_valid_parents(tmp_path: Path) -> None:
    src = write_stream(tmp_path / "in.jsonl", STREAM)
    out = tmp_path / "out.jsonl"
    result = run_cli("replay", str(src), "--out", str(out))
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(len(STREAM)))
    for r in rows:
        assert set(r) >= {"index", "request_id", "thread_id", "parent_index", "position",
                          "similarity", "intent", "topic_id"}
        if r["parent_index"] is not None:
            assert r["parent_index"] < r["index"]
            assert STREAM[r["parent_index"]]["user_id"] == STREAM[r["index"]]["user_id"]
    # the two password questions are from different users: never linked
    assert rows[3]["parent_index"] != 1 and rows[1]["thread_id"] != rows[3]["thread_id"]
    # the paraphrased weather question continues alice's first prompt
    assert rows[2]["parent_index"] == 0


def test_bad_lines_are_reported_with_line_numbers_and_skipped(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    lines = [json.dumps({**STREAM[0], "index": 0}), "{not json",
             json.dumps({"index": 2, "tenant": "acme", "ts": "2026-03-02T09:00:00Z",
                         "text": "no user"}),
             json.dumps({"index": 3, "tenant": "acme", "user_id": "x", "ts": "yesterday",
                         "text": "bad time"}),
             json.dumps({**STREAM[2], "index": 4})]
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.jsonl"
    result = run_cli("replay", str(src), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "line 2 skipped: The line is not valid JSON." in result.stderr
    assert "line 3 skipped: 'user_id' is missing." in result.stderr
    assert "line 4 skipped: 'ts' is not a valid ISO-8601 timestamp." in result.stderr
    assert [json.loads(x)["index"] for x in out.read_text().splitlines()] == [0, 4]
    strict = run_cli("replay", str(src), "--out", str(tmp_path / "strict.jsonl"), "--strict")
    assert strict.returncode == 2 and "Line 2:" in strict.stderr
    assert "Traceback" not in strict.stderr
    assert not (tmp_path / "strict.jsonl").exists()


def test_a_bad_line_is_refused_per_line(tmp_path: Path) -> None:
    # an over-long text is cut (below), but an over-long user id is still bad input
    src = write_stream(tmp_path / "in.jsonl", [{**STREAM[0], "user_id": "u" * 5_000}, STREAM[2]])
    out = tmp_path / "out.jsonl"
    result = run_cli("replay", str(src), "--out", str(out))
    assert result.returncode == 0
    assert "line 1 skipped: 'user_id'" in result.stderr and "u" * 200 not in result.stderr
    assert len(out.read_text().splitlines()) == 1


def test_persistent_replay_then_threads_and_search(tmp_path: Path, passphrase_file: Path) -> None:
    src = write_stream(tmp_path / "in.jsonl", STREAM)
    data = tmp_path / "data"
    common = ["--data-dir", str(data), "--passphrase-file", str(passphrase_file)]
    assert run_cli("replay", str(src), "--out", str(tmp_path / "o.jsonl"), *common).returncode == 0
    listed = run_cli("threads", "list", "--json", *common)
    assert listed.returncode == 0, listed.stderr
    threads = json.loads(listed.stdout)
    assert sum(t["turns"] for t in threads) == len(STREAM)
    assert all(t["user"].startswith("u_") for t in threads)  # pseudonyms, never raw ids

    only_bob = json.loads(run_cli("threads", "list", "--tenant", "acme", "--user", "bob",
                                  "--json", *common).stdout)
    assert sum(t["turns"] for t in only_bob) == 1
    assert only_bob[0]["title"] == "How do I reset my password?"
    # a title is the redacted first prompt: the city is a placeholder there too
    titles = {t["title"] for t in threads}
    assert "What's the weather in <LOCATION_1>?" in titles
    assert not any("Paris" in t for t in titles)
    table = run_cli("threads", "list", *common).stdout
    assert "What's the weather in <LOCATION_1>?" in table and "cost USD" in table

    hits = json.loads(run_cli("search", "umbrella and rain forecast", "--json", *common).stdout)
    assert hits[0]["text"] in {"What's the weather in <LOCATION_1>?",
                               "How's the weather in <LOCATION_1> today?"}
    assert {"record_id", "thread_id", "similarity", "text"} <= set(hits[0])
    # the text is headed, and says whose prompt each hit is and when, as the TUI does
    # (it printed a bare number, thread, record and text)
    found = run_cli("search", "umbrella and rain forecast", *common)
    assert found.returncode == 0, found.stderr
    head, first = found.stdout.splitlines()[:2]
    assert head.split() == ["score", "thread", "record", "tenant/user", "time", "(UTC)",
                            "prompt", "(redacted)"]
    top = hits[0]
    assert first.split()[:5] == [f"{top['similarity']:.3f}", top["thread_id"],
                                 f"#{top['record_id']}", f"{top['tenant']}/{top['user']}",
                                 top["ts"][:10]]
    assert first.endswith(top["text"])

    shown = json.loads(run_cli("threads", "show", hits[0]["thread_id"], "--json", *common).stdout)
    assert [r["record_id"] for r in shown["records"]] == sorted(
        r["record_id"] for r in shown["records"])
    missing = run_cli("threads", "show", "th_nope", *common)
    assert missing.returncode == 2 and "No thread 'th_nope'" in missing.stderr


def test_demo_prints_threads() -> None:
    result = run_cli("demo")
    assert result.returncode == 0, result.stderr
    # it says what it is doing while the service starts and the stream is sent (it said
    # nothing for the 20 s before the threads on a fresh host), on stderr
    assert result.stderr.splitlines()[:2] == [
        "semtrace: demo: starting the service on a new encrypted store (it loads the "
        "redaction and embedding models first)...",
        "semtrace: demo: sending the demo stream's 29 prompts of 7 people through its "
        "socket..."], result.stderr
    assert "semtrace: demo:" not in result.stdout
    # it says what its columns are before the first thread (sim=/best= and the
    # placeholders were left to guess)
    legend = " ".join(result.stdout.split("\nth_", 1)[0].split())
    for said in ("pseudonym", "(UTC)", "sim= its similarity to the turn it continues",
                 "best= on a new thread", "PII replaced by placeholders"):
        assert said in legend, said
    assert "threads in the demo stream" in result.stdout
    assert "alice@example.com" not in result.stdout  # user ids are pseudonymised
    # the threads without a topic are explained, with the privacy floor that hides it
    heads = [line for line in result.stdout.splitlines() if line.startswith("th_")]
    unnamed = [line for line in heads if "topic:" not in line]
    assert heads and unnamed
    # each thread's turns read as words, as the TUI's thread view says them (since bf6c9b8):
    # the listing printed '4 turn(s)' and '1 turn(s)'
    counts = [re.search(r"  (\d+) (turns?)(  |$)", line) for line in heads]
    assert all(counts) and "turn(s)" not in result.stdout, heads
    assert {(m[1] == "1", m[2]) for m in counts if m} == {(True, "turn"), (False, "turns")}
    assert (f"{len(unnamed)} of the {len(heads)} threads show no topic: a topic is named only "
            "once at least 5 people share it") in result.stdout
    assert "only by a phrase its threads share that says what it is about" in " ".join(
        result.stdout.split())
    # a thread's first turn continues nothing: its similarity is the closest turn's, not
    # taken, called best= as threads show and the TUI call it, never sim=
    turns = [line.split() for line in result.stdout.splitlines() if line.startswith("   ")]
    lasagna = next(t for t in turns if "lasagna." in t)
    assert lasagna[2] == "new" and lasagna[4].startswith("best=")
    assert not [t for t in turns if t[2] == "new" and any(w.startswith("sim=") for w in t)]
    assert [t for t in turns if t[2] == "continuation" and t[4].startswith("sim=")]


def test_replay_refuses_a_data_dir_a_service_holds(
        tmp_path: Path, passphrase_file: Path) -> None:
    from appliance.lock import DataDirLock

    src = write_stream(tmp_path / "in.jsonl", STREAM)
    data = tmp_path / "data"
    common = ["--data-dir", str(data), "--passphrase-file", str(passphrase_file)]
    assert run_cli("init", *common).returncode == 0
    lock = DataDirLock(data)
    lock.acquire()  # as `semtrace serve` does
    try:
        held = run_cli("replay", str(src), "--out", str(tmp_path / "o.jsonl"), *common)
    finally:
        lock.release()
    # and what to do instead: it said only 'Another semtrace service is already running'
    assert held.returncode != 0 and "is running on this data dir" in held.stderr
    assert "stop it first, or send the prompts to the running service with `semtrace " \
        "send`" in held.stderr and "Nothing was stored." in held.stderr
    assert "Traceback" not in held.stderr and len(held.stderr.strip().splitlines()) == 1
    assert json.loads(run_cli("threads", "list", "--json", *common).stdout) == []


def test_default_request_ids_keep_a_second_file_apart_and_a_rerun_idempotent(
        tmp_path: Path, passphrase_file: Path) -> None:
    first = write_stream(tmp_path / "a.jsonl", STREAM[:3])
    second = write_stream(tmp_path / "b.jsonl", STREAM[3:])
    common = ["--data-dir", str(tmp_path / "data"), "--passphrase-file", str(passphrase_file)]

    def run(src: Path) -> dict[str, int]:
        r = run_cli("replay", str(src), "--out", str(tmp_path / "o.jsonl"), "--json", *common)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)

    assert run(first)["ingested"] == 3
    b = run(second)  # its lines 1-2 are not the first file's lines 1-2
    assert (b["ingested"], b["duplicates"]) == (2, 0)
    again = run(first)
    assert (again["ingested"], again["duplicates"]) == (0, 3)


def test_default_request_ids_do_not_name_the_file_and_an_earlier_builds_replay_stays_once(
        tmp_path: Path, passphrase_file: Path) -> None:
    """Default ids used to carry the plain SHA-256 of the replayed file (12 hex digits), which
    confirms a guessed file to anyone reading the stored ids; they are keyed now. A file an
    earlier build replayed into the store (ids `line-<plain digest>-N`) is still not stored
    twice."""
    import hashlib

    common = ["--data-dir", str(tmp_path / "data"), "--passphrase-file", str(passphrase_file)]

    def run(src: Path) -> tuple[dict[str, int], list[str]]:
        out = tmp_path / "o.jsonl"
        r = run_cli("replay", str(src), "--out", str(out), "--json", *common)
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout), [json.loads(x)["request_id"]
                                      for x in out.read_text().splitlines()]

    first = write_stream(tmp_path / "a.jsonl", STREAM[:3])
    plain = hashlib.sha256(first.read_bytes()).hexdigest()
    summary, ids = run(first)
    assert summary["ingested"] == 3 and len(set(ids)) == 3
    assert all(i.startswith("line-") and i.endswith(f"-{n}") for n, i in enumerate(ids, 1))
    assert not [i for i in ids if plain[:6] in i]  # no 6 hex digits of the plain digest
    assert run(first)[0]["duplicates"] == 3  # a re-run is idempotent

    # what an earlier build stored for b.jsonl: its lines under the plain digest's tag
    second = write_stream(tmp_path / "b.jsonl", STREAM[3:])
    legacy = hashlib.sha256(second.read_bytes()).hexdigest()[:12]
    earlier = write_stream(tmp_path / "earlier.jsonl", [
        {**row, "request_id": f"line-{legacy}-{n}"} for n, row in enumerate(STREAM[3:], 1)])
    assert run(earlier)[0]["ingested"] == 2
    again, ids = run(second)
    assert (again["ingested"], again["duplicates"]) == (0, 2)
    assert ids == [f"line-{legacy}-1", f"line-{legacy}-2"]


def test_send_gives_each_invocation_its_own_default_ids() -> None:
    from appliance.cli.service import _requests

    lines = ['{"tenant":"acme","user_id":"u","text":"hi"}']
    one, two = next(_requests(lines)), next(_requests(lines))
    assert one["request_id"] != two["request_id"]
    assert one["request_id"].startswith("send-") and one["request_id"].endswith("-1")


def test_demo_keeps_the_weather_conversation_whole_and_starts_the_lasagna_one(
        tmp_path: Path) -> None:
    # The product's own example, through the real service, model and linker. With --keep
    # the "data kept in" line goes to stderr: stdout stays one JSON document.
    # a shell after `make demo`: the venv's bin is not on PATH
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep)
                           if p and not (Path(p) / "semtrace").exists())
    # --keep given relative to this folder: what it prints is absolute, to be run from any
    # folder (it printed the relative path, which the commands then looked for elsewhere)
    kept = os.path.relpath(tmp_path / "demo")
    result = run_cli("demo", "--json", "--keep", kept, env={"PATH": path})
    assert result.returncode == 0, result.stderr
    threads = json.loads(result.stdout)
    assert f"Demo data kept in {tmp_path / 'demo'}:" in result.stderr
    # The command it prints opens the kept store as it is (it named the folder above the data
    # dir, which every command refused as "not a Semtrace data dir"), and runs as printed
    # from that shell (it said `semtrace threads list ...`: command not found), in another
    # folder too.
    printed = shlex.split(result.stderr.splitlines()[-1])
    assert shutil.which(printed[0], path=path) or Path(printed[0]).is_file(), printed[0]
    listed = subprocess.run([*printed, "--json"], capture_output=True, text=True,
                            env={**os.environ, "PATH": path}, timeout=600, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert len(json.loads(listed.stdout)) == len(threads)

    def thread_of(start: str) -> dict:  # type: ignore[type-arg]
        found = [t for t in threads if any(r["text"].startswith(start) for r in t["records"])]
        assert len(found) == 1, start
        return found[0]

    weather = thread_of("What's the weather in")
    records = sorted(weather["records"], key=lambda r: r["record_id"])[:4]
    assert [r["text"].split()[0] for r in records] == ["What's", "How", "Should", "Actually,"]
    assert [r["position"] for r in records] == ["new"] + ["continuation"] * 3
    assert [r["parent_id"] for r in records[1:]] == [r["record_id"] for r in records[:3]]
    assert records[3]["intent"] == "error_recovery"
    lasagna = thread_of("Give me a recipe for a vegetarian lasagna")
    first = min(lasagna["records"], key=lambda r: r["record_id"])
    assert first["text"].startswith("Give me a recipe") and first["position"] == "new"
    assert first["parent_id"] is None
    assert not any("neural" in r["text"] for r in lasagna["records"])


def test_the_demos_privacy_policy_is_the_shipped_one_but_for_its_own_tenant() -> None:
    """The demo spends and suppresses as a real tenant would: its policy differs from the
    shipped privacy.toml only in turning cross-user topics and search on for `demo`."""
    from appliance.cli.demo import DEMO_PRIVACY
    from appliance.config import PrivacySettings
    from appliance.config.loading import load_policy

    shipped = load_policy("privacy", PrivacySettings).model_dump()
    demo = load_policy("privacy", PrivacySettings, directory=DEMO_PRIVACY.parent).model_dump()
    own = {"cross_user_topics", "cross_user_search"}
    assert {k: v for k, v in demo.items() if k not in own} == {
        k: v for k, v in shipped.items() if k not in own}
    assert demo["cross_user_topics"] == {"demo": True}
    assert demo["cross_user_search"] == {"demo": True}


def test_demo_shows_topics_shared_across_its_people_and_searches_them(tmp_path: Path) -> None:
    """The first thing a new user sees: the demo's own privacy policy turns cross-user
    topics and search on for its tenant, so threads of different people about one subject
    share a labelled topic, and a search finds other people's prompts. Before, topics were
    per user (no topic ever reached k_min_users people, so none had a label) and a
    cross-user search was refused."""
    result = run_cli("demo", "--json", "--keep", str(tmp_path / "demo"))
    assert result.returncode == 0, result.stderr
    threads = json.loads(result.stdout)
    password = [t for t in threads
                if any("password" in r["text"].lower() for r in t["records"])]
    labels = {t["topic_label"] for t in password}
    assert len(labels) == 1 and None not in labels  # one topic, labelled
    assert len({t["user"] for t in password}) >= 5  # k_min_users people share it
    label_words = set(next(iter(labels)).replace(",", " ").split())
    texts = " ".join(r["text"].lower() for t in password for r in t["records"])
    assert all(w in texts for w in label_words)  # the label is made of their words
    weather = [t for t in threads if t not in password
               and any("weather" in r["text"].lower() for r in t["records"])]
    assert len({t["topic_label"] for t in weather}) == 1  # another subject, another topic
    assert weather[0]["topic_label"] not in (None, *labels)

    lines = result.stderr.splitlines()
    export = next(x for x in lines if "export SEMTRACE_POLICY_DIR=" in x)
    env = {"SEMTRACE_POLICY_DIR": export.split("=", 1)[1]}
    search = next(x for x in lines if "semtrace search" in x)
    opts = search.split("--tenant demo", 1)[1].split()
    found = run_cli("search", "how do I reset my password", "--tenant", "demo", "-k", "5",
                    "--json", *opts, env=env)
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    owners = {t["thread_id"]: t["user"] for t in threads}
    assert len({owners[h["thread_id"]] for h in hits}) >= 3  # other people's prompts
    assert all("password" in h["text"].lower() for h in hits[:3])
    # the thread list's topic column cuts a long label at a word, with "…", not mid-word
    from appliance.titles import shorten

    listed = run_cli("threads", "list", "--tenant", "demo", *opts, env=env)
    assert listed.returncode == 0, listed.stderr
    label = weather[0]["topic_label"]
    assert f" {shorten(label, 24)} " in listed.stdout
    if len(label) > 24:  # "weather forecast, umbrella" -> "weather forecast…"
        assert f" {label[:24]} " not in listed.stdout


def test_replay_cuts_an_over_long_prompt_and_keeps_its_conversation_whole(
        tmp_path: Path, passphrase_file: Path) -> None:
    from conftest import scan_for

    canary = "Quillfeather-Marrowdene-5517"
    pasted = "The harbour budget report, section after section. " * 800  # 40,800 characters
    src = write_stream(tmp_path / "in.jsonl", [
        {"tenant": "acme", "user_id": "lou", "ts": "2026-03-02T09:00:00Z",
         "text": f"Summarise this: {pasted} Signed, {canary}."},
        {"tenant": "acme", "user_id": "lou", "ts": "2026-03-02T09:01:00Z",
         "text": "Now list the harbour budget lines it mentions."}])
    out = tmp_path / "out.jsonl"
    common = ["--data-dir", str(tmp_path / "data"), "--passphrase-file", str(passphrase_file)]
    result = run_cli("replay", str(src), "--out", str(out), "--json", *common)
    assert result.returncode == 0, result.stderr
    # the old code skipped the first line (over max_text_chars): its follow-up had no parent
    assert json.loads(result.stdout)["skipped"] == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["truncated"] for r in rows] == [True, False]
    assert rows[1]["parent_index"] == 0 and rows[1]["thread_id"] == rows[0]["thread_id"]
    shown = run_cli("threads", "show", rows[0]["thread_id"], "--json", *common)
    assert shown.returncode == 0, shown.stderr
    stored = [r["text"] for r in json.loads(shown.stdout)["records"]]
    assert stored[0].startswith("Summarise this:") and len(stored[0]) <= 32_768
    # what lay past the cut was never stored: not in the decrypted records, not on disk
    assert all(canary not in text for text in stored)
    src.unlink()
    assert scan_for(tmp_path, [canary]) == []


def test_a_replay_run_off_a_terminal_reports_its_progress_in_lines(tmp_path: Path) -> None:
    """Run from a script or a unit (stderr a file), the progress bar is hidden: a replay
    of 10,000 prompts said nothing for minutes. It now writes a line now and then."""
    src = write_stream(tmp_path / "in.jsonl", STREAM)
    every = run_cli("replay", str(src), "--out", str(tmp_path / "a.jsonl"),
                    env={"SEMTRACE_PROGRESS_INTERVAL_S": "0"})
    assert every.returncode == 0, every.stderr
    assert f"semtrace: replay: {len(STREAM)} of {len(STREAM)} (100%)" in every.stderr
    assert "What's the weather" not in every.stderr  # steps and counts, never data
    quiet = run_cli("replay", str(src), "--out", str(tmp_path / "b.jsonl"))
    assert quiet.returncode == 0 and "semtrace: replay:" not in quiet.stderr  # under 30 s
    bad = run_cli("replay", str(src), "--out", str(tmp_path / "c.jsonl"),
                  env={"SEMTRACE_PROGRESS_INTERVAL_S": "soon"})
    assert bad.returncode != 0 and not (tmp_path / "c.jsonl").exists()
    assert bad.stderr.strip().splitlines() == [
        "semtrace: SEMTRACE_PROGRESS_INTERVAL_S must be a number of seconds, 0 or more."]



def test_a_replay_ends_with_what_it_did_and_its_json_is_that_summary_alone(
        tmp_path: Path, passphrase_file: Path) -> None:
    """Once the progress bar went, a user read how many prompts were stored and where, not
    into how many conversations nor how long it took; `--json` said neither either."""
    src = write_stream(tmp_path / "in.jsonl", STREAM)
    common = ["--data-dir", str(tmp_path / "data"), "--passphrase-file", str(passphrase_file)]
    out = tmp_path / "out.jsonl"
    first = run_cli("replay", str(src), "--out", str(out), "--json", *common)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)  # stdout is the summary and nothing else
    threads = {json.loads(line)["thread_id"] for line in out.read_text().splitlines()}
    assert (summary["ingested"], summary["threads"]) == (len(STREAM), len(threads))
    assert len(threads) < len(STREAM)  # alice's weather follow-up joined her first prompt
    assert isinstance(summary["seconds"], float) and summary["seconds"] >= 0
    again = run_cli("replay", str(src), "--out", str(tmp_path / "again.jsonl"), *common)
    assert again.returncode == 0, again.stderr
    last = again.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"Replayed 0 prompts into 0 threads in \d+\.\d s \(0 skipped, "
                        rf"{len(STREAM)} duplicates\); one line a prompt in .*again\.jsonl\.",
                        last), last
    assert again.stdout == ""

