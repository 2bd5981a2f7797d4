"""An erased user's words leave the topics at once: labels, label phrases and counts.

The real `semtrace serve` (Presidio + spaCy, llama.cpp, SQLCipher) refines topics every
second; `semtrace erase` runs beside it, as a compliance officer runs it. What the topics
tables hold is read from the decrypted store, and every byte under the test's folder is
scanned as well.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from conftest import scan_for
from test_crash_privacy import decrypted_store
from test_service import Server, at
from test_spine import run_cli

from appliance.client import Client

PHRASE = "quillhaven gasket"  # written by user0 and user1 only
SHARED = ["My zorblaxian turbine keeps overheating, how do I cool the zorblaxian turbine?",
          "What oil does a zorblaxian turbine need for cooling?",
          "The zorblaxian turbine shows an overheating warning again"]


def _topics(srv: Server, passphrase_file: Path) -> tuple[list[tuple[object, ...]], list[str]]:
    """(topic rows: id, threads, users, label) and the stored label phrases."""
    from appliance.keys import read_passphrase_file
    from appliance.runtime import open_runtime

    rt = open_runtime(srv.data, read_passphrase_file(passphrase_file))
    try:
        db = rt.store.db
        rows = db.execute("SELECT topic_id, n, contributors, label FROM topics "
                          "WHERE merged_into IS NULL AND n > 0").fetchall()
        terms = [t for (t,) in db.execute("SELECT term FROM topic_terms")]
    finally:
        rt.close()
    return rows, terms


def _until(check, srv: Server, passphrase_file: Path):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + 60
    while True:
        rows, terms = _topics(srv, passphrase_file)
        if check(rows, terms) or time.monotonic() > deadline:
            return rows, terms
        time.sleep(0.5)


def _erase(srv: Server, user: str) -> None:
    out = run_cli("erase", "--tenant", "acme", "--user", user, "--reason", "ticket 77",
                  *srv.args)
    assert out.returncode == 0, out.stderr


def test_an_erased_users_phrases_and_share_of_a_label_leave_the_topics_at_once(
        tmp_path: Path, passphrase_file: Path) -> None:
    srv = Server(tmp_path, passphrase_file)
    privacy = tmp_path / "policies" / "privacy.toml"
    privacy.write_text(privacy.read_text().replace("topic_refine_seconds = 60.0",
                                                   "topic_refine_seconds = 1.0"))
    srv.start()
    n = 0
    with Client(srv.sock) as c:
        for u in range(7):
            for text in SHARED:
                n += 1
                assert c.ingest(tenant="acme", user_id=f"user{u}", request_id=f"r{n}",
                                ts=at(n * 4), text=text)["ok"]
        for u in (0, 1):
            for _ in range(2):
                n += 1
                assert c.ingest(tenant="acme", user_id=f"user{u}", request_id=f"r{n}",
                                ts=at(n * 4), text=f"Does the {PHRASE} fit the zorblaxian "
                                "turbine when overheating?")["ok"]
    rows, terms = _until(lambda rows, terms: PHRASE in terms, srv, passphrase_file)
    assert PHRASE in terms and [r[2] for r in rows] == [7] and rows[0][3]  # labelled

    _erase(srv, "user0")  # the phrase now has one author left: never stored for one person
    rows, terms = _topics(srv, passphrase_file)
    assert not [t for t in terms if "quillhaven" in t]
    assert not [r for r in rows if r[3] and "quillhaven" in str(r[3])]
    # the service publishes the topic again from the six people left, label included
    rows, terms = _until(lambda rows, terms: rows and rows[0][3], srv, passphrase_file)
    assert [r[2] for r in rows] == [6] and rows[0][3] and PHRASE not in terms
    assert "zorblaxian turbine" in terms

    _erase(srv, "user1")
    _erase(srv, "user2")  # four people left: fewer than k_min_users (5), so no label
    rows, terms = _topics(srv, passphrase_file)
    assert not [r for r in rows if r[3]] and "quillhaven" not in " ".join(terms)
    # the service publishes the topic again from the four people left (it read [] when
    # no refinement had run within the 3 s below, on a busy host) ...
    _until(lambda rows, terms: [r[2] for r in rows] == [4], srv, passphrase_file)
    time.sleep(3)  # ... and several refinements later, still no label
    rows, terms = _topics(srv, passphrase_file)
    assert not [r for r in rows if r[3]] and not terms and [r[2] for r in rows] == [4]
    listed = run_cli("threads", "list", "--tenant", "acme", "--json", *srv.args)
    assert not {t["topic_label"] for t in json.loads(listed.stdout)} - {None}
    assert srv.stop() == 0
    assert "quillhaven" not in decrypted_store(srv.data, passphrase_file).lower()
    assert scan_for(tmp_path, ["quillhaven"]) == []


def test_labels_withdrawn_by_a_retention_run_come_back_from_the_threads_it_left(
        tmp_path: Path, passphrase_file: Path) -> None:
    """Retention shreds the older day of each thread; the threads stay, so do their topic:
    the label the shred withdrew is published again (it stayed off until a new prompt)."""
    from datetime import UTC, datetime, timedelta

    srv = Server(tmp_path, passphrase_file)
    privacy = tmp_path / "policies" / "privacy.toml"
    privacy.write_text(privacy.read_text().replace("topic_refine_seconds = 60.0",
                                                   "topic_refine_seconds = 1.0"))
    srv.start()
    now = datetime.now(UTC).replace(microsecond=0)

    def day(days_ago: int, u: int) -> str:
        return (now - timedelta(days=days_ago, minutes=u)).strftime("%Y-%m-%dT%H:%M:%SZ")

    with Client(srv.sock) as c:
        for u in range(7):
            first, second = SHARED[0], SHARED[1]
            assert c.ingest(tenant="acme", user_id=f"user{u}", request_id=f"a{u}",
                            ts=day(10, u), text=first)["ok"]
            assert c.ingest(tenant="acme", user_id=f"user{u}", request_id=f"b{u}",
                            ts=day(3, u), text=second,  # the same conversation, by history
                            history=[{"role": "user", "content": first}])["ok"]
    rows, _ = _until(lambda rows, terms: rows and rows[0][3], srv, passphrase_file)
    label = rows[0][3]
    assert label
    as_of = (now + timedelta(days=25)).strftime("%Y-%m-%dT%H:%M:%SZ")  # cuts at 5 days ago
    run = run_cli("retention", "run", "--as-of", as_of, "--yes-future", *srv.args)
    assert run.returncode == 0, run.stderr
    listed = json.loads(run_cli("threads", "list", "--tenant", "acme", "--json",
                                *srv.args).stdout)
    assert len(listed) == 7 and {t["turns"] for t in listed} == {1}  # each kept its day -3
    rows, _ = _until(lambda rows, terms: rows and rows[0][3], srv, passphrase_file)
    assert rows and rows[0][3] and [r[2] for r in rows] == [7]
    assert srv.stop() == 0


def test_a_retention_run_that_shreds_a_threads_older_day_takes_its_words_out_of_the_topics(
        tmp_path: Path, passphrase_file: Path) -> None:
    """Retention shreds the older day of two-day threads while the service runs: a phrase
    only that day carried never comes back in the label phrases, the labels or `stats
    topics`; the remaining day's phrase does (it stayed in memory until a restart)."""
    from datetime import UTC, datetime, timedelta

    srv = Server(tmp_path, passphrase_file)
    privacy = tmp_path / "policies" / "privacy.toml"
    # The day's budget is not what this test is about, and its spend depends on timing:
    # the start-up daily releases (topics 2 + models 1 of 4) count acme only if its first
    # prompt was stored before they ran, and the run --as-of 25 days ahead expires today's
    # releases (past TREND_DAYS then), so `stats topics` releases again (2): 5 of 4,
    # exit 5. 10 covers every order: two daily runs (start, 00:05 cron) and that release
    # (`stats` is given the service's policies, env=srv.env, or it reads the default 4).
    privacy.write_text(privacy.read_text().replace("topic_refine_seconds = 60.0",
                                                   "topic_refine_seconds = 1.0")
                       .replace("epsilon_per_day = 4.0", "epsilon_per_day = 10.0"))
    assert "epsilon_per_day = 10.0" in privacy.read_text()
    srv.start()
    now = datetime.now(UTC).replace(microsecond=0)

    def day(days_ago: int, u: int) -> str:
        return (now - timedelta(days=days_ago, minutes=u)).strftime("%Y-%m-%dT%H:%M:%SZ")

    older = f"Does the {PHRASE} fit my zorblaxian turbine when overheating?"
    with Client(srv.sock) as c:
        for u in range(7):
            assert c.ingest(tenant="acme", user_id=f"user{u}", request_id=f"a{u}",
                            ts=day(10, u), text=older)["ok"]
            assert c.ingest(tenant="acme", user_id=f"user{u}", request_id=f"b{u}",
                            ts=day(3, u), text=SHARED[1],  # the same conversation
                            history=[{"role": "user", "content": older}])["ok"]
    rows, terms = _until(lambda rows, terms: PHRASE in terms, srv, passphrase_file)
    assert PHRASE in terms and rows[0][3]  # the older day's phrase is a label phrase
    as_of = (now + timedelta(days=25)).strftime("%Y-%m-%dT%H:%M:%SZ")  # cuts at 5 days ago
    run = run_cli("retention", "run", "--as-of", as_of, "--yes-future", *srv.args)
    assert run.returncode == 0, run.stderr
    listed = json.loads(run_cli("threads", "list", "--tenant", "acme", "--json",
                                *srv.args).stdout)
    assert len(listed) == 7 and {t["turns"] for t in listed} == {1}  # each kept its day -3
    # the service publishes the topic again from what is left: with its label
    rows, terms = _until(lambda rows, terms: rows and rows[0][3], srv, passphrase_file)
    time.sleep(3)  # several refinements later
    rows, terms = _topics(srv, passphrase_file)
    assert rows and rows[0][3] and [r[2] for r in rows] == [7]
    assert "zorblaxian turbine" in terms  # the remaining day's phrase stays
    assert not [t for t in terms if "quillhaven" in t or "gasket" in t]
    assert not [r for r in rows if "quillhaven" in str(r[3]) or "gasket" in str(r[3])]
    stats = run_cli("stats", "topics", "--tenant", "acme", "--json", *srv.args,
                    env=srv.env)  # the service's policies: its budget
    assert stats.returncode == 0, stats.stderr
    assert "quillhaven" not in stats.stdout.lower()  # (its rows are noisy: maybe none)
    assert {r["label"] for r in json.loads(stats.stdout)["rows"]} <= {rows[0][3]}
    listed = json.loads(run_cli("threads", "list", "--tenant", "acme", "--json",
                                *srv.args).stdout)
    assert {t["topic_label"] for t in listed} == {rows[0][3]}  # 'zorblaxian turbine, ...'
    assert "zorblaxian" in rows[0][3]
    assert srv.stop() == 0
    store = decrypted_store(srv.data, passphrase_file).lower()
    assert "zorblaxian turbine" in store and "quillhaven" not in store
    assert scan_for(tmp_path, ["quillhaven"]) == []
